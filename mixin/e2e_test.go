package mixin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/lbprobe/lbprobe/test/kubecluster"
	"github.com/lbprobe/lbprobe/test/lab"
	"github.com/lbprobe/lbprobe/test/lbprobebin"
	"github.com/lbprobe/lbprobe/test/needroot"
	"github.com/lbprobe/lbprobe/test/poll"
	"github.com/lbprobe/lbprobe/test/sandbox"
	"github.com/lbprobe/lbprobe/test/seed"
)

// get fetches url and returns its body; a status other than 200 is an error.
func get(ctx context.Context, client *http.Client, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", u, resp.Status, b)
	}
	return string(b), nil
}

// startSandbox starts the sandbox (test/sandbox: a real API server seeded like the reference
// cluster on loopback, k8s_gateway, listeners) with lbprobe checking routes too, and ICMP on
// apps/legacy, so that every family of series it can show is there.
func startSandbox(t *testing.T) *sandbox.Sandbox {
	t.Helper()
	ctx := t.Context()
	sb, err := sandbox.Start(ctx, sandbox.Options{
		LBProbe:   lbprobebin.Path(t),
		ExtraArgs: []string{"--probe.route.check", "--probe.timeout=1500ms"},
		Logf:      t.Logf,
		// 127.14.80.x: apart from the other packages' sandboxes, which may run at the same time.
		Loopback: 14,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("lbprobe log:\n%s", sb.Logs())
		}
		sb.Stop()
	})
	if err := sb.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		svcs := sb.Seed.Core.CoreV1().Services(seed.AppsNS)
		patch := []byte(`{"metadata":{"annotations":{"lbprobe.io/icmp":"true"}}}`)
		if _, err := svcs.Patch(ctx, "legacy", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return sb
}

// scrapeUntilICMP scrapes lbprobe at base until a scrape shows what the ICMP annotation
// startSandbox sets as root added (a loadbalancer_icmp_ series), for up to 10 s, and returns
// that scrape; without root, where nothing is annotated, the first scrape.
func scrapeUntilICMP(t *testing.T, base string) string {
	t.Helper()
	var body string
	err := poll.Until(t.Context(), 10*time.Second, 200*time.Millisecond, func() error {
		var err error
		body, err = get(t.Context(), http.DefaultClient, base+"/metrics")
		switch {
		case err != nil:
			return err
		case os.Geteuid() == 0 && !strings.Contains(body, "\nloadbalancer_icmp_"):
			return errors.New("no loadbalancer_icmp_ series yet (apps/legacy has the ICMP annotation)")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// scrapeUntil scrapes base's /metrics until the exposition has want, for up to 30s.
func scrapeUntil(t *testing.T, base, want string) string {
	t.Helper()
	var body string
	err := poll.Until(t.Context(), 30*time.Second, 250*time.Millisecond, func() error {
		var err error
		if body, err = get(t.Context(), http.DefaultClient, base+"/metrics"); err != nil {
			return err
		}
		if !strings.Contains(body, want) {
			return fmt.Errorf("no %s yet", want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// labScrape runs lbprobe in the router of the netns LAN lab (test/lab) over the seeded reference
// cluster and returns a scrape: the ARP series exist only there. Every ARP outcome shows: nuc
// answers for its VIPs (responders), opti1 stops answering (a failure), and --node.name names
// opti2, the holder of network/k8s-gateway, as the DaemonSet pod on that node would (skipped).
// ICMP to k8s-gateway's IP, which nobody answers, fails. It skips without root.
func labScrape(t *testing.T) string {
	t.Helper()
	needroot.Root(t, "the ARP series need the netns lab")
	dirs, err := kubecluster.CRDDirs()
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubecluster.Start(t.Context(), kubecluster.Options{CRDDirs: dirs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	sc, err := seed.New(c.RESTConfig(), seed.Reference())
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Seed(t.Context(), seed.ReferencePorts()); err != nil {
		t.Fatal(err)
	}
	patch := []byte(`{"metadata":{"annotations":{"lbprobe.io/icmp":"true"}}}`)
	if _, err := sc.Core.CoreV1().Services(seed.NetworkNS).Patch(t.Context(), "k8s-gateway", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	// Dual stack: the external Gateway's Service gets an IPv6 IP too, which the lab announces
	// by NDP.
	svc, err := sc.Core.CoreV1().Services(seed.GatewayNS).Get(t.Context(), "cilium-gateway-external", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: lab.IPv6Of(sc.Addrs.External).String()})
	if _, err := sc.Core.CoreV1().Services(seed.GatewayNS).UpdateStatus(t.Context(), svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	l := lab.Start(t, lab.Options{RESTConfig: c.RESTConfig()})
	l.Node(seed.NodeNames[1]).SetARP(false)
	lbp := l.StartLBProbe(t, l.Router, "--probe.timeout=2s", "--probe.route.check", "--node.name="+seed.NodeNames[2])
	body, err := lbp.Scrape(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"loadbalancer_arp_responder_info{", "loadbalancer_arp_failure_info{", "loadbalancer_arp_skipped{", "loadbalancer_icmp_failure_info{", "loadbalancer_ndp_answered{"} {
		if !strings.Contains(body, want) {
			t.Errorf("the lab's scrape has no %s...}", want)
		}
	}
	return body
}

// prometheus is a real Prometheus server (built from the Go module proxy by hack/tool.sh).
type prometheus struct {
	url    string
	client *http.Client
}

// freePort returns a loopback address with a port nothing listens on.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startPrometheus runs Prometheus scraping target every second with the rules file loaded.
func startPrometheus(t *testing.T, target, rules string) *prometheus {
	t.Helper()
	dir := t.TempDir()
	config := fmt.Sprintf(`global:
  scrape_interval: 2s
  scrape_timeout: 2s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: lbprobe
    static_configs:
      - targets: [%q]
`, rules, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := freePort(t)
	cmd := exec.Command(tool(t, "prometheus"),
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen,
		"--log.level=warn")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs.String())
		}
	})
	p := &prometheus{url: "http://" + listen, client: &http.Client{Timeout: 5 * time.Second}}
	err := poll.Until(t.Context(), 30*time.Second, 200*time.Millisecond, func() error {
		_, err := get(t.Context(), p.client, p.url+"/-/ready")
		return err
	})
	if err != nil {
		t.Fatalf("prometheus not ready: %v", err)
	}
	return p
}

// alert is one entry of /api/v1/alerts.
type alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
}

func (p *prometheus) alerts(ctx context.Context) ([]alert, error) {
	body, err := get(ctx, p.client, p.url+"/api/v1/alerts")
	if err != nil {
		return nil, err
	}
	var resp struct {
		Status string `json:"status"`
		Data   struct {
			Alerts []alert `json:"alerts"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		return nil, fmt.Errorf("decode alerts: %w", err)
	}
	return resp.Data.Alerts, nil
}

// queryError runs an instant query and returns Prometheus' error for it, if any, and how many
// series it returned.
func (p *prometheus) queryError(ctx context.Context, q string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/api/v1/query?query="+url.QueryEscape(q), nil)
	if err != nil {
		return 0, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, fmt.Errorf("decode: %w", err)
	}
	if body.Status != "success" {
		return 0, fmt.Errorf("%s: %s", resp.Status, body.Error)
	}
	return len(body.Data.Result), nil
}

// query returns the number of series an instant query returns.
func (p *prometheus) query(ctx context.Context, q string) (int, error) {
	body, err := get(ctx, p.client, p.url+"/api/v1/query?query="+url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	var resp struct {
		Data struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		return 0, err
	}
	return len(resp.Data.Result), nil
}

// find returns the alert named name whose labels include match.
func find(alerts []alert, name string, match map[string]string) (alert, bool) {
next:
	for _, a := range alerts {
		if a.Labels["alertname"] != name {
			continue
		}
		for k, v := range match {
			if a.Labels[k] != v {
				continue next
			}
		}
		return a, true
	}
	return alert{}, false
}

// waitState waits until the alert is in state ("pending", "firing", or "" for gone).
func (p *prometheus) waitState(t *testing.T, name string, match map[string]string, state string, timeout time.Duration) alert {
	t.Helper()
	var found alert
	err := poll.Until(t.Context(), timeout, 250*time.Millisecond, func() error {
		alerts, err := p.alerts(t.Context())
		if err != nil {
			return err
		}
		a, ok := find(alerts, name, match)
		switch {
		case ok && a.State == state, !ok && state == "":
			found = a
			return nil
		case ok:
			return fmt.Errorf("%s, want %q", a.State, state)
		default:
			return fmt.Errorf("absent, want %q", state)
		}
	})
	if err != nil {
		t.Fatalf("%s%v: %v", name, match, err)
	}
	return found
}

// waitPresent waits until the alert is pending or firing.
func (p *prometheus) waitPresent(t *testing.T, name string, match map[string]string, timeout time.Duration) {
	t.Helper()
	err := poll.Until(t.Context(), timeout, 250*time.Millisecond, func() error {
		alerts, err := p.alerts(t.Context())
		if err != nil {
			return err
		}
		if _, ok := find(alerts, name, match); !ok {
			return errors.New("not pending or firing")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s%v: %v", name, match, err)
	}
}

// e2eRules generates the rules and alerts with every `for` set to forDuration.
func e2eRules(t *testing.T, forDuration string) string {
	t.Helper()
	snippet := fmt.Sprintf(`local mixin = (import 'mixin.libsonnet') + {
  _config+:: { 'for': std.mapWithKey(function(_, v) if v == '0m' then v else %q, super['for']) },
};
{ groups: mixin.prometheusRules.groups + mixin.prometheusAlerts.groups }`, forDuration)
	out := run(t, ".", tool(t, "jsonnet"), "-e", snippet)
	path := filepath.Join(t.TempDir(), "rules.json")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSandbox runs the checks that need lbprobe's real series: every expression of the mixin
// against the series of real scrapes, and alerts going pending, firing and resolved in a real
// Prometheus while the sandbox breaks and is repaired.
func TestSandbox(t *testing.T) {
	sb := startSandbox(t)
	lbprobeURL, err := url.Parse(sb.URL)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("expressions name exposed series and labels", func(t *testing.T) {
		inv := inventory{}
		body := scrapeUntilICMP(t, sb.URL)
		if err := inv.addExposition(body); err != nil {
			t.Fatal(err)
		}
		// Lease remediation's series, from its dry-run on the sandbox's orphaned lease.
		if err := inv.addExposition(scrapeUntil(t, sb.URL, "lbprobe_remediation_last_action_timestamp_seconds{")); err != nil {
			t.Fatal(err)
		}
		if err := inv.addExposition(labScrape(t)); err != nil {
			t.Fatal(err)
		}
		checkMixin(t, inv)
	})

	t.Run("alerts fire and resolve in Prometheus", func(t *testing.T) {
		prom := startPrometheus(t, lbprobeURL.Host, e2eRules(t, "4s"))
		ctx := t.Context()
		// The rules have run on scraped data once the sandbox's own breakage shows: apps/legacy
		// (nothing serves it) is unreachable. Only then does "no alert yet" below mean something.
		prom.waitPresent(t, "LoadBalancerUnreachable", map[string]string{"namespace": seed.AppsNS, "service": "legacy"}, 30*time.Second)
		if n, err := prom.query(ctx, `up{job="lbprobe"} == 1`); err != nil || n != 1 {
			t.Fatalf("up{job=\"lbprobe\"} == 1: %d series (%v), want 1", n, err)
		}

		// A listener stops: the one port of the external Gateway (its https listener, as in the
		// seed) refuses connections, so the whole IP is unreachable.
		httpsPort := netip.AddrPortFrom(sb.Addrs.External, uint16(sb.Ports.HTTPS))
		ipAlert := map[string]string{"namespace": seed.GatewayNS, "service": "cilium-gateway-external", "severity": "critical"}
		listenerAlert := map[string]string{"namespace": seed.GatewayNS, "gateway": "external", "listener": "https", "port": fmt.Sprint(sb.Ports.HTTPS), "severity": "critical"}
		prom.waitState(t, "LoadBalancerUnreachable", ipAlert, "", 20*time.Second)
		if err := sb.StopListener(httpsPort); err != nil {
			t.Fatal(err)
		}
		prom.waitState(t, "LoadBalancerUnreachable", ipAlert, "pending", 20*time.Second)
		prom.waitState(t, "GatewayListenerUnreachable", listenerAlert, "pending", 20*time.Second)
		a := prom.waitState(t, "LoadBalancerUnreachable", ipAlert, "firing", 20*time.Second)
		wantDesc := fmt.Sprintf("None of the probed ports of %s (Service gateway/cilium-gateway-external) has answered %s for", sb.Addrs.External, lbprobeURL.Host)
		if d := a.Annotations["description"]; !strings.HasPrefix(d, wantDesc) {
			t.Errorf("description %q, want it to start with %q", d, wantDesc)
		}
		prom.waitState(t, "GatewayListenerUnreachable", listenerAlert, "firing", 20*time.Second)
		if err := sb.StartListener(httpsPort); err != nil {
			t.Fatal(err)
		}
		prom.waitState(t, "LoadBalancerUnreachable", ipAlert, "", 20*time.Second)
		prom.waitState(t, "GatewayListenerUnreachable", listenerAlert, "", 20*time.Second)

		// A lease expires: its holder stops renewing it.
		leaseAlert := map[string]string{"namespace": seed.GatewayNS, "service": "cilium-gateway-internal", "holder": seed.NodeNames[1], "severity": "critical"}
		prom.waitState(t, "LoadBalancerL2LeaseExpired", leaseAlert, "", 20*time.Second)
		sb.SetLeaseRenewal(seed.GatewayNS, "cilium-gateway-internal", false)
		prom.waitState(t, "LoadBalancerL2LeaseExpired", leaseAlert, "pending", 40*time.Second)
		a = prom.waitState(t, "LoadBalancerL2LeaseExpired", leaseAlert, "firing", 20*time.Second)
		if d := a.Annotations["description"]; !strings.HasPrefix(d, "Node "+seed.NodeNames[1]+" holds lease cilium-l2announce-gateway-cilium-gateway-internal") {
			t.Errorf("description %q", d)
		}
		sb.SetLeaseRenewal(seed.GatewayNS, "cilium-gateway-internal", true)
		prom.waitState(t, "LoadBalancerL2LeaseExpired", leaseAlert, "", 20*time.Second)

		// Every dashboard query runs in Prometheus without an error (a join that matches many to
		// many, say, fails only on real data), with the variables set to the sandbox's objects.
		vars := map[string]string{
			"cluster": ".*", "instance": ".*", "hostname": ".*",
			"namespace": seed.GatewayNS, "service": "cilium-gateway-external", "gateway": "external",
		}
		var withData, total int
		for _, e := range dashboardExpressionsWith(t, vars) {
			n, err := prom.queryError(ctx, e.expr)
			if err != nil {
				t.Errorf("%s: %v\n%s", e.where, err, e.expr)
			}
			total++
			if n > 0 {
				withData++
			}
		}
		t.Logf("dashboard queries: %d of %d return series from the sandbox", withData, total)
		if withData < total/2 {
			t.Errorf("only %d of %d dashboard queries return series from the sandbox", withData, total)
		}
	})
}
