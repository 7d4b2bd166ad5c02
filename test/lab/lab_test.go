package lab_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/lbprobe/lbprobe/probe"
	"github.com/lbprobe/lbprobe/test/kubecluster"
	"github.com/lbprobe/lbprobe/test/lab"
	"github.com/lbprobe/lbprobe/test/needroot"
	"github.com/lbprobe/lbprobe/test/netlab"
	"github.com/lbprobe/lbprobe/test/seed"
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		// Skip before starting a cluster that no test would use.
		os.Exit(m.Run())
	}
	dirs, err := kubecluster.CRDDirs()
	if err == nil {
		// MetalLB's too, for its stand-in (TestOtherImplementations).
		var metallb string
		metallb, err = kubecluster.MetalLBCRDDir()
		dirs = append(dirs, metallb)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(kubecluster.Shared(m, kubecluster.Options{CRDDirs: dirs}))
}

// arpFrom runs probe.ARP for ip from inside ns (its packet socket lives
// there).
func arpFrom(t *testing.T, ns *netlab.Namespace, ip netip.Addr) probe.ARPResult {
	t.Helper()
	var res probe.ARPResult
	if err := ns.Run(func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		res = probe.ARP(ctx, ip, probe.ARPOptions{Interface: lab.Interface, Wait: time.Second}, nil)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return res
}

// tcpFrom runs probe.TCP for addr from inside ns.
func tcpFrom(t *testing.T, ns *netlab.Namespace, addr netip.AddrPort) probe.Result {
	t.Helper()
	var res probe.Result
	if err := ns.Run(func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		res = probe.TCP(ctx, addr, nil)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return res
}

// scrape runs a probe round of lbp and returns the exposition text.
func scrape(t *testing.T, lbp *lab.LBProbe) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	body, err := lbp.Scrape(ctx)
	if err != nil {
		t.Fatalf("scrape lbprobe: %v", err)
	}
	return body
}

func macs(r probe.ARPResult) []string {
	var s []string
	for _, m := range r.MACs {
		s = append(s, m.String())
	}
	return s
}

// seededLab seeds the reference cluster into the shared API server and
// starts the lab over it; it skips without root.
func seededLab(t *testing.T) (*seed.Cluster, *lab.Lab) {
	t.Helper()
	return seededLabWith(t, lab.Options{})
}

// seededLabWith is seededLab with opts (RESTConfig is set).
func seededLabWith(t *testing.T, opts lab.Options) (*seed.Cluster, *lab.Lab) {
	t.Helper()
	needroot.Root(t, "the lab runs in network namespaces")
	c := kubecluster.Get(t)
	sc, err := seed.New(c.RESTConfig(), seed.Reference())
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Seed(t.Context(), seed.ReferencePorts()); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	opts.RESTConfig = c.RESTConfig()
	l := lab.Start(t, opts)
	t.Logf("lab up in %s", time.Since(begin).Round(time.Millisecond))
	return sc, l
}

// TestReferenceLAN builds the lab over the seeded reference cluster and
// probes it from the router: the lease holder answers ARP and serves TCP;
// a holder that keeps renewing but stops answering shows as an ARP timeout.
func TestReferenceLAN(t *testing.T) {
	sc, l := seededLab(t)
	addrs := l.Addrs
	nuc := l.Node(seed.NodeNames[0])
	opti1 := l.Node(seed.NodeNames[1])
	begin := time.Now()
	lbp := l.StartLBProbe(t, l.Router, "--probe.timeout=2s")
	t.Logf("lbprobe ready in %s", time.Since(begin).Round(time.Millisecond))

	t.Run("api server from the router", func(t *testing.T) {
		cfg := l.RESTConfig()
		cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return lab.Dial(ctx, l.Router, network, addr)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		nodes, err := cs.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatalf("list nodes through %s: %v", lab.APIServer, err)
		}
		if len(nodes.Items) != len(seed.NodeNames) {
			t.Errorf("got %d nodes, want %d", len(nodes.Items), len(seed.NodeNames))
		}
	})

	t.Run("healthy", func(t *testing.T) {
		for _, tc := range []struct {
			ip     netip.Addr
			holder *lab.Node
		}{{addrs.External, nuc}, {addrs.Internal, opti1}, {addrs.Legacy, nuc}} {
			r := arpFrom(t, l.Router, tc.ip)
			if !r.Success || len(r.MACs) != 1 || r.MACs[0].String() != tc.holder.MAC.String() {
				t.Errorf("ARP %s: success=%v MACs=%v err=%v, want only %s's %s", tc.ip, r.Success, macs(r), r.Err, tc.holder.Name, tc.holder.MAC)
			}
		}
		if r := tcpFrom(t, l.Router, netip.AddrPortFrom(addrs.External, 443)); !r.Success {
			t.Errorf("TCP %s:443: %v (%s)", addrs.External, r.Err, r.Reason)
		}
		metrics := scrape(t, lbp)
		for _, want := range []string{
			fmt.Sprintf(`loadbalancer_arp_reachable{interface="eth0",ip="%s",namespace="gateway",service="cilium-gateway-external"} 1`, addrs.External),
			fmt.Sprintf(`loadbalancer_arp_responders{interface="eth0",ip="%s",namespace="gateway",service="cilium-gateway-external"} 1`, addrs.External),
			fmt.Sprintf(`mac="%s"`, nuc.MAC),
			fmt.Sprintf(`loadbalancer_port_reachable{ip="%s",namespace="gateway",port="443",protocol="TCP",service="cilium-gateway-external"} 1`, addrs.External),
		} {
			if !strings.Contains(metrics, want) {
				t.Errorf("lbprobe's metrics lack %s", want)
			}
		}
		// The seed's k8s-gateway lease expired ten minutes ago: nobody answers.
		if r := arpFrom(t, l.Router, addrs.DNS); r.Success || r.Reason != probe.ReasonTimeout {
			t.Errorf("ARP %s (stale lease): success=%v MACs=%v reason=%q, want a timeout", addrs.DNS, r.Success, macs(r), r.Reason)
		}
	})

	t.Run("holder renews but stops answering", func(t *testing.T) {
		leases := sc.Core.CoordinationV1().Leases(seed.CiliumNamespace)
		name := seed.LeaseName(seed.GatewayNS, "cilium-gateway-external")
		before, err := leases.Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		nuc.SetARP(false)
		t.Cleanup(func() { nuc.SetARP(true) })
		r := arpFrom(t, l.Router, addrs.External)
		if r.Success || r.Reason != probe.ReasonTimeout {
			t.Errorf("ARP %s: success=%v MACs=%v reason=%q, want a timeout", addrs.External, r.Success, macs(r), r.Reason)
		}
		metrics := scrape(t, lbp)
		want := fmt.Sprintf(`loadbalancer_arp_reachable{interface="eth0",ip="%s",namespace="gateway",service="cilium-gateway-external"} 0`, addrs.External)
		if !strings.Contains(metrics, want) {
			t.Errorf("lbprobe's metrics lack %s", want)
		}
		// The lease is still renewed by k8s-nuc (every 2s).
		deadline := time.Now().Add(5 * time.Second)
		for {
			after, err := leases.Get(t.Context(), name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if *after.Spec.HolderIdentity != nuc.Name {
				t.Fatalf("lease holder = %s, want %s", *after.Spec.HolderIdentity, nuc.Name)
			}
			if after.Spec.RenewTime.After(before.Spec.RenewTime.Time) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("lease %s not renewed since %s", name, before.Spec.RenewTime)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("policy interfaces on a node", func(t *testing.T) {
		// lbprobe as the DaemonSet runs it, on k8s-nuc: the seed's policy
		// wants ^enp.* and the node's only NIC is eth0, so nothing on this
		// node can announce. A policy for ^eth0$ matches it.
		onNode := l.StartLBProbe(t, nuc.NS, "--probe.timeout=2s", "--node.name="+nuc.Name)
		matched := labels{"policy": seed.PolicyName, "node": nuc.Name, "interfaces": ""}
		scrapeUntil(t, onNode, func(e exposition) error {
			return e.check([]expect{
				{name: "loadbalancer_l2_policy_interfaces_matched", labels: matched, want: 0},
				{name: "loadbalancer_l2_policy_nodes", labels: labels{"policy": seed.PolicyName}, want: 3},
			})
		})
		linux := map[string]any{"matchLabels": map[string]any{"kubernetes.io/os": "linux"}}
		if err := sc.PolicyWith(t.Context(), "l2-policy-eth", linux, "^eth0$"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := sc.Dynamic.Resource(seed.PolicyGVR).Delete(ctx, "l2-policy-eth", metav1.DeleteOptions{}); err != nil {
				t.Error(err)
			}
		})
		scrapeUntil(t, onNode, func(e exposition) error {
			return e.check([]expect{
				{name: "loadbalancer_l2_policy_interfaces_matched", labels: labels{"policy": "l2-policy-eth", "node": nuc.Name, "interfaces": lab.Interface}, want: 1},
				{name: "loadbalancer_l2_policy_interfaces_matched", labels: matched, want: 0},
			})
		})
	})
}
