package sandbox_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lbprobe/lbprobe/test/lbprobebin"
	"github.com/lbprobe/lbprobe/test/poll"
	"github.com/lbprobe/lbprobe/test/sandbox"
	"github.com/lbprobe/lbprobe/test/seed"
)

// scrape fetches lbprobe's /metrics, which runs a probe round.
func scrape(t *testing.T, s *sandbox.Sandbox) string {
	t.Helper()
	return get(t, s.URL+"/metrics")
}

// get fetches url and fails t unless it answers 200.
func get(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return string(body)
}

// hasLine reports whether the exposition text has exactly this line.
func hasLine(metrics, line string) bool {
	for l := range strings.Lines(metrics) {
		if strings.TrimSuffix(l, "\n") == line {
			return true
		}
	}
	return false
}

// waitForLine scrapes every 200 ms until a scrape has line, for up to 10s.
func waitForLine(t *testing.T, s *sandbox.Sandbox, line string) {
	t.Helper()
	err := poll.Until(t.Context(), 10*time.Second, 200*time.Millisecond, func() error {
		metrics := scrape(t, s)
		if hasLine(metrics, line) {
			return nil
		}
		var got []string
		for l := range strings.Lines(metrics) {
			if strings.HasPrefix(l, "loadbalancer_port_reachable") {
				got = append(got, strings.TrimSuffix(l, "\n"))
			}
		}
		return fmt.Errorf("lbprobe's metrics lack\n  %s\nloadbalancer_port_reachable:\n  %s", line, strings.Join(got, "\n  "))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestListenerOutage starts the sandbox and stops and restarts the external
// Gateway's https listener: lbprobe's port series follows.
func TestListenerOutage(t *testing.T) {
	begin := time.Now()
	bin := lbprobebin.Path(t)
	t.Logf("lbprobe binary %s after %s", bin, time.Since(begin).Round(time.Millisecond))
	begin = time.Now()
	s, err := sandbox.Start(t.Context(), sandbox.Options{LBProbe: bin, Logf: t.Logf, Loopback: 13})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("lbprobe's log:\n%s", s.Logs())
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("sandbox up, lbprobe ready at %s in %s", s.URL, time.Since(begin).Round(time.Millisecond))

	ap := netip.AddrPortFrom(s.Addrs.External, uint16(s.Ports.HTTPS))
	series := fmt.Sprintf(`loadbalancer_port_reachable{ip="%s",namespace="%s",port="%d",protocol="TCP",service="cilium-gateway-external"}`,
		s.Addrs.External, seed.GatewayNS, s.Ports.HTTPS)
	if metrics := scrape(t, s); !hasLine(metrics, series+" 1") {
		t.Fatalf("lbprobe's metrics lack\n  %s 1\ngot:\n%s", series, metrics)
	}

	// Nothing serves apps/legacy.
	if err := s.StopListener(netip.AddrPortFrom(s.Addrs.Legacy, uint16(s.Ports.HTTP))); err == nil {
		t.Error("StopListener of apps/legacy's port: no error, want one")
	}
	if err := s.StopListener(ap); err != nil {
		t.Fatal(err)
	}
	begin = time.Now()
	waitForLine(t, s, series+" 0")
	t.Logf("listener %s stopped: reachable 0 after %s", ap, time.Since(begin).Round(time.Millisecond))

	if err := s.StartListener(ap); err != nil {
		t.Fatal(err)
	}
	begin = time.Now()
	waitForLine(t, s, series+" 1")
	t.Logf("listener %s restarted: reachable 1 after %s", ap, time.Since(begin).Round(time.Millisecond))
}

// TestBrokenOnPurpose: the sandbox shows each cluster check failing next to
// a healthy one, in the series and on the landing page.
func TestBrokenOnPurpose(t *testing.T) {
	s, err := sandbox.Start(t.Context(), sandbox.Options{LBProbe: lbprobebin.Path(t), Logf: t.Logf, Loopback: 15})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	shared := s.Addrs.External.As4()
	shared[3] = 86
	redirect := func(gw string) string {
		return fmt.Sprintf(`gateway_route_accepted{gateway="%s",gateway_namespace="gateway",namespace="gateway",route="httpsredirect",section="http"}`, gw)
	}
	lines := []string{
		// A requested IP not assigned, and one that is.
		fmt.Sprintf(`loadbalancer_requested_ip_assigned{ip="%s",namespace="apps",service="pinned"} 0`, s.Addrs.Legacy),
		fmt.Sprintf(`loadbalancer_requested_ip_assigned{ip="%s",namespace="network",service="k8s-gateway"} 1`, s.Addrs.DNS),
		`loadbalancer_ipam_request_info{namespace="apps",reason="already_allocated",service="pinned",status="False"} 1`,
		// No ready backend behind apps/legacy; the external Gateway counts its route's two.
		`loadbalancer_backends_ready{namespace="apps",service="legacy"} 0`,
		`loadbalancer_backends_ready{namespace="gateway",service="cilium-gateway-external"} 2`,
		// The seed's httpsredirect refused by both Gateways; public-app accepted.
		redirect("external") + " 0",
		redirect("internal") + " 0",
		`gateway_route_accepted{gateway="external",gateway_namespace="gateway",namespace="apps",route="public-app",section="https"} 1`,
		`gateway_listener_attached_routes{gateway="external",listener="https",namespace="gateway"} 1`,
		// The policies: the seed's selects all three nodes, the dmz one none and Cilium
		// could not parse it.
		`loadbalancer_l2_policy_nodes{policy="l2-policy"} 3`,
		`loadbalancer_l2_policy_nodes{policy="l2-policy-dmz"} 0`,
		`loadbalancer_l2_policy_condition_info{condition="io.cilium/bad-interface-regex",policy="l2-policy-dmz",status="True"} 1`,
		// Two holders for one shared IP.
		fmt.Sprintf(`loadbalancer_shared_ip_holders{ip="%s"} 2`, netip.AddrFrom4(shared)),
	}
	metrics := scrape(t, s)
	for _, l := range lines {
		if !hasLine(metrics, l) {
			t.Errorf("lbprobe's metrics lack\n  %s", l)
		}
	}
	// The interface check runs against this host's interfaces as k8s-nuc's:
	// whatever they are, the series is there.
	if !strings.Contains(metrics, `loadbalancer_l2_policy_interfaces_matched{interfaces=`) {
		t.Error("lbprobe's metrics lack loadbalancer_l2_policy_interfaces_matched (the sandbox runs it with --node.name)")
	}

	page := get(t, s.URL+"/")
	for _, want := range []string{
		"What the cluster says is wrong",
		"requested_ip_not_assigned</td><td>Service apps/pinned",
		"no_ready_backends</td><td>Service apps/legacy",
		"route_not_accepted</td><td>HTTPRoute gateway/httpsredirect",
		"policy_no_node</td><td>CiliumL2AnnouncementPolicy l2-policy-dmz",
		"policy_invalid</td><td>CiliumL2AnnouncementPolicy l2-policy-dmz",
		"split_brain</td><td>IP " + netip.AddrFrom4(shared).String(),
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the landing page lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("lbprobe's log:\n%s", s.Logs())
	}

	// The debug view of apps/legacy's IP lists what concerns it (apps/pinned
	// asks for that IP) and what concerns the cluster, not another IP's.
	debug := get(t, s.URL+"/probe?debug=true&target="+s.Addrs.Legacy.String())
	for _, want := range []string{"no_ready_backends  Service apps/legacy", "requested_ip_not_assigned  Service apps/pinned", "policy_no_node"} {
		if !strings.Contains(debug, want) {
			t.Errorf("the debug view of %s lacks %q:\n%s", s.Addrs.Legacy, want, debug)
		}
	}
	if strings.Contains(debug, "split_brain") {
		t.Errorf("the debug view of %s lists the split brain of another IP:\n%s", s.Addrs.Legacy, debug)
	}
}
