package shard

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = LoadBalancerKey(fmt.Sprintf("ns%d", i%17), fmt.Sprintf("svc%d", i), netip.AddrFrom4([4]byte{10, 11, byte(i >> 8), byte(i)}))
	}
	return out
}

func TestOfSpreadsEvenly(t *testing.T) {
	ks := keys(30000)
	for _, total := range []int{2, 3, 5, 8} {
		counts := make([]int, total)
		for _, k := range ks {
			s := Of(k, total)
			if s < 0 || s >= total {
				t.Fatalf("Of(%q, %d) = %d, outside [0, %d)", k, total, s, total)
			}
			counts[s]++
		}
		want := len(ks) / total
		for i, c := range counts {
			if c < want*9/10 || c > want*11/10 {
				t.Errorf("total %d: shard %d has %d keys, want %d ± 10%% (%v)", total, i, c, want, counts)
			}
		}
	}
}

// Growing from n to n+1 shards moves about 1/(n+1) of the keys, each to
// the new shard; the others stay where they were.
func TestOfMovesOnlyToTheNewShard(t *testing.T) {
	ks := keys(20000)
	for n := 1; n <= 6; n++ {
		moved := 0
		for _, k := range ks {
			before, after := Of(k, n), Of(k, n+1)
			if before == after {
				continue
			}
			moved++
			if after != n {
				t.Fatalf("%q moved from shard %d to %d going from %d to %d shards; only the new shard %d may gain", k, before, after, n, n+1, n)
			}
		}
		want := float64(len(ks)) / float64(n+1)
		if f := float64(moved); f < want*0.9 || f > want*1.1 {
			t.Errorf("%d→%d shards moved %d keys, want about %.0f", n, n+1, moved, want)
		}
	}
}

// The hash is part of the contract: a change would reshuffle every
// deployed shard at upgrade.
func TestOfIsStable(t *testing.T) {
	for _, c := range []struct {
		key   string
		total int
		want  int
	}{
		{"kube-system/cilium-gateway-external/10.11.80.80", 3, 0},
		{"kube-system/cilium-gateway-external/10.11.80.80", 9, 0},
		{"kube-system/cilium-gateway-internal/10.11.80.81", 3, 0},
		{"grafana.example.com", 3, 1},
		{"apps/web/10.11.80.90", 3, 1},
		{"apps/web/10.11.80.90", 7, 1},
		{"anything", 1, 0},
	} {
		if got := Of(c.key, c.total); got != c.want {
			t.Errorf("Of(%q, %d) = %d, want %d", c.key, c.total, got, c.want)
		}
	}
}

// jump is Lamping and Veach's algorithm: the values other implementations
// give for these keys.
func TestJumpKnownValues(t *testing.T) {
	for _, c := range []struct {
		key     uint64
		buckets int
		want    int
	}{{1, 1, 0}, {42, 57, 43}, {0xDEAD10CC, 1, 0}, {0xDEAD10CC, 666, 361}, {256, 1024, 520}} {
		if got := jump(c.key, c.buckets); got != c.want {
			t.Errorf("jump(%#x, %d) = %d, want %d", c.key, c.buckets, got, c.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		s    Shard
		want string // "" for valid
	}{
		{Shard{0, 1}, ""},
		{Shard{2, 3}, ""},
		{Shard{0, 0}, "--total-shards must be at least 1"},
		{Shard{3, 3}, "--shard must be in [0, 3)"},
		{Shard{-1, 3}, "--shard must be in [0, 3)"},
	} {
		err := c.s.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v", c.s, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v: error %v, want one containing %q", c.s, err, c.want)
		}
	}
}

func TestOrdinal(t *testing.T) {
	for _, c := range []struct {
		pod, sts string
		ordinal  int
		err      bool
	}{
		{"lbprobe-0", "lbprobe", 0, false},
		{"my-lbprobe-12", "my-lbprobe", 12, false},
		{"lbprobe", "", 0, true},
		{"lbprobe-x", "", 0, true},
		{"lbprobe-", "", 0, true},
		{"-1", "", 0, true},
	} {
		sts, n, err := Ordinal(c.pod)
		if (err != nil) != c.err || sts != c.sts || n != c.ordinal {
			t.Errorf("Ordinal(%q) = %q, %d, %v; want %q, %d, error %v", c.pod, sts, n, err, c.sts, c.ordinal, c.err)
		}
		if err != nil && !strings.Contains(err.Error(), "--pod") {
			t.Errorf("Ordinal(%q): error %q does not name --pod", c.pod, err)
		}
	}
}

func TestSeriesKey(t *testing.T) {
	for _, c := range []struct {
		labels map[string]string
		key    string
		ok     bool
	}{
		{map[string]string{"namespace": "apps", "service": "web", "ip": "10.11.80.90", "port": "80"}, "apps/web/10.11.80.90", true},
		{map[string]string{"namespace": "apps", "service": "web", "lease": "cilium-l2announce-apps-web", "holder": "n1"}, "apps/web/", true},
		{map[string]string{"namespace": "apps", "service": "web", "hostname": "web.example.com"}, "apps/web/", true},
		{map[string]string{"server": "10.11.80.82:53", "hostname": "Web.Example.com.", "source": "httproute"}, "web.example.com", true},
		{map[string]string{"hostname": "web.example.com", "namespace": "apps", "route": "web", "gateway": "external"}, "web.example.com", true},
		{map[string]string{"namespace": "apps", "route": "web", "gateway_namespace": "kube-system", "gateway": "external"}, "route:apps/web", true},
		{map[string]string{"namespace": "kube-system", "gateway": "external", "listener": "https"}, "gateway:kube-system/external", true},
		{map[string]string{"policy": "l2", "node": "n1", "interfaces": "eth0"}, "policy:l2", true},
		{map[string]string{"pool": "default", "state": "used"}, "pool:default", true},
		{map[string]string{"lease": "cilium-l2announce-apps-gone"}, "lease:cilium-l2announce-apps-gone", true},
		{map[string]string{"ip": "10.11.80.90"}, "ip:10.11.80.90", true},
		{map[string]string{"resource": "services"}, "", false},
		{map[string]string{}, "", false},
	} {
		key, ok := SeriesKey(func(n string) (string, bool) { v, ok := c.labels[n]; return v, ok })
		if key != c.key || ok != c.ok {
			t.Errorf("SeriesKey(%v) = %q, %v; want %q, %v", c.labels, key, ok, c.key, c.ok)
		}
	}
}

// fixed is a collector of const series: one per load balancer IP, one per
// hostname, and one of the instance itself.
type fixed struct{ n int }

var (
	descLB   = prometheus.NewDesc("loadbalancer_reachable", "", []string{"namespace", "service", "ip"}, nil)
	descHost = prometheus.NewDesc("gateway_dns_answer_correct", "", []string{"hostname"}, nil)
	descSelf = prometheus.NewDesc("lbprobe_kubernetes_synced", "", []string{"resource"}, nil)
)

func (f fixed) Describe(ch chan<- *prometheus.Desc) { ch <- descLB; ch <- descHost; ch <- descSelf }

func (f fixed) Collect(ch chan<- prometheus.Metric) {
	for i := range f.n {
		ch <- prometheus.MustNewConstMetric(descLB, prometheus.GaugeValue, 1, "apps", fmt.Sprint("svc", i), "10.11.80.90")
		ch <- prometheus.MustNewConstMetric(descHost, prometheus.GaugeValue, 1, fmt.Sprintf("h%d.example.com", i))
	}
	ch <- prometheus.MustNewConstMetric(descSelf, prometheus.GaugeValue, 1, "services")
}

func TestCollectorSplitsSeries(t *testing.T) {
	const n = 200
	all := testutil.CollectAndCount(fixed{n})
	if all != 2*n+1 {
		t.Fatalf("unsharded: %d series, want %d", all, 2*n+1)
	}
	for _, total := range []int{1, 3} {
		seen := map[string]int{}
		for i := range total {
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(Collector(fixed{n}, NewSelector(Shard{i, total})))
			families, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			own, self := 0, 0
			for _, mf := range families {
				for _, m := range mf.GetMetric() {
					id := mf.GetName() + fmt.Sprint(m.GetLabel())
					if mf.GetName() == "lbprobe_kubernetes_synced" {
						self++ // every shard exposes its own
						continue
					}
					seen[id]++
					own++
				}
			}
			if self != 1 {
				t.Errorf("shard %d/%d: %d lbprobe_kubernetes_synced series, want 1", i, total, self)
			}
			if total > 1 && (own < n/total || own > 2*n*2/total) {
				t.Errorf("shard %d/%d has %d of %d target series", i, total, own, 2*n)
			}
		}
		if len(seen) != 2*n {
			t.Errorf("%d shards together expose %d target series, want %d", total, len(seen), 2*n)
		}
		for id, c := range seen {
			if c != 1 {
				t.Errorf("%d shards: %s exposed by %d shards", total, id, c)
			}
		}
	}
}
