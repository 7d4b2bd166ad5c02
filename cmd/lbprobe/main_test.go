package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lbprobe/lbprobe/test/lbprobebin"
	"github.com/lbprobe/lbprobe/test/poll"
	"github.com/lbprobe/lbprobe/test/targets"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// lbprobe is a running lbprobe process.
type lbprobe struct {
	*lbprobebin.Process
	url string
}

// start runs lbprobe with args and waits until it listens and is ready.
func start(t *testing.T, args ...string) *lbprobe {
	t.Helper()
	args = append([]string{"--web.listen-address=127.0.0.1:0", "--log.level=debug", "--kube.enabled=false"}, args...)
	p := &lbprobe{Process: lbprobebin.Start(t, lbprobebin.StartOptions{Args: args})}
	addr, err := p.ListenAddress(t.Context(), 10*time.Second)
	if err != nil {
		t.Fatalf("lbprobe did not log its address: %v; log:\n%s", err, p.Logs())
	}
	p.url = "http://" + addr
	if err := p.WaitReady(t.Context(), http.DefaultClient, p.url+"/-/ready", 5*time.Second); err != nil {
		t.Fatalf("lbprobe not ready: %v", err)
	}
	return p
}

// get fetches path with an optional scrape timeout header.
func (p *lbprobe) get(t *testing.T, path string, scrapeTimeout string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, p.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if scrapeTimeout != "" {
		req.Header.Set(scrapeTimeoutHeader, scrapeTimeout)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func (p *lbprobe) post(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Post(p.url+path, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// peers are the real loopback peers of the end-to-end tests.
type peers struct {
	open, closed, dns, silent netip.AddrPort
	records                   *targets.Records
}

func startPeers(t *testing.T) peers {
	t.Helper()
	ctx := t.Context()
	var p peers
	var err error
	if p.open, err = targets.TCP(ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if p.closed, err = targets.ClosedTCP(ctx, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	p.records = targets.NewRecords(map[string][]string{
		"app.example.test":   {"127.0.0.2"},
		"wrong.example.test": {"127.0.0.9"},
	})
	if p.dns, err = targets.DNS(ctx, "127.0.0.1:0", p.records); err != nil {
		t.Fatal(err)
	}
	if p.silent, err = targets.SilentUDP(ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeConfig(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func (p peers) config() string {
	return fmt.Sprintf(`
probe:
  timeout: 2s
dns:
  servers: ["%s"]
static:
  loadbalancers:
    - namespace: lab
      service: web
      ips: [127.0.0.1]
      ports: [{port: %d, protocol: TCP}, {port: %d, protocol: TCP}]
    - namespace: lab
      service: dns
      ips: [127.0.0.1]
      ports: [{port: %d, protocol: UDP}]
    - namespace: lab
      service: down
      ips: [127.0.0.1]
      ports: [{port: %d, protocol: TCP}]
  hostnames:
    - hostname: app.example.test
      expect: [127.0.0.2]
    - hostname: wrong.example.test
      expect: [127.0.0.2]
    - hostname: gone.example.test
      expect: [127.0.0.2]
`, p.dns, p.open.Port(), p.closed.Port(), p.dns.Port(), p.closed.Port())
}

// stableSeries keeps the series whose values do not depend on timing, and
// replaces the peers' dynamic ports by names, so the result can be compared
// with a golden file.
func (p peers) stableSeries(body string) string {
	keep := regexp.MustCompile(`^(loadbalancer_(reachable|port_reachable|probe_failure_info)|gateway_dns_answer_(correct|result|info)|lbprobe_targets|lbprobe_config_last_reload_successful|lbprobe_build_info)\b`)
	replacer := strings.NewReplacer(
		p.dns.String(), "DNS_SERVER",
		fmt.Sprintf(`port="%d"`, p.open.Port()), `port="OPEN"`,
		fmt.Sprintf(`port="%d"`, p.closed.Port()), `port="CLOSED"`,
		fmt.Sprintf(`port="%d"`, p.dns.Port()), `port="DNS"`,
	)
	var lines []string
	for _, line := range strings.Split(body, "\n") {
		if keep.MatchString(line) {
			if strings.HasPrefix(line, "lbprobe_build_info") {
				line = "lbprobe_build_info 1" // labels vary with the build
			}
			lines = append(lines, replacer.Replace(line))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

func TestEndToEndMetricsGolden(t *testing.T) {
	peers := startPeers(t)
	cfg := writeConfig(t, t.TempDir(), "lbprobe.yml", peers.config())
	p := start(t, "--config.file="+cfg)

	code, body := p.get(t, "/metrics", "5")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	got := peers.stableSeries(body)
	golden := filepath.Join("testdata", "metrics.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("series differ from %s (run go test -update to accept):\n--- got\n%s--- want\n%s", golden, got, want)
	}

	// The whole exposition passes promtool's lint.
	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		t.Log("PROMTOOL not set: skipping promtool check metrics (make test sets it)")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestEndToEndScrapeDeadline(t *testing.T) {
	peers := startPeers(t)
	cfg := writeConfig(t, t.TempDir(), "lbprobe.yml", fmt.Sprintf(`
probe: {timeout: 30s}
dns: {servers: ["%s"]}
static:
  hostnames:
    - {hostname: app.example.test, expect: [127.0.0.2]}
`, peers.silent))
	p := start(t, "--config.file="+cfg)
	began := time.Now()
	code, body := p.get(t, "/metrics", "1")
	elapsed := time.Since(began)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	if elapsed >= time.Second {
		t.Errorf("scrape with a 1s timeout header took %v", elapsed)
	}
	if !strings.Contains(body, `result="timeout"`) {
		t.Errorf("no timeout result in:\n%s", body)
	}
	if !strings.Contains(body, "lbprobe_probe_timeout_seconds 0.5\n") {
		t.Errorf("lbprobe_probe_timeout_seconds is not 1s - 0.5s offset:\n%s", grepLines(body, "lbprobe_probe_timeout_seconds"))
	}

	// A header that is not a number is a clear 400 naming the header.
	code, body = p.get(t, "/metrics", "soon")
	if code != http.StatusBadRequest || !strings.Contains(body, scrapeTimeoutHeader) {
		t.Errorf("bad header: %d %q", code, body)
	}
}

// With one probe slot and three probes that hang, one times out and two
// never start: reported as not_started, and the landing page says so.
func TestEndToEndNotStarted(t *testing.T) {
	peers := startPeers(t)
	cfg := writeConfig(t, t.TempDir(), "lbprobe.yml", fmt.Sprintf(`
probe: {timeout: 30s}
dns: {servers: ["%s"]}
static:
  hostnames:
    - {hostname: a.example.test, expect: [127.0.0.2]}
    - {hostname: b.example.test, expect: [127.0.0.2]}
    - {hostname: c.example.test, expect: [127.0.0.2]}
`, peers.silent))
	// Rounds of 0.5 s (the scrape timeout minus the 0.5 s offset): shorter
	// than the DNS exchange's own read timeout, so the probe that has the
	// slot is always cut off by the deadline, never done before it.
	p := start(t, "--config.file="+cfg, "--probe.concurrency=1", "--probe.default-scrape-timeout=1s")
	code, body := p.get(t, "/metrics", "1")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	for _, h := range []string{"a", "b", "c"} {
		result := "not_started"
		if h == "a" {
			result = "timeout" // the one that had the slot
		}
		want := fmt.Sprintf(`gateway_dns_answer_result{hostname="%s.example.test",name="",namespace="",result="%s"`, h, result)
		if !strings.Contains(body, want) {
			t.Errorf("no %s in:\n%s", want, grepLines(body, "gateway_dns_answer_result"))
		}
	}
	// The counters count the rounds that finished: the first one, by now.
	_, body = p.get(t, "/metrics", "1")
	counted := regexp.MustCompile(`lbprobe_probes_total\{kind="dns",result="(timeout|not_started)"\} (\d+)`).FindAllStringSubmatch(body, -1)
	got := map[string]int{}
	for _, m := range counted {
		got[m[1]], _ = strconv.Atoi(m[2])
	}
	if got["timeout"] < 1 || got["not_started"] != 2*got["timeout"] {
		t.Errorf("lbprobe_probes_total for dns: %v, want timeouts and twice as many not_started:\n%s", got, grepLines(body, "lbprobe_probes_total"))
	}
	code, page := p.get(t, "/", "")
	if code != http.StatusOK || !strings.Contains(page, "2 probes did not start</strong>") {
		t.Errorf("landing page (%d) lacks the not-started notice:\n%s", code, page)
	}
}

func TestEndToEndReload(t *testing.T) {
	peers := startPeers(t)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "lbprobe.yml", peers.config())
	p := start(t, "--config.file="+cfg)

	// A bad file is rejected with its reason; the old config keeps serving.
	writeConfig(t, dir, "lbprobe.yml", "static:\n  loadbalancers:\n    - namespace: lab\n      servce: web\n")
	code, body := p.post(t, "/-/reload")
	if code != http.StatusBadRequest || !strings.Contains(body, "servce") {
		t.Errorf("reload of a bad file: %d %q, want 400 naming the key", code, body)
	}
	_, metrics := p.get(t, "/metrics", "5")
	if !strings.Contains(metrics, "lbprobe_config_last_reload_successful 0") {
		t.Errorf("reload failure not reported:\n%s", grepLines(metrics, "lbprobe_config"))
	}
	if !strings.Contains(metrics, `loadbalancer_reachable{ip="127.0.0.1",namespace="lab",service="web"} 1`) {
		t.Errorf("old config no longer served:\n%s", grepLines(metrics, "loadbalancer_reachable"))
	}

	// SIGHUP with a good file applies it.
	writeConfig(t, dir, "lbprobe.yml", fmt.Sprintf(`
static:
  loadbalancers:
    - {namespace: lab, service: only, ips: [127.0.0.1], ports: [{port: %d}]}
`, peers.open.Port()))
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	err := poll.Until(t.Context(), 10*time.Second, 50*time.Millisecond, func() error {
		_, metrics = p.get(t, "/metrics", "5")
		if strings.Contains(metrics, "lbprobe_config_last_reload_successful 1") && strings.Contains(metrics, `service="only"`) {
			return nil
		}
		return fmt.Errorf("not applied:\n%s", grepLines(metrics, "lbprobe_config|loadbalancer_reachable"))
	})
	if err != nil {
		t.Fatalf("SIGHUP reload: %v", err)
	}
	if strings.Contains(metrics, `service="web"`) {
		t.Errorf("a target of the old config is still exposed:\n%s", grepLines(metrics, "loadbalancer_reachable"))
	}
}

func TestEndToEndProbeEndpointAndLanding(t *testing.T) {
	peers := startPeers(t)
	cfg := writeConfig(t, t.TempDir(), "lbprobe.yml", peers.config())
	p := start(t, "--config.file="+cfg)

	tests := []struct {
		name     string
		path     string
		wantCode int
		want     []string
	}{
		{"unknown target is refused", "/probe?target=192.0.2.1", http.StatusNotFound, []string{"not a load balancer IP or hostname that lbprobe knows"}},
		{"missing target", "/probe", http.StatusBadRequest, []string{`missing query parameter "target"`}},
		{"bad debug", "/probe?target=127.0.0.1&debug=maybe", http.StatusBadRequest, []string{`"debug"`}},
		{"known IP, debug", "/probe?target=127.0.0.1&debug=true", http.StatusOK, []string{
			"Logs for the probe of 127.0.0.1", "probe succeeded", "reason=refused",
			`loadbalancer_reachable{ip="127.0.0.1",namespace="lab",service="web"} 1`,
		}},
		{"known hostname", "/probe?target=wrong.example.test", http.StatusOK, []string{
			`gateway_dns_answer_result{hostname="wrong.example.test",name="",namespace="",result="wrong_address"`,
		}},
		{"landing page", "/", http.StatusOK, []string{"<h1>lbprobe</h1>", "lab/down", "wrong_address", "FAIL", "/probe?target=127.0.0.1&amp;debug=true"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := p.get(t, tc.path, "")
			if code != tc.wantCode {
				t.Errorf("GET %s: %d, want %d\n%s", tc.path, code, tc.wantCode, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("GET %s: body lacks %q:\n%s", tc.path, w, body)
				}
			}
		})
	}

	// Failures are listed before successes on the landing page.
	_, body := p.get(t, "/", "")
	if fail, ok := strings.Index(body, ">FAIL<"), strings.Index(body, ">OK<"); fail < 0 || ok < 0 || fail > ok {
		t.Errorf("landing page does not list failures first (FAIL at %d, OK at %d)", fail, ok)
	}
}

func TestConfigCheck(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "config", "testdata", "invalid-*.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no invalid config fixtures: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			wantErr, err := os.ReadFile(file + ".err")
			if err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(lbprobebin.Path(t), "--config.check", "--config.file="+file)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err = cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != 1 {
				t.Errorf("exit code %d (err %v), want 1", code, err)
			}
			if want := strings.TrimSpace(string(wantErr)); !strings.Contains(stderr.String(), want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
			}
		})
	}
	t.Run("valid example", func(t *testing.T) {
		out, err := exec.Command(lbprobebin.Path(t), "--config.check", "--config.file="+filepath.Join("..", "..", "examples", "static.yml")).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "valid") {
			t.Errorf("examples/static.yml: %v\n%s", err, out)
		}
	})
}

func grepLines(body, pattern string) string {
	re := regexp.MustCompile(pattern)
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if re.MatchString(l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
