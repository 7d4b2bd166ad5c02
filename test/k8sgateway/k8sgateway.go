// Package k8sgateway runs the real k8s_gateway (CoreDNS with the
// ori-edge/k8s_gateway plugin, built from the Go module proxy by
// hack/tool.sh) against a local API server, for integration tests and the
// `make run` sandbox. It listens on loopback only.
package k8sgateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// Binary returns the k8s_gateway binary: $LBPROBE_K8S_GATEWAY_BIN, or the
// one hack/tool.sh builds and caches.
func Binary() (string, error) {
	if b := os.Getenv("LBPROBE_K8S_GATEWAY_BIN"); b != "" {
		return b, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(filepath.Join(root, "hack", "tool.sh"), "k8s_gateway")
	cmd.Stderr = os.Stderr // build progress, the first time
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/tool.sh k8s_gateway: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the lbprobe module")
	}
	return filepath.Dir(gomod), nil
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// MakeCRDsCompatible lets k8s_gateway v0.4.0 sync against the Gateway API
// v1.6 standard CRDs: it lists TLSRoute and GRPCRoute at v1alpha2, which
// v1.6 no longer serves, and never syncs (answering SERVFAIL) until it can.
// This serves v1alpha2 of both again, with the schema of their v1 version.
func MakeCRDsCompatible(ctx context.Context, cfg *rest.Config) error {
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	for _, name := range []string{"tlsroutes.gateway.networking.k8s.io", "grpcroutes.gateway.networking.k8s.io"} {
		if err := serveV1alpha2(ctx, client, name); err != nil {
			return fmt.Errorf("CRD %s: %w", name, err)
		}
	}
	return nil
}

func serveV1alpha2(ctx context.Context, client dynamic.Interface, name string) error {
	crd, err := client.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	versions, _, err := unstructured.NestedSlice(crd.Object, "spec", "versions")
	if err != nil {
		return fmt.Errorf("spec.versions: %w", err)
	}
	var v1 map[string]any
	found := false
	for _, v := range versions {
		m, ok := v.(map[string]any)
		if !ok {
			continue
		}
		switch m["name"] {
		case "v1":
			v1 = m
		case "v1alpha2":
			m["served"] = true
			found = true
		}
	}
	if !found {
		if v1 == nil {
			return errors.New("has neither v1 nor v1alpha2")
		}
		alpha := make(map[string]any, len(v1))
		for k, v := range v1 {
			alpha[k] = v
		}
		alpha["name"], alpha["served"], alpha["storage"] = "v1alpha2", true, false
		delete(alpha, "deprecated")
		versions = append(versions, alpha)
	}
	if err := unstructured.SetNestedSlice(crd.Object, versions, "spec", "versions"); err != nil {
		return fmt.Errorf("setting spec.versions: %w", err)
	}
	_, err = client.Resource(crdGVR).Update(ctx, crd, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return serveV1alpha2(ctx, client, name)
	}
	return err
}

// Options configure one k8s_gateway server.
type Options struct {
	Zone       string         // e.g. "sbbh.cloud"
	Kubeconfig string         // path of a kubeconfig for the local API server
	Listen     netip.AddrPort // a loopback address; port 0 picks a free port
	Resources  []string       // k8s_gateway's resources, in priority order; default HTTPRoute, Service
	Dir        string         // for the Corefile and the log; default a temporary folder
}

// Server is a running k8s_gateway.
type Server struct {
	Addr    netip.AddrPort
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
}

// Start runs k8s_gateway and waits until it answers the zone's SOA with
// NOERROR, which it does only once its informers have synced.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if !opts.Listen.Addr().IsLoopback() {
		return nil, fmt.Errorf("listen address %s: k8s_gateway listens on loopback only here", opts.Listen)
	}
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		if opts.Dir, err = os.MkdirTemp("", "k8s-gateway"); err != nil {
			return nil, err
		}
	}
	if len(opts.Resources) == 0 {
		opts.Resources = []string{"HTTPRoute", "Service"}
	}
	if opts.Listen.Port() == 0 {
		port, err := freeUDPAndTCPPort(opts.Listen.Addr())
		if err != nil {
			return nil, err
		}
		opts.Listen = netip.AddrPortFrom(opts.Listen.Addr(), port)
	}
	corefile := filepath.Join(opts.Dir, "Corefile")
	text := fmt.Sprintf(`%s:%d {
    bind %s
    errors
    k8s_gateway %s {
        resources %s
        kubeconfig %s
        ttl 5
    }
}
`, opts.Zone, opts.Listen.Port(), opts.Listen.Addr(), opts.Zone, strings.Join(opts.Resources, " "), opts.Kubeconfig)
	if err := os.WriteFile(corefile, []byte(text), 0o644); err != nil {
		return nil, err
	}
	s := &Server{Addr: opts.Listen, logPath: filepath.Join(opts.Dir, "k8s_gateway.log"), done: make(chan struct{})}
	logFile, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, "-conf", corefile)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() {
		_ = s.cmd.Wait()
		logFile.Close()
		close(s.done)
	}()
	if err := s.waitSynced(ctx, opts.Zone); err != nil {
		s.Stop()
		return nil, fmt.Errorf("k8s_gateway: %w\n%s", err, s.LogTail())
	}
	return s, nil
}

func (s *Server) waitSynced(ctx context.Context, zone string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	client := &dns.Client{Timeout: 500 * time.Millisecond}
	msg := new(dns.Msg)
	msg.SetQuestion(dns.Fqdn(zone), dns.TypeSOA)
	last := "no reply"
	for {
		select {
		case <-s.done:
			return errors.New("exited before it answered")
		case <-ctx.Done():
			return fmt.Errorf("not answering the zone after 60s (last: %s)", last)
		case <-time.After(100 * time.Millisecond):
		}
		resp, _, err := client.ExchangeContext(ctx, msg, s.Addr.String())
		switch {
		case err != nil:
			last = err.Error()
		case resp.Rcode == dns.RcodeSuccess:
			return nil
		default:
			last = dns.RcodeToString[resp.Rcode]
		}
	}
}

// LogTail returns the end of the server's log.
func (s *Server) LogTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Stop kills the server and waits for it.
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
	}
	<-s.done
}

func freeUDPAndTCPPort(ip netip.Addr) (uint16, error) {
	for range 20 {
		pc, err := net.ListenPacket("udp", netip.AddrPortFrom(ip, 0).String())
		if err != nil {
			return 0, err
		}
		port := netip.MustParseAddrPort(pc.LocalAddr().String()).Port()
		l, err := net.Listen("tcp", netip.AddrPortFrom(ip, port).String())
		pc.Close()
		if err == nil {
			l.Close()
			return port, nil
		}
	}
	return 0, errors.New("no port free for both UDP and TCP")
}
