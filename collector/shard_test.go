package collector

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/lbprobe/lbprobe/collector/shard"
)

func TestTargetsShard(t *testing.T) {
	var all Targets
	for i := range 60 {
		ips := []netip.Addr{netip.AddrFrom4([4]byte{10, 11, 80, byte(i)}), netip.AddrFrom4([4]byte{10, 11, 81, byte(i)})}
		if i%10 == 0 {
			ips = nil // no IP yet
		}
		all.LoadBalancers = append(all.LoadBalancers, LoadBalancer{Namespace: "apps", Service: fmt.Sprint("svc", i), IPs: ips, Ports: []Port{{Port: 80, Protocol: "TCP", Probe: ProbeTCP}}})
		all.Hostnames = append(all.Hostnames, Hostname{Hostname: fmt.Sprintf("h%d.example.com", i)})
		all.GatewayListeners = append(all.GatewayListeners, GatewayListener{Namespace: "gateway", Gateway: fmt.Sprint("gw", i), Listener: "http", Port: 80})
	}
	all.Nodes = []Node{{Name: "k8s-nuc"}, {Name: "k8s-opti-01"}}

	if got := all.Shard(shard.Shard{Index: 0, Total: 1}); len(got.LoadBalancers) != 60 || len(got.Hostnames) != 60 {
		t.Fatalf("one shard of one: %d load balancers, %d hostnames, want all 60", len(got.LoadBalancers), len(got.Hostnames))
	}
	const total = 3
	ips, hosts, listeners := map[string]int{}, map[string]int{}, map[string]int{}
	for i := range total {
		s := shard.Shard{Index: i, Total: total}
		got := all.Shard(s)
		if len(got.Nodes) != len(all.Nodes) {
			t.Errorf("shard %v has %d nodes, want all %d (every shard needs their MACs)", s, len(got.Nodes), len(all.Nodes))
		}
		for _, lb := range got.LoadBalancers {
			if len(lb.IPs) == 0 {
				ips[lb.Service+"/"]++
			}
			for _, ip := range lb.IPs {
				if !s.Owns(shard.LoadBalancerKey(lb.Namespace, lb.Service, ip)) {
					t.Errorf("shard %v probes %s/%s %s, which it does not own", s, lb.Namespace, lb.Service, ip)
				}
				ips[lb.Service+"/"+ip.String()]++
			}
		}
		for _, h := range got.Hostnames {
			hosts[h.Hostname]++
		}
		for _, l := range got.GatewayListeners {
			listeners[l.Gateway]++
		}
	}
	// 54 Services with two IPs each, 6 without.
	for name, m := range map[string]map[string]int{"load balancer IPs": ips, "hostnames": hosts, "listeners": listeners} {
		want := 60
		if name == "load balancer IPs" {
			want = 54*2 + 6
		}
		if len(m) != want {
			t.Errorf("%s: the shards together have %d, want %d", name, len(m), want)
		}
		for k, n := range m {
			if n != 1 {
				t.Errorf("%s: %s is in %d shards", name, k, n)
			}
		}
	}
	// A Service whose two IPs fall in different shards is split between them.
	split := 0
	for _, lb := range all.LoadBalancers {
		if len(lb.IPs) == 2 && shard.Of(shard.LoadBalancerKey(lb.Namespace, lb.Service, lb.IPs[0]), total) != shard.Of(shard.LoadBalancerKey(lb.Namespace, lb.Service, lb.IPs[1]), total) {
			split++
		}
	}
	if split == 0 {
		t.Error("no Service has its IPs in two shards: the keys are not per IP")
	}
}
