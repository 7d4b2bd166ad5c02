package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lbprobe/lbprobe/test/lbprobebin"
	"github.com/lbprobe/lbprobe/test/netlab"
)

// lbprobeListen is where lbprobe listens: loopback of the namespace it
// runs in.
const lbprobeListen = "127.0.0.1:9884"

// LBProbe is the real lbprobe binary running inside a lab namespace, with
// the lab's API server as its Kubernetes API server.
type LBProbe struct {
	NS     *netlab.Namespace
	client *http.Client
	logs   *syncBuffer
}

// StartLBProbe runs lbprobe inside ns (usually l.Router) with a kubeconfig
// for the lab's API server, ARP checks on eth0 and args appended, and waits
// until it is ready (its Kubernetes caches synced). It is killed when t
// ends; its log is written to t on failure.
func (l *Lab) StartLBProbe(t testing.TB, ns *netlab.Namespace, args ...string) *LBProbe {
	t.Helper()
	bin := lbprobebin.Path(t)
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := l.WriteKubeconfig(kc); err != nil {
		t.Fatal(err)
	}
	full := append([]string{"netns", "exec", ns.Name, bin,
		"--kube.enabled=true", "--kubeconfig=" + kc,
		"--probe.arp.interface=^" + Interface + "$",
		"--web.listen-address=" + lbprobeListen,
		"--log.level=debug",
	}, args...)
	p := &LBProbe{NS: ns, logs: &syncBuffer{}}
	// `ip netns exec` enters the namespace before exec'ing lbprobe:
	// every socket lbprobe opens lives there.
	cmd := exec.Command("ip", full...)
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	// Killed when the test process dies, e.g. on Ctrl-C.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("lab: start lbprobe: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("lbprobe log:\n%s", p.logs.String())
		}
	})
	p.client = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return Dial(ctx, ns, network, addr)
		},
		DisableKeepAlives: true,
	}}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		code, _, err := p.get(ctx, "/-/ready")
		if err == nil && code == http.StatusOK {
			return p
		}
		select {
		case <-exited:
			t.Fatalf("lab: lbprobe exited:\n%s", p.logs.String())
		case <-ctx.Done():
			t.Fatalf("lab: lbprobe not ready after 30s (last: %d %v):\n%s", code, err, p.logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Scrape fetches /metrics, which runs a probe round.
func (p *LBProbe) Scrape(ctx context.Context) (string, error) {
	code, body, err := p.get(ctx, "/metrics")
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("GET /metrics: %d", code)
	}
	return body, err
}

// Logs returns what lbprobe logged so far.
func (p *LBProbe) Logs() string { return p.logs.String() }

func (p *LBProbe) get(ctx context.Context, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+lbprobeListen+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// syncBuffer is a strings.Builder safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var _ io.Writer = (*syncBuffer)(nil)
