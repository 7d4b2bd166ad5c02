package lab_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/lbprobe/lbprobe/collector/diagnosis"
	"github.com/lbprobe/lbprobe/test/lab"
	"github.com/lbprobe/lbprobe/test/netlab"
	"github.com/lbprobe/lbprobe/test/seed"
)

// scenarioNS holds the Services the scenarios create, one per scenario, so
// that they do not disturb each other nor the reference Services.
const scenarioNS = "scenarios"

// exposition is one parsed scrape of lbprobe: its samples by series name.
type exposition map[string][]*model.Sample

func parseExposition(body string) (exposition, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	vec, err := expfmt.ExtractSamples(&expfmt.DecodeOptions{Timestamp: model.Now()}, slices.Collect(maps.Values(fams))...)
	if err != nil {
		return nil, err
	}
	e := exposition{}
	for _, s := range vec {
		name := string(s.Metric[model.MetricNameLabel])
		e[name] = append(e[name], s)
	}
	return e, nil
}

// labels is a series' exact label set.
type labels map[string]string

func (l labels) String() string {
	keys := slices.Sorted(maps.Keys(l))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, l[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// with returns a copy of l with more labels.
func (l labels) with(kv ...string) labels {
	out := maps.Clone(l)
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// sampleLabels returns a sample's labels without the series name.
func sampleLabels(s *model.Sample) labels {
	out := labels{}
	for k, v := range s.Metric {
		if k != model.MetricNameLabel {
			out[string(k)] = string(v)
		}
	}
	return out
}

// value returns the value of the series name with exactly the labels want.
func (e exposition) value(name string, want labels) (float64, bool) {
	for _, s := range e[name] {
		if maps.Equal(sampleLabels(s), want) {
			return float64(s.Value), true
		}
	}
	return 0, false
}

// matching returns the label sets of the series name whose labels include
// every pair of sub.
func (e exposition) matching(name string, sub labels) []labels {
	var out []labels
	for _, s := range e[name] {
		ls := sampleLabels(s)
		ok := true
		for k, v := range sub {
			if ls[k] != v {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, ls)
		}
	}
	return out
}

// expect is one expected series: value want, or absent when absent is set.
type expect struct {
	name   string
	labels labels
	want   float64
	absent bool
}

func (e exposition) check(exps []expect) error {
	var errs []error
	for _, x := range exps {
		got, ok := e.value(x.name, x.labels)
		switch {
		case x.absent && ok:
			errs = append(errs, fmt.Errorf("%s%s = %v, want absent", x.name, x.labels, got))
		case !x.absent && !ok:
			errs = append(errs, fmt.Errorf("%s%s absent, want %v (series of that name: %v)", x.name, x.labels, x.want, e.matching(x.name, nil)))
		case !x.absent && got != x.want:
			errs = append(errs, fmt.Errorf("%s%s = %v, want %v", x.name, x.labels, got, x.want))
		}
	}
	return errors.Join(errs...)
}

// scrapeUntil scrapes lbp (each scrape is a probe round) until check
// passes, for at most 30s: lbprobe's informers see API changes a moment
// after they are written. It fails t with check's last error.
func scrapeUntil(t *testing.T, lbp *lab.LBProbe, check func(exposition) error) exposition {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for n := 1; ; n++ {
		body := scrape(t, lbp)
		e, err := parseExposition(body)
		if err != nil {
			t.Fatalf("parse lbprobe's exposition: %v", err)
		}
		if err = check(e); err == nil {
			t.Logf("lbprobe's series as expected after %d scrape(s)", n)
			if os.Getenv("LBPROBE_LAB_SHOW") != "" {
				t.Logf("the L2 series of this scrape:\n%s", l2Series(body))
			}
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d scrapes over 30s:\n%v", n, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// scenarioService creates a one-port LoadBalancer Service in scenarioNS
// with ingress IP ip and a live L2 lease held by holder, and removes both
// when t ends.
func scenarioService(t *testing.T, sc *seed.Cluster, name string, ip netip.Addr, holder string) {
	t.Helper()
	ctx := t.Context()
	ports := []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}
	if err := sc.Service(ctx, scenarioNS, name, nil, nil, ports); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := sc.Core.CoreV1().Services(scenarioNS).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete service %s/%s: %v", scenarioNS, name, err)
		}
		if err := sc.DeleteLease(ctx, scenarioNS, name); err != nil {
			t.Error(err)
		}
	})
	if err := sc.SetServiceIP(ctx, scenarioNS, name, ip); err != nil {
		t.Fatal(err)
	}
	// One ready backend, so that the diagnosis chain gets past it.
	if err := sc.EndpointSlice(ctx, scenarioNS, name, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := sc.Core.DiscoveryV1().EndpointSlices(scenarioNS).Delete(ctx, name+"-seed", metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete endpointslice %s/%s-seed: %v", scenarioNS, name, err)
		}
	})
	now := time.Now()
	writeLease(t, sc, name, holder, now, now, 1)
}

// diagnosisFlags are the flags of lbprobe in TestScenarios, for
// `lbprobe diagnose`.
var diagnosisFlags = []string{"--probe.timeout=2s", "--probe.route.expect-interface=^" + lab.Interface + "$"}

// diagnose runs `lbprobe diagnose` on the router for one target and checks
// the verdict of each of its chains, the exit code (0 for ok, else 1) and
// that the fix names each of fix.
func diagnose(t *testing.T, l *lab.Lab, target, cause string, fix ...string) {
	t.Helper()
	diags, code := l.Diagnose(t, l.Router, append(diagnosisFlags, target)...)
	wantCode := 1
	if cause == diagnosis.CauseOK {
		wantCode = 0
	}
	if code != wantCode || len(diags) == 0 {
		t.Fatalf("lbprobe diagnose %s: exit %d with %d diagnoses, want exit %d: %+v", target, code, len(diags), wantCode, diags)
	}
	for _, d := range diags {
		if d.Cause != cause {
			t.Errorf("lbprobe diagnose %s: %s has cause %s, want %s; steps: %+v", target, d.Target, d.Cause, cause, d.Steps)
		}
		for _, want := range fix {
			if !strings.Contains(d.Fix, want) {
				t.Errorf("lbprobe diagnose %s: fix %q lacks %q", target, d.Fix, want)
			}
		}
		if cause == diagnosis.CauseOK {
			for _, s := range d.Steps {
				if s.State != diagnosis.OK {
					t.Errorf("lbprobe diagnose %s: healthy chain has %q %s (%s)", target, s.Name, s.State, s.Evidence)
				}
			}
		}
	}
}

// verdict is the diagnosis series of a scenario Service's IP.
func verdict(svc string, ip netip.Addr, cause string) expect {
	return expect{name: "loadbalancer_diagnosis_info", labels: ipLabels(svc, ip).with("cause", cause), want: 1}
}

// writeLease writes a scenario Service's lease, retrying when the Cilium
// stand-in's renewal raced the write.
func writeLease(t *testing.T, sc *seed.Cluster, svc, holder string, acquired, renewed time.Time, transitions int32) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		return sc.Lease(t.Context(), scenarioNS, svc, holder, acquired, renewed, 15, transitions)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func syncLab(t *testing.T, l *lab.Lab) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	if err := l.Sync(ctx); err != nil {
		t.Fatalf("lab sync: %v", err)
	}
}

// ipLabels are the labels of a scenario Service's per-IP series.
func ipLabels(svc string, ip netip.Addr) labels {
	return labels{"namespace": scenarioNS, "service": svc, "ip": ip.String()}
}

// responders checks that exactly the given nodes answered ARP for ip, with
// their MACs and names.
func responders(e exposition, svc string, ip netip.Addr, nodes ...*lab.Node) error {
	want := make([]string, 0, len(nodes))
	for _, n := range nodes {
		want = append(want, ipLabels(svc, ip).with("interface", lab.Interface, "mac", n.MAC.String(), "node", n.Name).String())
	}
	var got []string
	for _, ls := range e.matching("loadbalancer_arp_responder_info", ipLabels(svc, ip)) {
		got = append(got, ls.String())
	}
	sort.Strings(want)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		return fmt.Errorf("loadbalancer_arp_responder_info for %s: got\n\t%s\nwant\n\t%s", ip, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
	return nil
}

// TestScenarios drives the lab through the failures lbprobe is meant to
// show and checks lbprobe's series from real scrapes: a lease takeover, two
// nodes answering ARP, no node answering, and a route to a load balancer IP
// through a tailscale0 link instead of the LAN.
func TestScenarios(t *testing.T) {
	begin := time.Now()
	sc, l := seededLab(t)
	addrs := l.Addrs
	if err := sc.Namespace(t.Context(), scenarioNS); err != nil {
		t.Fatal(err)
	}
	lbp := l.StartLBProbe(t, l.Router, "--probe.timeout=2s", "--probe.route.expect-interface=^"+lab.Interface+"$")
	t.Logf("lab and lbprobe ready in %s", time.Since(begin).Round(time.Millisecond))
	nuc, opti1, opti2 := l.Node(seed.NodeNames[0]), l.Node(seed.NodeNames[1]), l.Node(seed.NodeNames[2])

	t.Run("lease takeover", func(t *testing.T) {
		const svc = "takeover"
		ip := netip.MustParseAddr("10.11.80.90")
		scenarioService(t, sc, svc, ip, nuc.Name)
		syncLab(t, l)
		lease := seed.LeaseName(scenarioNS, svc)
		leaseLabels := func(holder string) labels {
			return labels{"namespace": scenarioNS, "service": svc, "lease": lease, "holder": holder}
		}
		arp := ipLabels(svc, ip).with("interface", lab.Interface)
		scrapeUntil(t, lbp, func(e exposition) error {
			return errors.Join(e.check([]expect{
				{name: "loadbalancer_arp_reachable", labels: arp, want: 1},
				{name: "loadbalancer_arp_responders", labels: arp, want: 1},
				{name: "loadbalancer_arp_holder_match", labels: arp, want: 1},
				{name: "loadbalancer_l2_lease_transitions", labels: leaseLabels(nuc.Name), want: 1},
			}), responders(e, svc, ip, nuc))
		})

		// k8s-opti-01 takes the lease over; k8s-nuc stops answering.
		now := time.Now()
		writeLease(t, sc, svc, opti1.Name, now, now, 2)
		syncLab(t, l)
		if got := opti1.Announced(); !slices.Contains(got, ip) {
			t.Fatalf("%s announces %v after the takeover, want %s among them", opti1.Name, got, ip)
		}
		if got := nuc.Announced(); slices.Contains(got, ip) {
			t.Fatalf("%s still announces %s after the takeover", nuc.Name, ip)
		}
		scrapeUntil(t, lbp, func(e exposition) error {
			return errors.Join(e.check([]expect{
				{name: "loadbalancer_arp_reachable", labels: arp, want: 1},
				{name: "loadbalancer_arp_responders", labels: arp, want: 1},
				{name: "loadbalancer_arp_holder_match", labels: arp, want: 1},
				{name: "loadbalancer_l2_lease_transitions", labels: leaseLabels(opti1.Name), want: 2},
				{name: "loadbalancer_l2_lease_transitions", labels: leaseLabels(nuc.Name), absent: true},
				{name: "loadbalancer_reachable", labels: ipLabels(svc, ip), want: 1},
				// Seen from the LAN with ARP, every step of the chain is ok.
				verdict(svc, ip, diagnosis.CauseOK),
			}), responders(e, svc, ip, opti1))
		})
		diagnose(t, l, scenarioNS+"/"+svc, diagnosis.CauseOK)
	})

	t.Run("two nodes answer", func(t *testing.T) {
		const svc = "split-brain"
		ip := netip.MustParseAddr("10.11.80.91")
		scenarioService(t, sc, svc, ip, opti1.Name)
		syncLab(t, l)
		opti2.Announce(ip)
		t.Cleanup(func() { opti2.Withdraw(ip) })
		arp := ipLabels(svc, ip).with("interface", lab.Interface)
		scrapeUntil(t, lbp, func(e exposition) error {
			return errors.Join(e.check([]expect{
				{name: "loadbalancer_arp_reachable", labels: arp, want: 1},
				{name: "loadbalancer_arp_responders", labels: arp, want: 2},
				{name: "loadbalancer_arp_holder_match", labels: arp, want: 0},
				verdict(svc, ip, diagnosis.CauseSplitBrain),
			}), responders(e, svc, ip, opti1, opti2))
		})
		diagnose(t, l, ip.String(), diagnosis.CauseSplitBrain, opti1.Name, opti2.Name, ip.String())
	})

	t.Run("no node answers", func(t *testing.T) {
		// A fresh IP whose holder is silent from the start: the router's
		// kernel never learnt a MAC for it, so TCP cannot reach it either.
		const svc = "unanswered"
		ip := netip.MustParseAddr("10.11.80.92")
		flushNeighbour(t, l.Router, ip)
		opti2.SetARP(false)
		t.Cleanup(func() { opti2.SetARP(true) })
		scenarioService(t, sc, svc, ip, opti2.Name)
		syncLab(t, l)
		arp := ipLabels(svc, ip).with("interface", lab.Interface)
		e := scrapeUntil(t, lbp, func(e exposition) error {
			return errors.Join(e.check([]expect{
				{name: "loadbalancer_arp_reachable", labels: arp, want: 0},
				{name: "loadbalancer_arp_responders", labels: arp, want: 0},
				{name: "loadbalancer_arp_failure_info", labels: arp.with("reason", "timeout"), want: 1},
				// k8s-opti-02's own IP still answers: its MAC is known.
				{name: "loadbalancer_arp_holder_match", labels: arp, want: 0},
				{name: "loadbalancer_reachable", labels: ipLabels(svc, ip), want: 0},
				{name: "loadbalancer_port_reachable", labels: ipLabels(svc, ip).with("port", "80", "protocol", "TCP"), want: 0},
				verdict(svc, ip, diagnosis.CauseHolderSilent),
			}), responders(e, svc, ip))
		})
		diagnose(t, l, scenarioNS+"/"+svc, diagnosis.CauseHolderSilent, "nobody answers ARP for "+ip.String(), opti2.Name, seed.LeaseName(scenarioNS, svc))
		// The others are unaffected.
		if err := e.check([]expect{
			{name: "loadbalancer_reachable", labels: labels{"namespace": seed.GatewayNS, "service": "cilium-gateway-external", "ip": addrs.External.String()}, want: 1},
		}); err != nil {
			t.Error(err)
		}
	})

	t.Run("route via tailscale0", func(t *testing.T) {
		// A veth named tailscale0 in the router, its peer in a namespace of
		// its own, and a host route for the external Gateway's IP over it.
		nl := netlab.New(t)
		ts := nl.Namespace("tailnet")
		nl.Veth(ts, "eth0", l.Router, "tailscale0")
		t.Cleanup(func() { deleteLink(t, l.Router, "tailscale0") })
		l.Router.Route(netip.PrefixFrom(addrs.External, 32).String(), "", "tailscale0")

		route := func(ns, svc string, ip netip.Addr) labels {
			return labels{"namespace": ns, "service": svc, "ip": ip.String()}
		}
		external := route(seed.GatewayNS, "cilium-gateway-external", addrs.External)
		internal := route(seed.GatewayNS, "cilium-gateway-internal", addrs.Internal)
		legacy := route(seed.AppsNS, "legacy", addrs.Legacy)
		scrapeUntil(t, lbp, func(e exposition) error {
			return e.check([]expect{
				{name: "loadbalancer_route_info", labels: external.with("interface", "tailscale0", "gateway", ""), want: 1},
				{name: "loadbalancer_route_info", labels: external.with("interface", lab.Interface, "gateway", ""), absent: true},
				{name: "loadbalancer_route_ok", labels: external, want: 0},
				{name: "loadbalancer_route_info", labels: internal.with("interface", lab.Interface, "gateway", ""), want: 1},
				{name: "loadbalancer_route_ok", labels: internal, want: 1},
				{name: "loadbalancer_route_info", labels: legacy.with("interface", lab.Interface, "gateway", ""), want: 1},
				{name: "loadbalancer_route_ok", labels: legacy, want: 1},
				{name: "loadbalancer_diagnosis_info", labels: external.with("cause", diagnosis.CauseRouteViaTunnel), want: 1},
				{name: "loadbalancer_diagnosis_info", labels: internal.with("cause", diagnosis.CauseOK), want: 1},
				// Nothing ready behind apps/legacy (the seed).
				{name: "loadbalancer_diagnosis_info", labels: legacy.with("cause", diagnosis.CauseNoReadyBackends), want: 1},
			})
		})
		diagnose(t, l, addrs.External.String(), diagnosis.CauseRouteViaTunnel, "through tailscale0")
		diagnose(t, l, seed.AppsNS+"/legacy", diagnosis.CauseNoReadyBackends, "kubernetes.io/service-name=legacy")
	})

	// Every scenario undid its changes: the reference Services are as
	// healthy as at the start.
	t.Run("reset", func(t *testing.T) {
		ext := labels{"namespace": seed.GatewayNS, "service": "cilium-gateway-external", "ip": addrs.External.String()}
		scrapeUntil(t, lbp, func(e exposition) error {
			return errors.Join(e.check([]expect{
				{name: "loadbalancer_route_info", labels: ext.with("interface", lab.Interface, "gateway", ""), want: 1},
				{name: "loadbalancer_route_ok", labels: ext, want: 1},
				{name: "loadbalancer_arp_holder_match", labels: ext.with("interface", lab.Interface), want: 1},
				{name: "loadbalancer_reachable", labels: ext, want: 1},
			}), func() error {
				if got := e.matching("loadbalancer_arp_reachable", labels{"namespace": scenarioNS}); len(got) > 0 {
					return fmt.Errorf("scenario Services still probed: %v", got)
				}
				return nil
			}())
		})
	})
}

// flushNeighbour deletes the router namespace's neighbour entry for ip, if
// any (netlink inside ns; nothing is sent on the network).
func flushNeighbour(t *testing.T, ns *netlab.Namespace, ip netip.Addr) {
	t.Helper()
	h := handleIn(t, ns)
	if h == nil {
		t.FailNow()
	}
	defer h.Close()
	neighs, err := h.NeighList(0, netlink.FAMILY_V4)
	if err != nil {
		t.Fatalf("list neighbours in %s: %v", ns.Name, err)
	}
	for _, n := range neighs {
		if a, ok := netip.AddrFromSlice(n.IP.To4()); ok && a == ip {
			if err := h.NeighDel(&n); err != nil {
				t.Fatalf("delete neighbour %s in %s: %v", ip, ns.Name, err)
			}
		}
	}
}

// deleteLink deletes the link name inside ns (with a veth, its peer goes
// too, and the routes through it).
func deleteLink(t *testing.T, ns *netlab.Namespace, name string) {
	t.Helper()
	h := handleIn(t, ns)
	if h == nil {
		return
	}
	defer h.Close()
	lk, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return
		}
		t.Errorf("link %s in %s: %v", name, ns.Name, err)
		return
	}
	if err := h.LinkDel(lk); err != nil {
		t.Errorf("delete %s in %s: %v", name, ns.Name, err)
	}
}

// handleIn returns a netlink handle inside ns for the caller to close, or
// nil after failing t (usable from a cleanup).
func handleIn(t *testing.T, ns *netlab.Namespace) *netlink.Handle {
	t.Helper()
	fd, err := netns.GetFromName(ns.Name)
	if err != nil {
		t.Errorf("open namespace %s: %v", ns.Name, err)
		return nil
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		t.Errorf("netlink in %s: %v", ns.Name, err)
		return nil
	}
	return h
}

// l2Series returns the lines of an exposition that `make lab` shows: what
// the LAN sees of each load balancer IP.
func l2Series(body string) string {
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "loadbalancer_arp_") || strings.HasPrefix(line, "loadbalancer_route_") ||
			strings.HasPrefix(line, "loadbalancer_reachable") || strings.HasPrefix(line, "loadbalancer_l2_lease_transitions") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
