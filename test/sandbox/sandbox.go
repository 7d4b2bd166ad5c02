// Package sandbox runs a local copy of the reference cluster that lbprobe
// watches and probes, all on this machine's loopback: the `make run`
// sandbox (hack/sandbox), also for Go tests.
//
// It starts a real etcd and kube-apiserver (test/kubecluster, built from the
// Go module proxy on first use), installs the Gateway API and Cilium CRDs,
// writes the reference objects (test/seed) with loopback stand-ins
// 127.11.80.x for the LoadBalancer IPs 10.11.80.x, serves their ports
// (test/targets), runs the real k8s_gateway for the zone sbbh.cloud
// (test/k8sgateway), and finally runs an lbprobe binary against all of it.
// As root the Services use the reference ports 80, 443 and 53; otherwise
// 8080, 8443 and 5353.
//
// A few things are broken on purpose so that every series shows both
// states: the Service apps/pending has no IP, the lease of network/k8s-gateway
// is stale, apps/legacy claims a hostname that a route owns (k8s_gateway
// answers the route's address) and nothing serves its port. On top of the
// seed, a second pool lb-pool-old overlaps the first and has a conflict, a
// Gateway gateway/staging is not programmed and its status address differs
// from the one it asked for (nothing serves it), and the hostname
// shared.sbbh.cloud is claimed by a route on both Gateways.
//
// Like Cilium, the sandbox renews the leases of the Services it announces
// (every few seconds; [Sandbox.SetLeaseRenewal] stops and resumes one),
// except the stale one.
//
// The addresses are fixed per Options.Loopback, so one sandbox per value
// runs on a machine at a time: tests use their own value.
// Linux only (the children die with the process that started them).
package sandbox

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lbprobe/lbprobe/test/k8sgateway"
	"github.com/lbprobe/lbprobe/test/kubecluster"
	"github.com/lbprobe/lbprobe/test/seed"
)

// Options configure [Start].
type Options struct {
	// LBProbe is the path of the lbprobe binary to run (required).
	LBProbe string
	// Listen is lbprobe's --web.listen-address; empty means a free port on
	// 127.0.0.1.
	Listen string
	// ExtraArgs are appended to lbprobe's arguments.
	ExtraArgs []string
	// Logf receives progress messages; nil discards them.
	Logf func(format string, args ...any)
	// Output receives lbprobe's stdout and stderr; nil keeps them in a
	// buffer only, see [Sandbox.Logs].
	Output io.Writer
	// Loopback is the second byte of the stand-in addresses 127.<Loopback>.80.x
	// (see [seed.Loopback]); 0 means 11, the one `make run` uses.
	Loopback byte
}

// Sandbox is a running sandbox. Its methods are safe for concurrent use.
type Sandbox struct {
	URL     string               // lbprobe's base URL, http://host:port
	Cluster *kubecluster.Cluster // the API server
	Seed    *seed.Cluster        // writes to the API server
	Addrs   seed.Addresses       // the loopback stand-ins 127.11.80.x
	Ports   seed.Ports           // the Services' ports
	Dir     string               // temporary: lbprobe's config, the sandbox CA, k8s_gateway's files
	CAFile  string               // the sandbox CA, which signed the HTTPS listeners' certificate

	logf   func(format string, args ...any)
	ctx    context.Context // the sandbox's life: ends with Start's ctx or Stop
	cancel context.CancelFunc
	cert   tls.Certificate
	dns    *k8sgateway.Server
	cmd    *exec.Cmd
	logs   *tailBuffer
	exited chan struct{} // closed when lbprobe has exited; nil until it started
	runErr error         // lbprobe's exit, once exited is closed

	mu        sync.Mutex
	listeners map[netip.AddrPort]*listener
	// notRenewed are the leases (by name) the renewer leaves alone.
	notRenewed map[string]bool
	renewerWG  sync.WaitGroup

	stopOnce sync.Once
}

// listener is one port the sandbox serves.
type listener struct {
	tls    bool               // a TLS handshake with Sandbox.cert, else a plain TCP accept
	cancel context.CancelFunc // nil while stopped
}

// Start starts the sandbox, lbprobe included, and returns without waiting
// for lbprobe to be ready (see [Sandbox.WaitReady]). ctx bounds the
// sandbox's life: when it ends, lbprobe gets SIGTERM and the listeners
// close; [Sandbox.Stop] releases the rest. On error Start stops what it
// started.
func Start(ctx context.Context, opts Options) (s *Sandbox, err error) {
	if opts.LBProbe == "" {
		return nil, errors.New("sandbox: no lbprobe binary given")
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	listen := opts.Listen
	if listen == "" {
		if listen, err = freeAddress(); err != nil {
			return nil, err
		}
	}
	url, err := baseURL(listen)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "lbprobe-sandbox-")
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	octet := opts.Loopback
	if octet == 0 {
		octet = 11
	}
	s = &Sandbox{
		URL: url, Addrs: seed.Loopback(octet), Ports: seed.ReferencePorts(), Dir: dir,
		logf: logf, ctx: runCtx, cancel: cancel,
		listeners: make(map[netip.AddrPort]*listener),
		// Stale on purpose (see the seed).
		notRenewed: map[string]bool{seed.LeaseName(seed.NetworkNS, "k8s-gateway"): true},
	}
	defer func() {
		if err != nil {
			s.Stop()
			s = nil
		}
	}()

	logf("starting etcd and kube-apiserver (the first run builds them from the Go module proxy: several minutes)")
	crds, err := kubecluster.CRDDirs()
	if err != nil {
		return s, err
	}
	if s.Cluster, err = kubecluster.Start(ctx, kubecluster.Options{CRDDirs: crds, Logf: logf}); err != nil {
		return s, err
	}
	logf("API server %s, kubeconfig %s", s.Cluster.Server(), s.Cluster.KubeconfigPath())
	if err := k8sgateway.MakeCRDsCompatible(ctx, s.Cluster.RESTConfig()); err != nil {
		return s, err
	}

	if os.Geteuid() != 0 {
		s.Ports = seed.Ports{HTTP: 8080, HTTPS: 8443, DNS: 5353}
		logf("not root: the Services use ports %d, %d and %d instead of 80, 443 and 53", s.Ports.HTTP, s.Ports.HTTPS, s.Ports.DNS)
	}
	if s.Seed, err = seed.New(s.Cluster.RESTConfig(), s.Addrs); err != nil {
		return s, err
	}
	if err := s.Seed.Seed(ctx, s.Ports); err != nil {
		return s, err
	}
	if err := breakMore(ctx, s.Seed, s.Addrs); err != nil {
		return s, err
	}
	s.renewerWG.Go(func() { s.renewLeases(leaseRenewEvery) })
	logf("seeded: Gateways external %s and internal %s, k8s-gateway %s, apps/legacy %s (no ready backend), apps/pending (no IP), apps/pinned (requested IP not given), apps/shared-a and -b (split brain), the seed's httpsredirect (refused), the seed's L2 policy (^enp.*)",
		s.Addrs.External, s.Addrs.Internal, s.Addrs.DNS, s.Addrs.Legacy)

	if err := s.servePorts(); err != nil {
		return s, err
	}
	logf("starting k8s_gateway on %s:%d (the first run builds it: a minute or two)", s.Addrs.DNS, s.Ports.DNS)
	s.dns, err = k8sgateway.Start(ctx, k8sgateway.Options{
		Zone: seed.Domain, Kubeconfig: s.Cluster.KubeconfigPath(),
		Listen: netip.AddrPortFrom(s.Addrs.DNS, uint16(s.Ports.DNS)), Dir: dir,
	})
	if err != nil {
		return s, err
	}

	if err := s.startLBProbe(opts.LBProbe, listen, opts.ExtraArgs, opts.Output); err != nil {
		return s, err
	}
	return s, nil
}

// startLBProbe writes lbprobe's config and starts it.
func (s *Sandbox) startLBProbe(bin, listen string, extraArgs []string, output io.Writer) error {
	config := filepath.Join(s.Dir, "lbprobe.yml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`# written by hack/sandbox
dns:
  domain: %s
kubernetes:
  tls:
    ca_file: %s
`, seed.Domain, s.CAFile)), 0o644); err != nil {
		return err
	}
	args := append([]string{
		"--config.file=" + config, "--kubeconfig=" + s.Cluster.KubeconfigPath(),
		"--cilium.namespace=" + seed.CiliumNamespace, "--web.listen-address=" + listen,
		// As the DaemonSet would on k8s-nuc: the L2 policies that select the
		// node are matched against this host's own interfaces (the seed's
		// ^enp.* matches none on a host whose NIC is eth0).
		"--node.name=" + seed.NodeNames[0],
		// Lease remediation in dry-run: it logs and counts what it would do
		// (the orphaned lease of apps/gone, after 5s), and deletes nothing.
		"--remediate.leases=dry-run", "--remediate.orphan-grace=5s",
		"--remediate.leader-election.namespace=" + seed.CiliumNamespace,
	}, extraArgs...)
	s.logf("running %s %v", bin, args)
	s.logf("why a target fails, as from a LAN host: %s diagnose %s network/k8s-gateway (or apps/pending, apps/pinned, apps/legacy, apps/shared-a; none: every failing target)", bin, strings.Join(s.DiagnoseFlags(), " "))
	hostPort := strings.TrimPrefix(s.URL, "http://")
	s.logf("ready in a few seconds: http://%s/  —  curl -s http://%s/metrics | grep -E '^(loadbalancer|gateway)_'", hostPort, hostPort)

	s.logs = &tailBuffer{max: -1}
	var out io.Writer = s.logs
	if output != nil {
		s.logs.max = 64 << 10 // the rest went to output
		out = io.MultiWriter(output, s.logs)
	}
	cmd := exec.CommandContext(s.ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting lbprobe: %w", err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() {
		s.runErr = cmd.Wait()
		close(s.exited)
	}()
	return nil
}

// DiagnoseFlags are the flags with which `lbprobe diagnose` sees the
// sandbox's cluster and targets as its lbprobe does, but from a LAN host
// (no --node.name).
func (s *Sandbox) DiagnoseFlags() []string {
	return []string{
		"--config.file=" + filepath.Join(s.Dir, "lbprobe.yml"), "--kubeconfig=" + s.Cluster.KubeconfigPath(),
		"--cilium.namespace=" + seed.CiliumNamespace,
	}
}

// WaitReady polls lbprobe's /-/ready until it answers 200 OK (its
// Kubernetes caches have synced). It fails when ctx ends first or when
// lbprobe exits.
func (s *Sandbox) WaitReady(ctx context.Context) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	last := "no answer yet"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/-/ready", nil)
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-s.exited:
			return fmt.Errorf("sandbox: lbprobe exited before it was ready (%v); its last lines:\n%s",
				exitReason(s.runErr), lastLines(s.Logs(), 20))
		case <-ctx.Done():
			return fmt.Errorf("sandbox: lbprobe not ready (last: %s): %w; its last lines:\n%s",
				last, ctx.Err(), lastLines(s.Logs(), 20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func exitReason(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// Wait waits until lbprobe exits. It returns nil when lbprobe was stopped
// on purpose (Start's ctx ended, or Stop), else why it exited.
func (s *Sandbox) Wait() error {
	<-s.exited
	if s.ctx.Err() != nil {
		return nil
	}
	if s.runErr != nil {
		return fmt.Errorf("lbprobe: %w", s.runErr)
	}
	return nil
}

// Logs returns what lbprobe wrote to its stdout and stderr so far: all of
// it when Options.Output is nil, else its last 64 KiB.
func (s *Sandbox) Logs() string {
	if s.logs == nil {
		return ""
	}
	return s.logs.String()
}

// Stop stops lbprobe (SIGTERM, SIGKILL after 10 s), closes the listeners,
// stops k8s_gateway and the API server, and removes Dir. It may be called
// more than once.
func (s *Sandbox) Stop() {
	s.stopOnce.Do(func() {
		s.cancel()
		s.renewerWG.Wait()
		if s.exited != nil {
			<-s.exited
		}
		if s.dns != nil {
			s.dns.Stop()
		}
		if s.Cluster != nil {
			s.Cluster.Stop()
		}
		if err := os.RemoveAll(s.Dir); err != nil {
			s.logf("%v", err)
		}
	})
}

// freeAddress returns 127.0.0.1:PORT with a port that was free a moment ago.
func freeAddress() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("sandbox: no free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// baseURL returns http://host:port for a listen address, with loopback for
// an empty or unspecified host.
func baseURL(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("sandbox: listen address %q: %w", listen, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// lastLines returns about the last n lines of s, indented.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// tailBuffer keeps what is written to it, or only the last max bytes when
// max >= 0. It is safe for concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if t.max >= 0 && len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
