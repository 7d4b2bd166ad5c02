// Package kubecluster runs a real Kubernetes API server on loopback for tests and local sandboxes:
// etcd and kube-apiserver as child processes, nothing else.
//
// There is no controller-manager, scheduler or kubelet, so nothing acts on objects on its own:
//   - deleted namespaces stay Terminating forever (use a fresh namespace per test, see
//     [Cluster.Namespace]);
//   - no namespace gets a "default" ServiceAccount, no token Secrets, no EndpointSlices;
//   - nothing writes Service, Gateway or custom resource status: tests patch status subresources;
//   - the ServiceAccount admission plugin is disabled (it would reject every Pod, since the
//     ServiceAccounts it requires are never created).
//
// Authentication is by bearer token: an admin token in group system:masters, and ServiceAccount
// tokens from the TokenRequest API ([Cluster.TokenKubeconfig]). Authorization is RBAC with the
// default bootstrap roles.
//
// # What envtest does, and what is done here
//
// controller-runtime's envtest (sigs.k8s.io/controller-runtime/pkg/envtest) starts etcd and
// kube-apiserver on free loopback ports, generates the serving certificate and the
// ServiceAccount signing key, waits until both answer, and installs the CRDs, waiting until the
// API server serves them. This package uses its ControlPlane and its CRD functions, not its
// Environment, which retries a failed start five times (ten minutes for a server that never
// gets ready) and provisions a client-certificate admin. It adds what envtest lacks:
//   - the admin authenticates by a bearer token (--token-auth-file) rather than envtest's client
//     certificate, so that a kubeconfig made from [Cluster.RESTConfig] needs only the token;
//   - the flags of a small real cluster, through APIServer.Configure: Service range 10.96.0.0/16,
//     no endpoint reconciler, no API Priority and Fairness, a fixed ServiceAccount issuer, and a
//     stop that does not wait a minute for clients' open watches;
//   - [Cluster.StopAPIServer] and [Cluster.StartAPIServer]: envtest's APIServer.Stop and Start
//     keep the port, certificates and keys only because the certificate folder is this
//     package's (one that envtest creates itself is deleted by Stop), and the restarted server is
//     waited for until /readyz, not only /healthz;
//   - children die with the process that started them. envtest starts them in their own process
//     group and nothing more, so a test binary killed by go test's -timeout left etcd and
//     kube-apiserver running. On Linux each binary is started through a two-line shell script
//     that runs it under setpriv --pdeathsig KILL (util-linux), forked from one OS thread that
//     never exits (the kernel signals when the forking thread ends, not the process);
//   - the temporary folders of killed processes are removed by the next [Start];
//   - a failed start reports the end of the servers' logs (envtest says only "timeout waiting
//     for process kube-apiserver to start"), and a start that lost a port it had picked is
//     retried on new ports.
//
// The binaries come from the folder in $LBPROBE_KUBE_BIN_DIR (etcd, kube-apiserver, kubectl) or,
// when it is unset, from hack/tool.sh of the repository around the working directory, which builds
// them on first use (minutes) and caches them outside the clone. envtest's own variables
// (KUBEBUILDER_ASSETS, TEST_ASSET_*, KUBEBUILDER_CONTROLPLANE_*) are not used.
//
// Linux and other Unix systems only.
package kubecluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Options configure [Start].
type Options struct {
	// CRDDirs are folders of CustomResourceDefinition manifests (*.yaml, *.yml, *.json, not
	// recursive; documents of other kinds are skipped). All are installed and served before
	// Start returns.
	CRDDirs []string
	// Logf receives progress messages; nil means silent. It is called during Start,
	// [Cluster.StartAPIServer] and [Cluster.Stop] only.
	Logf func(format string, args ...any)
}

// Cluster is a running etcd and kube-apiserver. Its methods are safe for concurrent use.
type Cluster struct {
	dir    string // temporary; holds pki/, etcd/, *.log and kubeconfigs
	logf   func(format string, args ...any)
	server string
	caPEM  []byte
	token  string // the admin's
	cfg    *rest.Config
	client kubernetes.Interface

	mu         sync.Mutex
	plane      *envtest.ControlPlane
	logs       []*os.File // the servers' stdout and stderr, kept open for restarts
	apiRunning bool
	stopped    bool
}

const (
	// serviceCIDR is the Service cluster IP range: only stored in the API, never routed.
	serviceCIDR = "10.96.0.0/16"
	// serviceAccountIssuer is the "iss" of ServiceAccount tokens, that of a real cluster.
	serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
	// readyTimeout bounds each wait for etcd or kube-apiserver to become ready.
	readyTimeout = 2 * time.Minute
	// stopTimeout is how long a stopped process gets to exit after SIGTERM before SIGKILL.
	stopTimeout = 15 * time.Second
	// startAttempts bounds retries with new ports when a picked port was taken meanwhile.
	startAttempts = 3
	// tempPrefix names the temporary folders, so that those of killed processes can be removed.
	tempPrefix = "lbprobe-kubecluster-"
)

// Start starts etcd and kube-apiserver on free 127.0.0.1 ports, waits until the API server is
// ready, writes an admin kubeconfig and installs the CRDs of opts.CRDDirs. ctx bounds the start
// (including a first build of the binaries), not the cluster's life: call [Cluster.Stop].
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	begin := time.Now()
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	etcdBin, err := binary(ctx, "etcd", logf)
	if err != nil {
		return nil, err
	}
	apiBin, err := binary(ctx, "kube-apiserver", logf)
	if err != nil {
		return nil, err
	}
	// Read the CRDs while the servers start: parsing megabytes of YAML takes a while.
	type crdResult struct {
		crds []*apiextensionsv1.CustomResourceDefinition
		err  error
	}
	crdc := make(chan crdResult, 1)
	go func() {
		crds, err := readCRDs(opts.CRDDirs)
		crdc <- crdResult{crds, err}
	}()
	defer func() {
		if crdc != nil {
			<-crdc
		}
	}()
	quietControllerRuntime()
	removeStaleDirs(logf)
	dir, err := os.MkdirTemp("", tempPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("kubecluster: %w", err)
	}
	c = &Cluster{dir: dir, logf: logf, token: randomString(32)}
	defer func() {
		if err != nil {
			c.Stop()
			c = nil
		}
	}()
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return c, fmt.Errorf("kubecluster: %w", err)
	}
	// token,user,uid,"group,..."
	tokens := fmt.Appendf(nil, "%s,admin,admin,\"system:masters\"\n", c.token)
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), tokens, 0o600); err != nil {
		return c, fmt.Errorf("kubecluster: %w", err)
	}
	bins := binaries{apiServer: apiBin}
	if bins.etcdLauncher, err = launcher(dir, "etcd", etcdBin, logf); err != nil {
		return c, err
	}
	if bins.apiServerLauncher, err = launcher(dir, "kube-apiserver", apiBin, logf); err != nil {
		return c, err
	}
	for attempt := 1; ; attempt++ {
		err = c.startControlPlane(ctx, bins)
		if err == nil || attempt == startAttempts || !errors.Is(err, errPortTaken) || ctx.Err() != nil {
			break
		}
		logf("kubecluster: a port was taken, trying others")
	}
	if err != nil {
		return c, err
	}
	api := c.plane.APIServer
	c.server = "https://" + api.SecureServing.HostPort()
	c.caPEM = api.SecureServing.CA
	c.cfg = &rest.Config{
		Host:            c.server,
		BearerToken:     c.token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.caPEM},
		UserAgent:       "lbprobe-kubecluster",
		// Tests create objects in bursts; client-go's default of 5 requests/s would throttle them.
		QPS:   100,
		Burst: 200,
	}
	if err := waitReady(ctx, c.cfg); err != nil {
		return c, c.failure(err)
	}
	if err := waitNamespaces(ctx, c.cfg); err != nil {
		return c, c.failure(err)
	}
	logf("kubecluster: kube-apiserver ready at %s after %s", c.Server(), time.Since(begin).Round(time.Millisecond))

	if c.client, err = kubernetes.NewForConfig(c.RESTConfig()); err != nil {
		return c, fmt.Errorf("kubecluster: %w", err)
	}
	if err := c.writeKubeconfig(c.KubeconfigPath(), "admin", c.token, ""); err != nil {
		return c, err
	}
	r := <-crdc
	crdc = nil
	if r.err != nil {
		return c, r.err
	}
	if len(r.crds) > 0 {
		crdStart := time.Now()
		if err := installCRDs(ctx, c.RESTConfig(), r.crds); err != nil {
			return c, err
		}
		logf("kubecluster: %d CRDs served after %s", len(r.crds), time.Since(crdStart).Round(time.Millisecond))
	}
	logf("kubecluster: started in %s; KUBECONFIG=%s", time.Since(begin).Round(time.Millisecond), c.KubeconfigPath())
	return c, nil
}

// Server is the API server's URL, https://127.0.0.1:PORT. The port stays the same across
// [Cluster.StopAPIServer] and [Cluster.StartAPIServer].
func (c *Cluster) Server() string { return c.server }

// RESTConfig returns a new copy of the admin's client configuration (a bearer token in group
// system:masters, the cluster's CA, client-side rate limit 100 requests/s).
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.cfg) }

// KubeconfigPath is the path of a kubeconfig file for the admin, with the CA embedded. It is
// removed by [Cluster.Stop].
func (c *Cluster) KubeconfigPath() string { return filepath.Join(c.dir, "kubeconfig") }

// StopAPIServer stops kube-apiserver (SIGTERM; it stops listening once the requests in flight
// are done and gives open watches 2 s; SIGKILL after 15 s) and leaves etcd and its data running,
// to test clients across an API server outage. It returns an error only if the server does not
// go away. Stopping a stopped server does nothing.
func (c *Cluster) StopAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.apiRunning {
		return nil
	}
	c.apiRunning = false
	api := c.plane.APIServer
	if err := api.Stop(); err != nil {
		// envtest sends SIGKILL when the server outlives StopTimeout, reports that, and does
		// not wait: a server that is gone is what the caller asked for.
		if !waitPortClosed(api.SecureServing.HostPort()) {
			return fmt.Errorf("kubecluster: stopping kube-apiserver: %w", err)
		}
		c.logf("kubecluster: %v; it was killed", err)
	}
	return nil
}

// StartAPIServer starts kube-apiserver again after [Cluster.StopAPIServer], on the same port
// with the same certificates, keys and tokens, and waits until it is ready. Starting a running
// server does nothing.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("kubecluster: cluster stopped")
	}
	if c.apiRunning {
		return nil
	}
	begin := time.Now()
	timeout, err := startTimeout(ctx)
	if err != nil {
		return err
	}
	api := c.plane.APIServer
	api.StartTimeout = timeout
	fmt.Fprintf(api.Out, "=== %s: kubecluster: starting kube-apiserver again\n", time.Now().Format(time.RFC3339Nano))
	onSpawner(func() { err = api.Start() })
	if err != nil {
		return c.failure(fmt.Errorf("starting kube-apiserver again: %w", err))
	}
	c.apiRunning = true
	if err := waitReady(ctx, c.cfg); err != nil {
		return c.failure(err)
	}
	c.logf("kubecluster: kube-apiserver restarted in %s", time.Since(begin).Round(time.Millisecond))
	return nil
}

// Stop stops kube-apiserver and etcd and removes the temporary folder with the data, logs and
// kubeconfig files. It may be called more than once.
func (c *Cluster) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	c.stopped = true
	c.apiRunning = false
	c.stopControlPlane()
	if err := os.RemoveAll(c.dir); err != nil {
		c.logf("kubecluster: %v", err)
	}
}

// Namespace creates a namespace with a random name derived from the test's name and returns the
// name. It is not deleted after the test: without a controller-manager a deleted namespace would
// stay Terminating anyway, and the cluster's data is thrown away by [Cluster.Stop].
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	name := dnsLabel(t.Name(), 40) + "-" + randomString(5)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("kubecluster: creating namespace %s: %v", name, err)
	}
	return name
}

// TokenKubeconfig writes a kubeconfig file that authenticates as ServiceAccount
// namespace/serviceAccount, creating the ServiceAccount if missing, and returns its path. The
// token comes from the TokenRequest API and lasts 24 hours (it survives API server restarts).
// The ServiceAccount has no permissions until the caller binds it to a role. The file is removed
// by [Cluster.Stop].
func (c *Cluster) TokenKubeconfig(ctx context.Context, namespace, serviceAccount string) (string, error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: serviceAccount}}
	_, err := c.client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("kubecluster: creating ServiceAccount %s/%s: %w", namespace, serviceAccount, err)
	}
	expiry := int64((24 * time.Hour).Seconds())
	tr, err := c.client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, serviceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}},
		metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("kubecluster: requesting a token for %s/%s: %w", namespace, serviceAccount, err)
	}
	path := filepath.Join(c.dir, "kubeconfig-"+namespace+"-"+serviceAccount)
	user := "system:serviceaccount:" + namespace + ":" + serviceAccount
	if err := c.writeKubeconfig(path, user, tr.Status.Token, namespace); err != nil {
		return "", err
	}
	return path, nil
}

func (c *Cluster) writeKubeconfig(path, user, token, namespace string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubecluster"] = &clientcmdapi.Cluster{Server: c.Server(), CertificateAuthorityData: c.caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["kubecluster"] = &clientcmdapi.Context{Cluster: "kubecluster", AuthInfo: user, Namespace: namespace}
	cfg.CurrentContext = "kubecluster"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("kubecluster: writing %s: %w", path, err)
	}
	return nil
}

// dnsLabel turns s into a lower-case DNS label of at most max characters.
func dnsLabel(s string, max int) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
		if b.Len() >= max {
			break
		}
	}
	out := strings.TrimRight(b.String(), "-")
	if out == "" {
		return "test"
	}
	return out
}

func randomString(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}
