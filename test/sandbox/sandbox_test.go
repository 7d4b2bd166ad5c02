package sandbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lbprobe/lbprobe/collector/diagnosis"
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
		// The Why column: the verdict, linked to its runbook section, and the fix.
		`<a href="` + diagnosis.Runbook(diagnosis.CauseIPPending) + `">ip_pending</a>: LB-IPAM gave apps/pending no IP`,
		`<a href="` + diagnosis.Runbook(diagnosis.CauseRouteNotAccepted) + `">route_not_accepted</a>: Gateway gateway/internal did not accept route apps/shared-app (NotAllowedByListeners)`,
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
	// ... and the chain (whose verdict depends on this host's interfaces, see
	// testDiagnosisSeries).
	for _, want := range []string{"Diagnosis (", "apps/legacy " + s.Addrs.Legacy.String() + "\n", "✓ IP assigned", "verdict: "} {
		if !strings.Contains(debug, want) {
			t.Errorf("the debug view of %s lacks %q:\n%s", s.Addrs.Legacy, want, debug)
		}
	}

	t.Run("diagnose", func(t *testing.T) { testDiagnose(t, s) })
	t.Run("more causes", func(t *testing.T) { testMoreCauses(t, s) })
	t.Run("remediation dry-run", func(t *testing.T) {
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("lbprobe's log:\n%s", s.Logs())
			}
		})
		// The orphaned lease of apps/gone, after its 5s grace: counted, not deleted.
		waitForLine(t, s, `lbprobe_remediations_total{action="delete_orphaned_lease",result="dry_run"} 1`)
		if _, err := s.Seed.Core.CoordinationV1().Leases(seed.CiliumNamespace).Get(t.Context(), seed.LeaseName(seed.AppsNS, "gone"), metav1.GetOptions{}); err != nil {
			t.Errorf("dry-run deleted the orphaned lease: %v", err)
		}
		page := get(t, s.URL+"/")
		for _, want := range []string{"Lease remediation (dry-run)", "This lbprobe leads", "<code>" + seed.LeaseName(seed.AppsNS, "gone") + "</code>", "delete_orphaned_lease", "dry_run"} {
			if !strings.Contains(page, want) {
				t.Errorf("the landing page lacks %q", want)
			}
		}
	})
	t.Run("diagnosis series", func(t *testing.T) { testDiagnosisSeries(t, s) })
}

// diagnoseCase is a target of the sandbox and the verdict of each of its
// chains; fix are strings its fix must name.
type diagnoseCase struct {
	target string
	object string // only the chains of the hostname from this object
	cause  string
	ip     string
	fix    []string
}

func diagnoseCases(s *sandbox.Sandbox) []diagnoseCase {
	leaseNS := seed.CiliumNamespace
	staleLease := seed.LeaseName(seed.NetworkNS, "k8s-gateway")
	b := s.Addrs.External.As4()
	b[3] = 86 // apps/shared-a and -b (test/sandbox/broken.go)
	shared := netip.AddrFrom4(b)
	return []diagnoseCase{
		{target: "network/k8s-gateway", cause: diagnosis.CauseLeaseExpired, ip: s.Addrs.DNS.String(), fix: []string{
			"the lease " + staleLease + " was last renewed 10m", "by " + seed.NodeNames[2],
			"`kubectl -n " + leaseNS + " delete lease " + staleLease + "`", "re-check",
		}},
		{target: "apps/pending", cause: diagnosis.CauseIPPending, fix: []string{"ciliumloadbalancerippools", "kubectl -n apps describe service pending"}},
		{target: "apps/pinned", cause: diagnosis.CauseIPPending, fix: []string{"asks for " + s.Addrs.Legacy.String(), "lbipam.cilium.io/ips"}},
		{target: "apps/legacy", cause: diagnosis.CauseNoReadyBackends, ip: s.Addrs.Legacy.String(), fix: []string{"kubectl -n apps get endpointslices -l kubernetes.io/service-name=legacy"}},
		{target: "apps/shared-a", cause: diagnosis.CauseSplitBrain, ip: shared.String(), fix: []string{seed.NodeNames[0], seed.NodeNames[1], "Give each Service its own IP"}},
		{target: "shared." + seed.Domain, cause: diagnosis.CauseRouteNotAccepted, fix: []string{"gateway/internal", "NotAllowedByListeners", "kubectl -n apps describe httproute shared-app"}},
		// apps/legacy's annotation claims the route's name: k8s_gateway answers the route's Gateway.
		{target: "app." + seed.Domain, object: "service apps/legacy", cause: diagnosis.CauseDNSWrongAddress, fix: []string{
			fmt.Sprintf("answers %s for app.%s, the service apps/legacy has %s", s.Addrs.External, seed.Domain, s.Addrs.Legacy),
		}},
		{target: "gateway/cilium-gateway-internal", cause: diagnosis.CauseOK, ip: s.Addrs.Internal.String()},
		{target: "internal." + seed.Domain, cause: diagnosis.CauseOK},
	}
}

// testDiagnose runs `lbprobe diagnose` against the sandbox as a LAN host
// would, for each broken-on-purpose object and two healthy ones.
func testDiagnose(t *testing.T, s *sandbox.Sandbox) {
	run := func(t *testing.T, args ...string) lbprobebin.Result {
		t.Helper()
		return lbprobebin.Run(t, lbprobebin.StartOptions{Args: append(append([]string{"diagnose"}, s.DiagnoseFlags()...), args...)}, time.Minute)
	}
	for _, tc := range diagnoseCases(s) {
		t.Run(tc.target, func(t *testing.T) {
			res := run(t, "--output=json", tc.target)
			var diags []diagnosis.Diagnosis
			if err := json.Unmarshal([]byte(res.Stdout), &diags); err != nil || len(diags) == 0 {
				t.Fatalf("exit %d, no diagnoses (%v); stdout:\n%s\nstderr:\n%s", res.Code, err, res.Stdout, res.Stderr)
			}
			wantCode := 1
			if tc.cause == diagnosis.CauseOK {
				wantCode = 0
			}
			if res.Code != wantCode {
				t.Errorf("exit %d, want %d", res.Code, wantCode)
			}
			if tc.object != "" {
				diags = slices.DeleteFunc(diags, func(d diagnosis.Diagnosis) bool { return d.Object != tc.object })
				if len(diags) == 0 {
					t.Fatalf("no chain of %s for %s:\n%s", tc.object, tc.target, res.Stdout)
				}
			}
			for _, d := range diags {
				if d.Cause != tc.cause {
					t.Errorf("%s: cause %s, want %s; steps: %+v", d.Target, d.Cause, tc.cause, d.Steps)
				}
				if tc.ip != "" && d.IP != tc.ip {
					t.Errorf("%s: ip %q, want %q", d.Target, d.IP, tc.ip)
				}
				for _, want := range tc.fix {
					if !strings.Contains(d.Fix, want) {
						t.Errorf("%s: fix %q lacks %q", d.Target, d.Fix, want)
					}
				}
				if tc.cause != diagnosis.CauseOK && d.Runbook != diagnosis.Runbook(tc.cause) {
					t.Errorf("%s: runbook %q", d.Target, d.Runbook)
				}
				for _, st := range d.Steps {
					if tc.cause == diagnosis.CauseOK && st.State == diagnosis.Failed {
						t.Errorf("%s: healthy chain has a failed step %q (%s)", d.Target, st.Name, st.Evidence)
					}
					// This run has no ARP: L2 is not observed, never ok.
					if st.Name == diagnosis.StepARP && st.State == diagnosis.OK {
						t.Errorf("%s: the ARP step is ok without ARP probes", d.Target)
					}
				}
			}
		})
	}

	t.Run("text", func(t *testing.T) {
		res := run(t, "network/k8s-gateway")
		t.Logf("lbprobe diagnose network/k8s-gateway:\n%s", res.Stdout)
		for _, want := range []string{"network/k8s-gateway " + s.Addrs.DNS.String(), "✓ IP assigned", "✗ lease live", "? holder, and only it, answers ARP", "verdict: lease_expired", "fix: ", "runbook: "} {
			if !strings.Contains(res.Stdout, want) {
				t.Errorf("the text lacks %q:\n%s", want, res.Stdout)
			}
		}
		if res.Code != 1 {
			t.Errorf("exit %d, want 1", res.Code)
		}
	})
	t.Run("every failing target", func(t *testing.T) {
		res := run(t, "--output=json")
		var diags []diagnosis.Diagnosis
		if err := json.Unmarshal([]byte(res.Stdout), &diags); err != nil {
			t.Fatalf("%v:\n%s", err, res.Stderr)
		}
		causes := map[string]string{}
		for _, d := range diags {
			if d.OK() {
				t.Errorf("%s is ok but listed as failing", d.Target)
			}
			key := d.Namespace + "/" + d.Service
			if d.Hostname != "" {
				key = d.Hostname
			}
			causes[key] = d.Cause
		}
		for _, tc := range diagnoseCases(s) {
			if tc.object != "" {
				continue // the hostname has several chains
			}
			if got := causes[tc.target]; tc.cause != diagnosis.CauseOK && got != tc.cause {
				t.Errorf("%s: cause %q among the failing targets, want %s (all: %v)", tc.target, got, tc.cause, causes)
			}
		}
		if res.Code != 1 {
			t.Errorf("exit %d, want 1", res.Code)
		}
	})
	t.Run("unknown target", func(t *testing.T) {
		res := run(t, "apps/nothing-here")
		if res.Code != 2 || !strings.Contains(res.Stderr, "unknown target apps/nothing-here") {
			t.Errorf("exit %d, stderr %q; want 2 and the target named", res.Code, res.Stderr)
		}
	})
	t.Run("API server unreachable", func(t *testing.T) {
		kc := filepath.Join(t.TempDir(), "kubeconfig")
		if err := os.WriteFile(kc, []byte(unreachableKubeconfig), 0o600); err != nil {
			t.Fatal(err)
		}
		res := lbprobebin.Run(t, lbprobebin.StartOptions{Args: []string{"diagnose", "--kubeconfig=" + kc, "network/k8s-gateway"}}, time.Minute)
		if res.Code != 2 || !strings.Contains(res.Stderr, "127.0.0.1:1") {
			t.Errorf("exit %d, stderr %q; want 2 and the server named", res.Code, res.Stderr)
		}
	})
}

// unreachableKubeconfig points at a closed loopback port.
const unreachableKubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`

// testDiagnosisSeries checks the verdicts in /metrics. The sandbox's lbprobe
// runs as on k8s-nuc, whose interfaces are this host's: when the seed's
// policy (^enp.*) matches none of them, that is every announced Service's
// first failure.
func testDiagnosisSeries(t *testing.T, s *sandbox.Sandbox) {
	metrics := scrape(t, s)
	mismatch := hasLine(metrics, `loadbalancer_l2_policy_interfaces_matched{interfaces="",node="`+seed.NodeNames[0]+`",policy="l2-policy"} 0`)
	t.Logf("the seed's policy matches none of this host's interfaces: %v", mismatch)
	for _, tc := range diagnoseCases(s) {
		cause := tc.cause
		if mismatch && tc.ip != "" {
			// Every case with an IP gets past the policy's interfaces.
			cause = diagnosis.CausePolicyInterfaceMismatch
		}
		var line string
		switch {
		case strings.Contains(tc.target, "/") && tc.ip == "" && tc.cause != diagnosis.CauseIPPending:
			continue // a Service whose IP the case does not name
		case strings.Contains(tc.target, "/"):
			ns, name, _ := strings.Cut(tc.target, "/")
			line = fmt.Sprintf(`loadbalancer_diagnosis_info{cause="%s",ip="%s",namespace="%s",service="%s"} 1`, cause, tc.ip, ns, name)
		default:
			line = fmt.Sprintf(`gateway_hostname_diagnosis_info{cause="%s",hostname="%s"} 1`, cause, tc.target)
		}
		if !hasLine(metrics, line) {
			var got []string
			for l := range strings.Lines(metrics) {
				if strings.Contains(l, "_diagnosis_info{") {
					got = append(got, strings.TrimSuffix(l, "\n"))
				}
			}
			t.Errorf("lbprobe's metrics lack\n  %s\nthe diagnosis series:\n  %s", line, strings.Join(got, "\n  "))
		}
	}
}

// testMoreCauses breaks the sandbox's cluster further, through the real API
// server and the real k8s_gateway, and checks each verdict through the CLI.
func testMoreCauses(t *testing.T, s *sandbox.Sandbox) {
	ctx := t.Context()
	at := func(last byte) netip.Addr {
		b := s.Addrs.External.As4()
		b[3] = last
		return netip.AddrFrom4(b)
	}
	now := time.Now()
	port := func(p int32) []corev1.ServicePort {
		return []corev1.ServicePort{{Name: "http", Port: p, Protocol: corev1.ProtocolTCP}}
	}
	cl := s.Seed
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// apps/unheld: an IP, a policy, no lease.
	must(cl.Service(ctx, seed.AppsNS, "unheld", nil, nil, port(8087)))
	must(cl.SetServiceIP(ctx, seed.AppsNS, "unheld", at(87)))
	// apps/retired: a live lease held by a node that is gone.
	must(cl.Service(ctx, seed.AppsNS, "retired", nil, nil, port(8088)))
	must(cl.SetServiceIP(ctx, seed.AppsNS, "retired", at(88)))
	must(cl.Lease(ctx, seed.AppsNS, "retired", "k8s-retired", now.Add(-time.Hour), now, 15, 1))
	// apps/closed: announced and backed, but nothing listens on its port.
	must(cl.Service(ctx, seed.AppsNS, "closed", nil, nil, port(8089)))
	must(cl.SetServiceIP(ctx, seed.AppsNS, "closed", at(89)))
	must(cl.Lease(ctx, seed.AppsNS, "closed", seed.NodeNames[0], now.Add(-time.Hour), now, 15, 1))
	must(cl.EndpointSlice(ctx, seed.AppsNS, "closed", true))
	// apps/moved: asks for .91, got .90.
	must(cl.Service(ctx, seed.AppsNS, "moved", nil, map[string]string{"lbipam.cilium.io/ips": at(91).String()}, port(8090)))
	must(cl.SetServiceIP(ctx, seed.AppsNS, "moved", at(90)))
	// A route on the Gateway staging, which is not programmed.
	staging := seed.ParentRef{Namespace: seed.GatewayNS, Name: "staging"}
	must(cl.HTTPRoute(ctx, seed.AppsNS, "staging-app", []string{"staging." + seed.Domain}, []seed.ParentRef{staging}, "public-app"))
	must(cl.SetRouteStatus(ctx, seed.AppsNS, "staging-app", seed.RouteParentStatus{ParentRef: staging, Accepted: "Accepted", ResolvedRefs: "ResolvedRefs"}))

	// A name k8s_gateway does not know, asked of it as a static hostname.
	dns := netip.AddrPortFrom(s.Addrs.DNS, uint16(s.Ports.DNS))
	config := filepath.Join(t.TempDir(), "lbprobe.yml")
	must(os.WriteFile(config, []byte(fmt.Sprintf(`dns:
  domain: %s
  servers: [%q]
kubernetes:
  tls:
    ca_file: %s
static:
  hostnames:
    - {hostname: nowhere.%s, expect: [%s]}
`, seed.Domain, dns.String(), s.CAFile, seed.Domain, s.Addrs.External)), 0o644))
	flags := []string{"diagnose", "--output=json", "--config.file=" + config, "--kubeconfig=" + s.Cluster.KubeconfigPath(), "--cilium.namespace=" + seed.CiliumNamespace}

	for _, tc := range []struct {
		target, cause string
		fix           []string
	}{
		{"apps/unheld", diagnosis.CauseNotAnnounced, []string{"no node holds the lease of apps/unheld"}},
		{"apps/retired", diagnosis.CauseHolderNotReady, []string{"k8s-retired, which is NotReady", "delete lease " + seed.LeaseName(seed.AppsNS, "retired")}},
		{"apps/closed", diagnosis.CausePortRefused, []string{"8089/TCP refused of " + at(89).String()}},
		{"apps/moved", diagnosis.CauseIPNotRequestedOne, []string{"has " + at(90).String() + " but asks for " + at(91).String()}},
		{"staging." + seed.Domain, diagnosis.CauseGatewayNotProgrammed, []string{"Gateway gateway/staging is not programmed"}},
		{"nowhere." + seed.Domain, diagnosis.CauseDNSNXDomain, []string{dns.String() + " does not know nowhere." + seed.Domain}},
	} {
		t.Run(tc.target, func(t *testing.T) {
			var last lbprobebin.Result
			err := poll.Until(ctx, 15*time.Second, 300*time.Millisecond, func() error {
				last = lbprobebin.Run(t, lbprobebin.StartOptions{Args: append(slices.Clone(flags), tc.target)}, time.Minute)
				var diags []diagnosis.Diagnosis
				if err := json.Unmarshal([]byte(last.Stdout), &diags); err != nil || len(diags) == 0 {
					return fmt.Errorf("exit %d, no diagnoses (%v): %s", last.Code, err, last.Stderr)
				}
				for _, d := range diags {
					if d.Cause != tc.cause {
						return fmt.Errorf("%s: cause %s, want %s; steps %+v", d.Target, d.Cause, tc.cause, d.Steps)
					}
					for _, want := range tc.fix {
						if !strings.Contains(d.Fix, want) {
							return fmt.Errorf("%s: fix %q lacks %q", d.Target, d.Fix, want)
						}
					}
				}
				if last.Code != 1 {
					return fmt.Errorf("exit %d, want 1", last.Code)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
