package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/lbprobe/lbprobe/collector/diagnosis"
	"github.com/lbprobe/lbprobe/test/lbprobebin"
	"github.com/lbprobe/lbprobe/test/netlab"
)

// lbprobeListen is where lbprobe listens: loopback of the namespace it
// runs in.
const lbprobeListen = "127.0.0.1:9884"

// LBProbe is the real lbprobe binary running inside a lab namespace, with
// the lab's API server as its Kubernetes API server.
type LBProbe struct {
	*lbprobebin.Process
	NS     *netlab.Namespace
	client *http.Client
}

// StartLBProbe runs lbprobe inside ns (usually l.Router) with a kubeconfig
// for the lab's API server, ARP checks on eth0 and args appended, and waits
// until it is ready (its Kubernetes caches synced). It is killed when t
// ends; its log is written to t on failure.
func (l *Lab) StartLBProbe(t testing.TB, ns *netlab.Namespace, args ...string) *LBProbe {
	t.Helper()
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := l.WriteKubeconfig(kc); err != nil {
		t.Fatal(err)
	}
	p := &LBProbe{NS: ns, client: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return Dial(ctx, ns, network, addr)
		},
		DisableKeepAlives: true,
	}}}
	// `ip netns exec` enters the namespace before exec'ing lbprobe:
	// every socket lbprobe opens lives there.
	p.Process = lbprobebin.Start(t, lbprobebin.StartOptions{
		Prefix: []string{"ip", "netns", "exec", ns.Name},
		Args: append([]string{
			"--kube.enabled=true", "--kubeconfig=" + kc,
			"--probe.arp.interface=^" + Interface + "$",
			"--web.listen-address=" + lbprobeListen,
			"--log.level=debug",
		}, args...),
	})
	if err := p.WaitReady(t.Context(), p.client, "http://"+lbprobeListen+"/-/ready", 30*time.Second); err != nil {
		t.Fatalf("lab: lbprobe not ready: %v:\n%s", err, p.Logs())
	}
	return p
}

// Diagnose runs `lbprobe diagnose --output=json` inside ns with the lab's
// kubeconfig, ARP checks on eth0, args (flags, then targets) appended, and
// returns the diagnoses it printed and its exit code.
func (l *Lab) Diagnose(t testing.TB, ns *netlab.Namespace, args ...string) ([]diagnosis.Diagnosis, int) {
	t.Helper()
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := l.WriteKubeconfig(kc); err != nil {
		t.Fatal(err)
	}
	res := lbprobebin.Run(t, lbprobebin.StartOptions{
		Prefix: []string{"ip", "netns", "exec", ns.Name},
		Args: append([]string{
			"diagnose", "--output=json", "--kubeconfig=" + kc,
			"--probe.arp.interface=^" + Interface + "$",
		}, args...),
	}, time.Minute)
	var out []diagnosis.Diagnosis
	if err := json.Unmarshal([]byte(res.Stdout), &out); err != nil {
		t.Fatalf("lbprobe diagnose %v exited %d with no JSON (%v); stdout:\n%s\nstderr:\n%s", args, res.Code, err, res.Stdout, res.Stderr)
	}
	return out, res.Code
}

// Scrape fetches /metrics, which runs a probe round.
func (p *LBProbe) Scrape(ctx context.Context) (string, error) {
	code, body, err := p.get(ctx, "/metrics")
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("GET /metrics: %d", code)
	}
	return body, err
}

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
