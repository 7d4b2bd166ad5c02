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
	"github.com/lbprobe/lbprobe/test/sandbox"
	"github.com/lbprobe/lbprobe/test/seed"
)

// scrape fetches lbprobe's /metrics, which runs a probe round.
func scrape(t *testing.T, s *sandbox.Sandbox) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape lbprobe: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape lbprobe: %s %v", resp.Status, err)
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

// waitForLine scrapes until a scrape has line, for up to 10s.
func waitForLine(t *testing.T, s *sandbox.Sandbox, line string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		metrics := scrape(t, s)
		if hasLine(metrics, line) {
			return
		}
		if time.Now().After(deadline) {
			var got []string
			for l := range strings.Lines(metrics) {
				if strings.HasPrefix(l, "loadbalancer_port_reachable") {
					got = append(got, strings.TrimSuffix(l, "\n"))
				}
			}
			t.Fatalf("after 10s lbprobe's metrics still lack\n  %s\nloadbalancer_port_reachable:\n  %s", line, strings.Join(got, "\n  "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestListenerOutage starts the sandbox and stops and restarts the external
// Gateway's HTTP listener: lbprobe's port series follows.
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

	ap := netip.AddrPortFrom(s.Addrs.External, uint16(s.Ports.HTTP))
	series := fmt.Sprintf(`loadbalancer_port_reachable{ip="%s",namespace="%s",port="%d",protocol="TCP",service="cilium-gateway-external"}`,
		s.Addrs.External, seed.GatewayNS, s.Ports.HTTP)
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
