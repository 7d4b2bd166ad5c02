package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lbprobe/lbprobe/collector"
	"github.com/lbprobe/lbprobe/probe"
)

// testServer is a server over one static load balancer whose TCP probes
// are counted and succeed at once.
func testServer(t *testing.T) (*server, *atomic.Int64) {
	t.Helper()
	var probes atomic.Int64
	tcp := func(context.Context, netip.AddrPort, *slog.Logger) probe.Result {
		probes.Add(1)
		return probe.Result{Success: true}
	}
	return testServerWith(tcp), &probes
}

// testServerWith is a server over one static load balancer (127.0.0.1:80)
// probed by tcp.
func testServerWith(tcp func(context.Context, netip.AddrPort, *slog.Logger) probe.Result) *server {
	static := &collector.StaticSource{}
	static.Set(collector.Targets{LoadBalancers: []collector.LoadBalancer{{
		Namespace: "lab", Service: "web", IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		Ports: []collector.Port{{Port: 80, Protocol: "TCP", Probe: collector.ProbeTCP}},
	}}})
	engine := collector.NewEngine(collector.Config{Concurrency: 4, Probers: collector.Probers{TCP: tcp}}, static)
	self := newSelfMetrics()
	return &server{
		engine:               engine,
		configs:              newConfigManager("", collector.Options{}, engine, static, self, slog.New(slog.DiscardHandler)),
		self:                 self,
		logger:               slog.New(slog.DiscardHandler),
		timeoutOffset:        500 * time.Millisecond,
		defaultScrapeTimeout: 10 * time.Second,
		debugSlots:           make(chan struct{}, maxDebugRequests),
	}
}

func TestRoundBudgetRejectsNonFinite(t *testing.T) {
	s, _ := testServer(t)
	for _, tt := range []struct {
		header string
		ok     bool
	}{
		{"10", true}, {"0.51", true}, {"3600", true},
		{"NaN", false}, {"nan", false}, {"Inf", false}, {"+Inf", false}, {"-Inf", false}, {"1e400", false},
		{"0", false}, {"-1", false}, {"3601", false}, {"ten", false},
		{"0.001", true}, {"1e-300", false}, {"0.0009", false},
	} {
		t.Run(tt.header, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			r.Header.Set(scrapeTimeoutHeader, tt.header)
			budget, err := s.roundBudget(r)
			if tt.ok != (err == nil) {
				t.Fatalf("roundBudget(%q) = %v, %v; want ok %v", tt.header, budget, err, tt.ok)
			}
			if tt.ok && (budget <= 0 || budget > time.Hour) {
				t.Errorf("budget %v out of bounds", budget)
			}
			// Through the handler: 400, and no probe ran.
			w := httptest.NewRecorder()
			s.routes().ServeHTTP(w, r)
			if !tt.ok && w.Code != http.StatusBadRequest {
				t.Errorf("GET /metrics with %q: %d, want 400", tt.header, w.Code)
			}
		})
	}
}

// HEAD answers with the headers of a GET and runs nothing.
func TestHeadRunsNoRound(t *testing.T) {
	s, probes := testServer(t)
	h := s.routes()
	for _, path := range []string{"/metrics", "/probe?target=127.0.0.1", "/"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodHead, path, nil))
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") == "" {
			t.Errorf("HEAD %s: %d, Content-Type %q", path, w.Code, w.Header().Get("Content-Type"))
		}
	}
	if n := probes.Load(); n != 0 || s.engine.Rounds() != 0 {
		t.Errorf("HEAD requests ran %d probes in %d rounds, want none", n, s.engine.Rounds())
	}
	// The GET does probe.
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if w.Code != http.StatusOK || probes.Load() != 1 {
		t.Errorf("GET /metrics: %d after %d probes, want 200 after 1", w.Code, probes.Load())
	}
}

func TestNoSniff(t *testing.T) {
	s, _ := testServer(t)
	h := s.routes()
	for _, path := range []string{"/probe?target=127.0.0.1&debug=true", "/metrics", "/-/healthy", "/probe?target=nope"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		if got := w.Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q, want nosniff", path, got)
		}
	}
}

// The health handler serves the two health endpoints and nothing else.
func TestHealthHandler(t *testing.T) {
	s, _ := testServer(t)
	if err := s.configs.Reload(); err != nil {
		t.Fatal(err)
	}
	h := s.healthHandler()
	for path, want := range map[string]int{"/-/healthy": 200, "/-/ready": 200, "/metrics": 404, "/probe?target=127.0.0.1": 404, "/": 404} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		if w.Code != want {
			t.Errorf("GET %s on the health listener: %d, want %d", path, w.Code, want)
		}
	}
}

// Idle keep-alive connections cannot keep a scrape out: over the cap, the
// oldest idle ones are closed (issue 14: 246 idle connections under a 256
// file-descriptor limit made /metrics fail for minutes).
func TestIdleConnectionsCannotKeepScrapesOut(t *testing.T) {
	const maxConns = 8
	s, _ := testServer(t)
	guard := newConnGuard(maxConns, slog.New(slog.DiscardHandler))
	srv := httptest.NewUnstartedServer(s.routes())
	srv.Config.ConnState = guard.track
	srv.Start()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()

	// 3×maxConns clients each send a request, read the answer and stay
	// connected, idle.
	var idle []net.Conn
	for range 3 * maxConns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		idle = append(idle, c)
	}
	// A scrape on a new connection gets its answer.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := client.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatalf("scrape with %d idle connections open: %v", len(idle), err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "loadbalancer_reachable") {
		t.Errorf("scrape: %d\n%s", resp.StatusCode, body)
	}
	// The guard closed idle connections rather than let them pile up: at
	// most maxConns are open (the closed ones report EOF on read).
	open := 0
	for _, c := range idle {
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && !isEOF(err) {
			open++ // a timeout: still open
		}
	}
	if open > maxConns {
		t.Errorf("%d idle connections still open, want at most %d", open, maxConns)
	}
}

func isEOF(err error) bool {
	return err == io.EOF || strings.Contains(err.Error(), "connection reset")
}

// Past maxDebugRequests /probe requests in flight, the next gets 429 at
// once, and /metrics still probes.
func TestProbeRequestsBounded(t *testing.T) {
	gate := make(chan struct{})
	var started atomic.Int64
	tcp := func(ctx context.Context, _ netip.AddrPort, _ *slog.Logger) probe.Result {
		started.Add(1)
		select {
		case <-gate:
			return probe.Result{Success: true}
		case <-ctx.Done():
			return probe.Result{Reason: probe.ReasonTimeout, Err: ctx.Err()}
		}
	}
	s := testServerWith(tcp)
	h := s.routes()
	done := make(chan int, maxDebugRequests)
	for range maxDebugRequests {
		go func() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/probe?target=127.0.0.1", nil))
			done <- w.Code
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for started.Load() < maxDebugRequests && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/probe?target=127.0.0.1", nil))
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Errorf("/probe past the bound: %d (Retry-After %q), want 429 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
	close(gate)
	for range maxDebugRequests {
		if code := <-done; code != http.StatusOK {
			t.Errorf("/probe within the bound: %d, want 200", code)
		}
	}
	// The slots are free again.
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/probe?target=127.0.0.1", nil))
	if w.Code != http.StatusOK {
		t.Errorf("/probe after the others ended: %d, want 200", w.Code)
	}
}
