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
// Authentication is by bearer token only: an admin token in group system:masters, and
// ServiceAccount tokens from the TokenRequest API ([Cluster.TokenKubeconfig]). Authorization is
// RBAC with the default bootstrap roles.
//
// The binaries come from the folder in $LBPROBE_KUBE_BIN_DIR (etcd, kube-apiserver, kubectl) or,
// when it is unset, from hack/tool.sh of the repository around the working directory, which builds
// them on first use (minutes) and caches them outside the clone.
//
// Linux and other Unix systems only (process groups; on Linux the children also die with the
// process that started them).
package kubecluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options configure [Start].
type Options struct {
	// CRDDirs are folders of CustomResourceDefinition manifests (*.yaml, *.yml, *.json, not
	// recursive; documents of other kinds are skipped). All are applied and Established before
	// Start returns.
	CRDDirs []string
	// Logf receives progress messages; nil means silent. It is called during Start,
	// [Cluster.StartAPIServer] and [Cluster.Stop] only.
	Logf func(format string, args ...any)
}

// Cluster is a running etcd and kube-apiserver. Its methods are safe for concurrent use.
type Cluster struct {
	dir     string // temporary; holds pki/, etcd/, *.log and kubeconfigs
	logf    func(format string, args ...any)
	etcdBin string
	apiBin  string
	apiArgs []string
	port    int
	token   string // the admin's
	caPEM   []byte
	cfg     *rest.Config
	client  kubernetes.Interface
	// startTook is how long Start took, for TestResources.
	startTook time.Duration

	mu        sync.Mutex
	etcd      *process
	apiserver *process // nil while stopped
	stopped   bool
}

const (
	// serviceCIDR is the Service cluster IP range: only stored in the API, never routed.
	serviceCIDR = "10.96.0.0/16"
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
		crds []*unstructured.Unstructured
		err  error
	}
	crdc := make(chan crdResult, 1)
	go func() {
		crds, err := readCRDs(opts.CRDDirs, logf)
		crdc <- crdResult{crds, err}
	}()
	defer func() {
		if crdc != nil {
			<-crdc // no logf calls after Start returns
		}
	}()
	removeStaleDirs(logf)
	dir, err := os.MkdirTemp("", tempPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("kubecluster: %w", err)
	}
	c = &Cluster{dir: dir, logf: logf, etcdBin: etcdBin, apiBin: apiBin}
	defer func() {
		if err != nil {
			c.Stop()
			c = nil
		}
	}()
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return c, fmt.Errorf("kubecluster: %w", err)
	}
	pki, err := writePKI(filepath.Join(dir, "pki"))
	if err != nil {
		return c, fmt.Errorf("kubecluster: %w", err)
	}
	c.token, c.caPEM = pki.adminToken, pki.caPEM

	etcdURL, err := c.startEtcd(ctx)
	if err != nil {
		return c, err
	}
	c.apiArgs = []string{
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--tls-cert-file", pki.servingCert,
		"--tls-private-key-file", pki.servingKey,
		"--cert-dir", filepath.Join(dir, "pki"), // unused with the files above; never the default /var/run
		"--token-auth-file", pki.tokens,
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", pki.serviceAccountKey,
		"--service-account-signing-key-file", pki.serviceAccountKey,
		"--service-cluster-ip-range", serviceCIDR,
		"--endpoint-reconciler-type", "none",
		"--disable-admission-plugins", "ServiceAccount",
		"--profiling=false",
		// API Priority and Fairness only matters under load; off, the server starts faster and
		// smaller, and there are no FlowSchema objects.
		"--enable-priority-and-fairness=false",
	}
	for attempt := 1; ; attempt++ {
		c.port = freePorts(1)[0]
		c.setRESTConfig()
		err = c.startAPIServer(ctx)
		if err == nil || attempt == startAttempts || !errors.Is(err, errPortTaken) {
			break
		}
		logf("kubecluster: port %d was taken, trying another", c.port)
	}
	if err != nil {
		return c, err
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
		logf("kubecluster: %d CRDs established in %s", len(r.crds), time.Since(crdStart).Round(time.Millisecond))
	}
	c.startTook = time.Since(begin)
	logf("kubecluster: started in %s; KUBECONFIG=%s", c.startTook.Round(time.Millisecond), c.KubeconfigPath())
	return c, nil
}

func (c *Cluster) startEtcd(ctx context.Context) (string, error) {
	var err error
	for attempt := 1; ; attempt++ {
		ports := freePorts(2)
		client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
		peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
		args := []string{
			"--name", "kubecluster",
			"--data-dir", filepath.Join(c.dir, "etcd"),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", "kubecluster=" + peer,
			"--unsafe-no-fsync", // the data is thrown away
			"--log-level", "warn",
		}
		var p *process
		p, err = startProcess("etcd", c.etcdBin, args, filepath.Join(c.dir, "etcd.log"))
		if err != nil {
			return "", err
		}
		c.mu.Lock()
		c.etcd = p
		c.mu.Unlock()
		err = p.waitReady(ctx, func(ctx context.Context) bool {
			return httpOK(ctx, http.DefaultClient, client+"/health")
		})
		if err == nil {
			return client, nil
		}
		_ = p.stop(0)
		if attempt == startAttempts || !errors.Is(err, errPortTaken) {
			return "", err
		}
		c.logf("kubecluster: an etcd port was taken, trying others")
		if err := os.RemoveAll(filepath.Join(c.dir, "etcd")); err != nil {
			return "", fmt.Errorf("kubecluster: %w", err)
		}
	}
}

// startAPIServer starts kube-apiserver with c.apiArgs on c.port and waits until it is ready.
func (c *Cluster) startAPIServer(ctx context.Context) error {
	args := append(c.apiArgs[:len(c.apiArgs):len(c.apiArgs)], "--secure-port", strconv.Itoa(c.port))
	p, err := startProcess("kube-apiserver", c.apiBin, args, filepath.Join(c.dir, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	c.apiserver = p
	rt, err := rest.TransportFor(c.RESTConfig())
	if err != nil {
		return fmt.Errorf("kubecluster: %w", err)
	}
	hc := &http.Client{Transport: rt, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	if err := p.waitReady(ctx, func(ctx context.Context) bool { return httpOK(ctx, hc, c.Server()+"/readyz") }); err != nil {
		_ = p.stop(0)
		c.apiserver = nil
		return err
	}
	return nil
}

func (c *Cluster) setRESTConfig() {
	c.cfg = &rest.Config{
		Host:            c.Server(),
		BearerToken:     c.token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.caPEM},
		UserAgent:       "lbprobe-kubecluster",
		// Tests create objects in bursts; client-go's default of 5 requests/s would throttle them.
		QPS:   100,
		Burst: 200,
	}
}

// Server is the API server's URL, https://127.0.0.1:PORT. The port stays the same across
// [Cluster.StopAPIServer] and [Cluster.StartAPIServer].
func (c *Cluster) Server() string { return "https://127.0.0.1:" + strconv.Itoa(c.port) }

// RESTConfig returns a new copy of the admin's client configuration (a bearer token in group
// system:masters, the cluster's CA, client-side rate limit 100 requests/s).
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.cfg) }

// KubeconfigPath is the path of a kubeconfig file for the admin, with the CA embedded. It is
// removed by [Cluster.Stop].
func (c *Cluster) KubeconfigPath() string { return filepath.Join(c.dir, "kubeconfig") }

// StopAPIServer stops kube-apiserver (SIGTERM, SIGKILL after 15 s) and leaves etcd and its data
// running, to test clients across an API server outage. Stopping a stopped server does nothing.
func (c *Cluster) StopAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver == nil {
		return nil
	}
	err := c.apiserver.stop(stopTimeout)
	c.apiserver = nil
	return err
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
	if c.apiserver != nil {
		return nil
	}
	begin := time.Now()
	if err := c.startAPIServer(ctx); err != nil {
		return err
	}
	c.logf("kubecluster: kube-apiserver restarted in %s", time.Since(begin).Round(time.Millisecond))
	return nil
}

// Stop kills kube-apiserver and etcd and removes the temporary folder with the data, logs and
// kubeconfig files. It may be called more than once.
func (c *Cluster) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	c.stopped = true
	// The data is thrown away, so nothing needs a graceful shutdown.
	if c.apiserver != nil {
		_ = c.apiserver.stop(0)
		c.apiserver = nil
	}
	if c.etcd != nil {
		_ = c.etcd.stop(0)
		c.etcd = nil
	}
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

// freePorts returns n distinct TCP ports that were free on 127.0.0.1 a moment ago.
func freePorts(n int) []int {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(fmt.Sprintf("kubecluster: no free port on 127.0.0.1: %v", err))
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
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

// tail returns about the last n lines of file, indented, for error messages.
func tail(file string, n int) string {
	data, err := os.ReadFile(file)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	return "  " + strings.ReplaceAll(lastLines(string(data), n), "\n", "\n  ")
}
