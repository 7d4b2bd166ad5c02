// Package integration runs lbprobe's Kubernetes discovery and probe engine
// against a real kube-apiserver and the real k8s_gateway, and checks that
// lbprobe's DNS verdicts agree with what k8s_gateway answers.
package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/lbprobe/lbprobe/collector"
	"github.com/lbprobe/lbprobe/collector/kube"
	"github.com/lbprobe/lbprobe/test/k8sgateway"
	"github.com/lbprobe/lbprobe/test/kubecluster"
	"github.com/lbprobe/lbprobe/test/poll"
	"github.com/lbprobe/lbprobe/test/seed"
)

func TestMain(m *testing.M) {
	dirs, err := kubecluster.CRDDirs()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(kubecluster.Shared(m, kubecluster.Options{CRDDirs: dirs}))
}

// verdicts probes one round and returns the DNS result of every hostname
// check, keyed "source hostname".
func verdicts(t *testing.T, e *collector.Engine) map[string]collector.DNSStatus {
	t.Helper()
	r := e.Probe(t.Context(), 5*time.Second)
	out := make(map[string]collector.DNSStatus)
	for _, h := range r.Hostnames() {
		for _, d := range h.DNS {
			out[h.Source+" "+h.Hostname.Hostname] = d
		}
	}
	return out
}

// ask queries server for name's A records, as a client of k8s_gateway would.
func ask(t *testing.T, server, name string) (string, []netip.Addr) {
	t.Helper()
	msg := new(dns.Msg)
	msg.SetQuestion(dns.Fqdn(name), dns.TypeA)
	resp, _, err := (&dns.Client{Timeout: 2 * time.Second}).ExchangeContext(t.Context(), msg, server)
	if err != nil {
		t.Fatalf("asking %s for %s: %v", server, name, err)
	}
	var addrs []netip.Addr
	for _, rr := range resp.Answer {
		if a, ok := rr.(*dns.A); ok {
			ip, _ := netip.AddrFromSlice(a.A)
			addrs = append(addrs, ip.Unmap())
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return dns.RcodeToString[resp.Rcode], addrs
}

// eventually polls f every 100 ms until it returns "", failing the test
// with what and f's last message after 20 s.
func eventually(t *testing.T, what string, f func() string) {
	t.Helper()
	err := poll.Until(t.Context(), 20*time.Second, 100*time.Millisecond, func() error {
		if msg := f(); msg != "" {
			return errors.New(msg)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func TestDNSVerdictsAgreeWithK8sGateway(t *testing.T) {
	c := kubecluster.Get(t)
	ctx := t.Context()
	if err := k8sgateway.MakeCRDsCompatible(ctx, c.RESTConfig()); err != nil {
		t.Fatal(err)
	}
	addrs := seed.Loopback(12) // the engine probes them: they must stay on this machine
	cl, err := seed.New(c.RESTConfig(), addrs)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Seed(ctx, seed.ReferencePorts()); err != nil {
		t.Fatal(err)
	}
	server, err := k8sgateway.Start(ctx, k8sgateway.Options{
		Zone: seed.Domain, Kubeconfig: c.KubeconfigPath(), Listen: netip.MustParseAddrPort("127.0.0.1:0"), Dir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(server.Stop)

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := kube.New(c.RESTConfig(), kube.Options{
		CiliumNamespace: seed.CiliumNamespace, DNSDomain: seed.Domain, DNSServers: []string{server.Addr.String()},
	}, logger)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	if err := d.Start(runCtx); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	e := collector.NewEngine(collector.Config{Concurrency: 16, Logger: logger, Options: collector.Options{ProbeTimeout: 2 * time.Second}}, d)

	// Every verdict agrees with a direct question to k8s_gateway: the
	// addresses lbprobe saw are what a client gets, and "correct" means
	// they are the expected set.
	want := map[string]string{
		"httproute app." + seed.Domain:                           "correct",
		"httproute internal." + seed.Domain:                      "correct",
		"service cilium-gateway-external.gateway." + seed.Domain: "correct",
		"service cilium-gateway-internal.gateway." + seed.Domain: "correct",
		"service k8s-gateway.network." + seed.Domain:             "correct",
		"service app." + seed.Domain:                             "wrong_address", // legacy's annotation: the route wins
	}
	eventually(t, "first verdicts", func() string {
		got := verdicts(t, e)
		var problems []string
		for key, verdict := range want {
			st, ok := got[key]
			if !ok {
				problems = append(problems, key+": not checked")
				continue
			}
			if string(st.Result.Verdict) != verdict {
				problems = append(problems, fmt.Sprintf("%s: %s, want %s (answered %v)", key, st.Result.Verdict, verdict, st.Result.Addresses))
			}
		}
		for key, st := range got {
			host := strings.SplitN(key, " ", 2)[1]
			_, answered := ask(t, server.Addr.String(), host)
			if !slices.Equal(answered, st.Result.Addresses) && st.Result.Verdict != "nxdomain" {
				problems = append(problems, fmt.Sprintf("%s: lbprobe saw %v, k8s_gateway answers %v", key, st.Result.Addresses, answered))
			}
		}
		slices.Sort(problems)
		return strings.Join(problems, "; ")
	})

	// The Gateway's address changes: k8s_gateway follows, and so does the
	// expected answer, so the verdict stays correct with the new address.
	moved := netip.MustParseAddr("127.12.80.90")
	if err := cl.SetGatewayAddress(ctx, seed.GatewayNS, "external", moved, true); err != nil {
		t.Fatal(err)
	}
	eventually(t, "after the external Gateway moved", func() string {
		st := verdicts(t, e)["httproute app."+seed.Domain]
		if st.Result.Verdict != "correct" || !slices.Equal(st.Result.Addresses, []netip.Addr{moved}) {
			return fmt.Sprintf("verdict %s, addresses %v, want correct [%s]", st.Result.Verdict, st.Result.Addresses, moved)
		}
		return ""
	})

	// A route attached to two Gateways, the second by a parentRef without a
	// namespace: k8s_gateway v0.4.0 carries the first parentRef's namespace
	// over and misses the second Gateway, so it answers only the first
	// address. lbprobe expects both: missing_address.
	if err := cl.Gateway(ctx, seed.AppsNS, "apps-gw", netip.MustParseAddr("127.12.80.91"), ""); err != nil {
		t.Fatal(err)
	}
	route := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
		"metadata": map[string]any{"name": "both", "namespace": seed.AppsNS},
		"spec": map[string]any{
			"hostnames": []any{"both." + seed.Domain},
			"parentRefs": []any{
				map[string]any{"name": "internal", "namespace": seed.GatewayNS},
				map[string]any{"name": "apps-gw"},
			},
		},
	}}
	if _, err := cl.Dynamic.Resource(seed.HTTPRouteGVR).Namespace(seed.AppsNS).Create(ctx, route, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "route on two Gateways", func() string {
		st, ok := verdicts(t, e)["httproute both."+seed.Domain]
		if !ok || st.Result.Verdict != "missing_address" {
			return fmt.Sprintf("verdict %q (checked %v), want missing_address", st.Result.Verdict, ok)
		}
		if !slices.Equal(st.Result.Missing, []netip.Addr{netip.MustParseAddr("127.12.80.91")}) {
			return fmt.Sprintf("missing %v, want [127.12.80.91]", st.Result.Missing)
		}
		return ""
	})

	// The internal Gateway loses its address: k8s_gateway has nothing to
	// answer for its route any more, and lbprobe stops checking the name
	// (an empty expectation proves nothing; gateway_info shows the Gateway
	// without address instead).
	if err := cl.SetGatewayAddress(ctx, seed.GatewayNS, "internal", netip.Addr{}, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "internal Gateway without address", func() string {
		rcode, _ := ask(t, server.Addr.String(), "internal."+seed.Domain)
		st, checked := verdicts(t, e)["httproute internal."+seed.Domain]
		if rcode != "NXDOMAIN" || checked {
			return fmt.Sprintf("k8s_gateway %s, lbprobe checked=%v (%s); want NXDOMAIN and not checked", rcode, checked, st.Result.Verdict)
		}
		return ""
	})
}
