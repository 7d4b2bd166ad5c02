package kubecluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// errPortTaken marks a start that failed because a port picked as free was taken meanwhile.
var errPortTaken = errors.New("address already in use")

// binaries are what starts the servers (see launcher), and the kube-apiserver binary, next to
// which kubectl is.
type binaries struct {
	etcdLauncher, apiServerLauncher, apiServer string
}

// startControlPlane starts etcd and kube-apiserver with envtest, after removing what a failed
// attempt left behind.
func (c *Cluster) startControlPlane(ctx context.Context, bins binaries) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopControlPlane()
	for _, sub := range []string{"etcd", "pki"} {
		if err := os.RemoveAll(filepath.Join(c.dir, sub)); err != nil {
			return fmt.Errorf("kubecluster: %w", err)
		}
	}
	// Ours, not envtest's temporary one: envtest deletes its own on APIServer.Stop, and a
	// restarted server must find the same certificates and ServiceAccount key.
	certDir := filepath.Join(c.dir, "pki")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		return fmt.Errorf("kubecluster: %w", err)
	}
	timeout, err := startTimeout(ctx)
	if err != nil {
		return err
	}
	etcdLog, err := c.openLog("etcd.log")
	if err != nil {
		return err
	}
	apiLog, err := c.openLog("kube-apiserver.log")
	if err != nil {
		return err
	}

	etcd := &envtest.Etcd{
		Path: bins.etcdLauncher, DataDir: filepath.Join(c.dir, "etcd"),
		Out: etcdLog, Err: etcdLog, StartTimeout: timeout, StopTimeout: stopTimeout,
	}
	etcd.Configure().
		Set("unsafe-no-fsync", "true"). // the data is thrown away
		Set("log-level", "warn")
	api := &envtest.APIServer{
		Path: bins.apiServerLauncher, CertDir: certDir,
		Out: apiLog, Err: apiLog, StartTimeout: timeout, StopTimeout: stopTimeout,
	}
	// envtest's defaults cover the rest: RBAC, the ServiceAccount signing key, the
	// ServiceAccount admission plugin disabled, a client-certificate CA.
	api.Configure().
		Set("advertise-address", "127.0.0.1").
		Set("token-auth-file", filepath.Join(c.dir, "tokens.csv")).
		Set("service-account-issuer", serviceAccountIssuer).
		Set("service-cluster-ip-range", serviceCIDR).
		Set("endpoint-reconciler-type", "none").
		Set("profiling", "false").
		// On SIGTERM, stop listening once the requests in flight are done and give watches 2 s,
		// not the 60 s of --request-timeout: clients' informers keep watches open, so a stopped
		// server would otherwise linger for a minute (and envtest kill it after stopTimeout).
		Set("shutdown-send-retry-after", "true").
		// API Priority and Fairness only matters under load; off, the server starts faster
		// and smaller, and there are no FlowSchema objects.
		Set("enable-priority-and-fairness", "false")
	// envtest's ControlPlane rather than its Environment, which would retry a failed start five
	// times (up to ten minutes for a server that never gets ready) and add a second admin.
	c.plane = &envtest.ControlPlane{
		Etcd:        etcd,
		APIServer:   api,
		KubectlPath: filepath.Join(filepath.Dir(bins.apiServer), "kubectl"),
	}
	onSpawner(func() { err = c.plane.Start() })
	if err != nil {
		return c.failure(err)
	}
	c.apiRunning = true
	return nil
}

// stopControlPlane stops what startControlPlane started; c.mu must be held.
func (c *Cluster) stopControlPlane() {
	if c.plane != nil {
		if err := c.plane.Stop(); err != nil {
			c.logf("kubecluster: %v", err)
		}
		c.plane = nil
	}
	for _, f := range c.logs {
		_ = f.Close()
	}
	c.logs = nil
}

func (c *Cluster) openLog(name string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(c.dir, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("kubecluster: %w", err)
	}
	c.logs = append(c.logs, f)
	return f, nil
}

// failure adds the end of the servers' logs to err: kube-apiserver's, and etcd's when err is
// about etcd or kube-apiserver wrote nothing. It wraps errPortTaken when a log says a port was
// in use.
func (c *Cluster) failure(err error) error {
	var b strings.Builder
	portTaken := false
	wrote := false
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if name == "etcd" && wrote && !strings.Contains(err.Error(), "etcd") {
			continue
		}
		data, rerr := os.ReadFile(filepath.Join(c.dir, name+".log"))
		if rerr != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		wrote = true
		fmt.Fprintf(&b, "\nthe end of %s.log:\n  %s", name, strings.ReplaceAll(lastLines(string(data), 30), "\n", "\n  "))
		portTaken = portTaken || bytes.Contains(data, []byte("address already in use"))
	}
	err = fmt.Errorf("kubecluster: %w%s", err, b.String())
	if portTaken {
		return fmt.Errorf("%w: %w", errPortTaken, err)
	}
	return err
}

// startTimeout is how long a server may take to start: readyTimeout, or less if ctx ends
// sooner (envtest takes a timeout, not a context).
func startTimeout(ctx context.Context) (time.Duration, error) {
	if ctx.Err() != nil {
		return 0, fmt.Errorf("kubecluster: %w", context.Cause(ctx))
	}
	timeout := readyTimeout
	if deadline, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(deadline))
	}
	if timeout <= 0 {
		return 0, fmt.Errorf("kubecluster: %w", context.DeadlineExceeded)
	}
	return timeout, nil
}

// waitReady polls the API server's /readyz every 100 ms until it answers 200 OK. envtest waits
// for /healthz only, which lacks /readyz's informer-sync check.
func waitReady(ctx context.Context, cfg *rest.Config) error {
	return poll(ctx, cfg, "/readyz", "kube-apiserver not ready")
}

// waitNamespaces waits until the API server has created its system namespaces, which it does
// soon after it starts serving on a fresh etcd.
func waitNamespaces(ctx context.Context, cfg *rest.Config) error {
	for _, ns := range []string{"default", "kube-system"} {
		if err := poll(ctx, cfg, "/api/v1/namespaces/"+ns, "no namespace "+ns); err != nil {
			return err
		}
	}
	return nil
}

// poll GETs path every 100 ms until it answers 200 OK or readyTimeout passes.
func poll(ctx context.Context, cfg *rest.Config, path, what string) error {
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: rt, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if httpOK(ctx, hc, cfg.Host+path) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// waitPortClosed polls until nothing accepts connections on hostPort, or 10 s pass.
func waitPortClosed(hostPort string) bool {
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", hostPort, time.Second)
		if err != nil {
			return true
		}
		conn.Close()
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func httpOK(ctx context.Context, hc *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// readCRDs reads the CustomResourceDefinitions of dirs with envtest, which skips documents of
// other kinds (e.g. the ValidatingAdmissionPolicy next to Gateway API's). A folder that is
// missing or holds none is an error.
func readCRDs(dirs []string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, dir := range dirs {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("kubecluster: Options.CRDDirs: %w", err)
		}
		opts := envtest.CRDInstallOptions{Paths: []string{dir}, ErrorIfPathMissing: true}
		if err := envtest.ReadCRDFiles(&opts); err != nil {
			return nil, fmt.Errorf("kubecluster: Options.CRDDirs: %s: %w", dir, err)
		}
		if len(opts.CRDs) == 0 {
			return nil, fmt.Errorf("kubecluster: Options.CRDDirs: no CustomResourceDefinition in %s", dir)
		}
		crds = append(crds, opts.CRDs...)
	}
	return crds, nil
}

// installCRDs creates or updates crds and waits until the API server serves all their versions.
// envtest creates them one by one; a few at a time is faster, since the API server spends most
// of the time compiling each one's schema.
func installCRDs(ctx context.Context, cfg *rest.Config, crds []*apiextensionsv1.CustomResourceDefinition) error {
	timeout, err := startTimeout(ctx)
	if err != nil {
		return err
	}
	const workers = 4
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		var share []*apiextensionsv1.CustomResourceDefinition
		for i := w; i < len(crds); i += workers {
			share = append(share, crds[i])
		}
		wg.Go(func() { errs[w] = envtest.CreateCRDs(cfg, share) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kubecluster: installing CRDs: %w", err)
	}
	if err := envtest.WaitForCRDs(cfg, crds, envtest.CRDInstallOptions{MaxTime: timeout, PollInterval: 100 * time.Millisecond}); err != nil {
		return fmt.Errorf("kubecluster: CRDs not served: %w", err)
	}
	return nil
}

var runtimeLogger sync.Once

// quietControllerRuntime gives controller-runtime, which envtest logs to, a logger that drops
// everything: envtest's errors come back from its calls, and without a logger controller-runtime
// prints a warning with a stack trace.
func quietControllerRuntime() {
	runtimeLogger.Do(func() { ctrllog.SetLogger(logr.Discard()) })
}

// removeStaleDirs removes the temporary folders of processes that no longer exist, e.g. test
// binaries killed on timeout before they could call Stop. Their children died with them.
func removeStaleDirs(logf func(string, ...any)) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if err != nil {
			continue // not ours, or being created
		}
		pid, err := strconv.Atoi(string(data))
		if err != nil || pid <= 0 || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue
		}
		if err := os.RemoveAll(dir); err == nil {
			logf("kubecluster: removed %s, left behind by process %d", dir, pid)
		}
	}
}
