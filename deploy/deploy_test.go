// Package deploy_test checks the manifests under deploy/: the kustomize base and overlays and the
// Helm chart are rendered with the real tools, validated against a real kube-apiserver (with the
// Gateway API, Cilium and prometheus-operator CRDs installed) by server-side dry-run, checked for
// the invariants lbprobe's deployment relies on (read-only RBAC matching the README, hardened
// containers, the mixin's rules), and one kustomize and one Helm variant are applied for real and
// run against: `kubectl auth can-i` as their ServiceAccount, and lbprobe itself with that
// ServiceAccount's token, which must sync every informer (and must not once the leases
// RoleBinding is gone). image_test.go checks the binary and the Dockerfile.
//
// The working directory is deploy/; the repository root is "..". Everything runs on loopback.
package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"

	"github.com/lbprobe/lbprobe/test/kubecluster"
)

const (
	// renderNamespace is the namespace every variant is rendered for and dry-run in.
	renderNamespace = "lbprobe"
	chartDir        = "helm/lbprobe"
	repoRoot        = ".."
	fieldManager    = "lbprobe-deploy-test"
)

// tmpRoot holds what outlives a single test (the lbprobe binary, Helm's and kubectl's caches);
// removed by TestMain.
var tmpRoot string

func TestMain(m *testing.M) {
	var err error
	tmpRoot, err = os.MkdirTemp("", "lbprobe-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	shared.once.Do(func() {}) // waits for a start in progress, prevents later ones
	if shared.c != nil {
		shared.c.Stop()
	}
	os.RemoveAll(tmpRoot)
	os.Exit(code)
}

func verboseLogf(format string, args ...any) {
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
	}
}

// ---------------------------------------------------------------------------------------------
// The shared API server.

var shared struct {
	once   sync.Once
	c      *kubecluster.Cluster
	mapper meta.RESTMapper
	err    error
}

// cluster returns the package's API server, starting it on first use with the Gateway API,
// Cilium and prometheus-operator CRDs, and with the namespace lbprobe created.
func cluster(t testing.TB) *kubecluster.Cluster {
	t.Helper()
	waited := time.Now()
	defer func() {
		if d := time.Since(waited); d > time.Second {
			t.Logf("waited %s for the shared API server", d.Round(time.Millisecond))
		}
	}()
	shared.once.Do(func() {
		begin := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		shared.err = startCluster(ctx)
		verboseLogf("deploy_test: API server with CRDs and namespace %s ready in %s", renderNamespace, time.Since(begin).Round(time.Millisecond))
	})
	if shared.err != nil {
		t.Fatalf("the shared API server could not start: %v", shared.err)
	}
	return shared.c
}

func startCluster(ctx context.Context) error {
	dirs, err := kubecluster.CRDDirs()
	if err != nil {
		return err
	}
	// MetalLB's too: lbprobe reads them with the RBAC the manifests grant.
	metallb, err := kubecluster.MetalLBCRDDir()
	if err != nil {
		return err
	}
	dirs = append(dirs, metallb)
	out, err := runTool(ctx, filepath.Join(repoRoot, "hack", "crds.sh"), "prometheus-operator")
	if err != nil {
		return err
	}
	promDir := strings.TrimSpace(string(out))
	shared.c, err = kubecluster.Start(ctx, kubecluster.Options{CRDDirs: append(dirs, promDir), Logf: verboseLogf})
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(shared.c.RESTConfig())
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: renderNamespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", renderNamespace, err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(shared.c.RESTConfig())
	if err != nil {
		return err
	}
	shared.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	return nil
}

// ---------------------------------------------------------------------------------------------
// Tools.

var toolPaths sync.Map // name -> string

// tool returns the path of kubectl (kubecluster's, honouring $LBPROBE_KUBE_BIN_DIR) or helm
// (hack/tool.sh), failing the test when it cannot be found.
func tool(t testing.TB, name string) string {
	t.Helper()
	path, err := toolPath(t.Context(), name)
	if err != nil {
		t.Fatalf("finding %s: %v", name, err)
	}
	return path
}

// toolPath is tool without a test, for code that runs inside a sync.Once.
func toolPath(ctx context.Context, name string) (string, error) {
	if p, ok := toolPaths.Load(name); ok {
		return p.(string), nil
	}
	var (
		path string
		err  error
	)
	if name == "kubectl" {
		path, err = kubecluster.Binary(ctx, "kubectl")
	} else {
		var out []byte
		out, err = runTool(ctx, filepath.Join(repoRoot, "hack", "tool.sh"), name)
		path = strings.TrimSpace(string(out))
	}
	if err != nil {
		return "", err
	}
	toolPaths.Store(name, path)
	return path, nil
}

// runTool runs a command and returns its stdout; the error carries stderr (and stdout).
func runTool(ctx context.Context, name string, args ...string) ([]byte, error) {
	return runToolIn(ctx, nil, nil, name, args...)
}

func runToolIn(ctx context.Context, stdin io.Reader, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(),
		// Keep Helm and kubectl away from $HOME.
		"HELM_CACHE_HOME="+filepath.Join(tmpRoot, "helm", "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(tmpRoot, "helm", "config"),
		"HELM_DATA_HOME="+filepath.Join(tmpRoot, "helm", "data"),
	)
	cmd.Env = append(cmd.Env, env...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w\n--- stderr:\n%s\n--- stdout:\n%s",
			filepath.Base(name), strings.Join(args, " "), err, stderr.String(), truncate(stdout.String(), 4000))
	}
	return stdout.Bytes(), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "\n[...]"
}

// ---------------------------------------------------------------------------------------------
// Variants.

// variant is one way of rendering the manifests.
type variant struct {
	name string   // kustomize/<dir> or helm/<values>
	dir  string   // kustomize: the kustomization's folder
	helm []string // helm: the value arguments (-f FILE, --set K=V); nil for kustomize
	// accessOnly: only the ServiceAccount and its RBAC (for lbprobe outside the cluster), no
	// workload.
	accessOnly bool
	// remediation: lease remediation is on, with its RBAC (labelled
	// app.kubernetes.io/component=lease-remediation).
	remediation bool
	// shards: a kustomize variant runs a StatefulSet of this many shards (automatic sharding,
	// --pod); 0: not sharded. A Helm variant's comes from its values (chartValuesOf).
	shards int
}

func (v variant) isHelm() bool { return v.dir == "" }

// customValues reports a Helm variant with a ci/*-values.yaml file, which may change defaults
// such as the Cilium namespace or add rule groups.
func (v variant) customValues() bool { return slices.Contains(v.helm, "-f") }

// kustomizeVariants are the kustomizations under deploy/kustomize.
var kustomizeVariants = []variant{
	{name: "kustomize/base", dir: "kustomize/base"},
	{name: "kustomize/overlays/in-cluster", dir: "kustomize/overlays/in-cluster"},
	{name: "kustomize/overlays/l2-daemonset", dir: "kustomize/overlays/l2-daemonset"},
	{name: "kustomize/overlays/lan-host", dir: "kustomize/overlays/lan-host", accessOnly: true},
	{name: "kustomize/overlays/in-cluster-remediation", dir: "kustomize/overlays/in-cluster-remediation", remediation: true},
	{name: "kustomize/overlays/sharded", dir: "kustomize/overlays/sharded", shards: 3},
	{name: "kustomize/overlays/sharded-remediation", dir: "kustomize/overlays/sharded-remediation", shards: 3, remediation: true},
}

var helmVariantsOnce struct {
	once sync.Once
	vs   []variant
	err  error
}

// helmVariants are the chart with its default values, with each ci/*-values.yaml, and with
// --set mode=daemonset when no ci file renders a DaemonSet.
func helmVariants() ([]variant, error) {
	h := &helmVariantsOnce
	h.once.Do(func() {
		if _, err := os.Stat(filepath.Join(chartDir, "Chart.yaml")); err != nil {
			h.err = fmt.Errorf("no Helm chart at deploy/%s: %w", chartDir, err)
			return
		}
		vs := []variant{{name: "helm/default", helm: []string{}}}
		files, _ := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
		sort.Strings(files)
		for _, f := range files {
			vs = append(vs, variant{name: "helm/ci/" + filepath.Base(f), helm: []string{"-f", f},
				remediation: strings.HasPrefix(filepath.Base(f), "remediation-")})
		}
		daemonset := false
		for _, v := range vs {
			objs, err := renderObjects(v)
			if err != nil {
				continue // reported by TestRender
			}
			daemonset = daemonset || len(ofKind(objs, "DaemonSet")) > 0
		}
		if !daemonset {
			vs = append(vs, variant{name: "helm/mode=daemonset", helm: []string{"--set", "mode=daemonset"}})
		}
		h.vs = vs
	})
	return h.vs, h.err
}

// allVariants are the kustomize variants and the Helm ones; a missing chart fails the test (the
// kustomize variants still run).
func allVariants(t testing.TB) []variant {
	t.Helper()
	hv, err := helmVariants()
	if err != nil {
		t.Errorf("helm: %v", err)
	}
	return append(slices.Clone(kustomizeVariants), hv...)
}

// render renders a variant for namespace (Helm's --namespace; kustomize ignores it).
func render(ctx context.Context, v variant, namespace string) ([]byte, error) {
	name, args := "kubectl", []string{"kustomize", v.dir}
	if v.isHelm() {
		name, args = "helm", append([]string{"template", "lbprobe", chartDir, "--namespace", namespace}, v.helm...)
	}
	path, err := toolPath(ctx, name)
	if err != nil {
		return nil, err
	}
	return runTool(ctx, path, args...)
}

type rendered struct {
	once sync.Once
	objs []*unstructured.Unstructured
	err  error
}

var renders sync.Map // variant name -> *rendered

// renderObjects renders a variant for the namespace lbprobe once per test binary and decodes it.
func renderObjects(v variant) ([]*unstructured.Unstructured, error) {
	r, _ := renders.LoadOrStore(v.name, &rendered{})
	rr := r.(*rendered)
	rr.once.Do(func() {
		begin := time.Now()
		out, err := render(context.Background(), v, renderNamespace)
		if err != nil {
			rr.err = err
			return
		}
		rr.objs, rr.err = decode(out)
		if rr.err != nil {
			rr.err = fmt.Errorf("decoding the output: %w", rr.err)
		}
		verboseLogf("deploy_test: rendered %s: %d objects in %s", v.name, len(rr.objs), time.Since(begin).Round(time.Millisecond))
	})
	return rr.objs, rr.err
}

// mustRender is renderObjects for tests other than TestRender, which reports the failure itself.
func mustRender(t *testing.T, v variant) []*unstructured.Unstructured {
	t.Helper()
	objs, err := renderObjects(v)
	if err != nil {
		t.Fatalf("%s: rendering failed:\n%v", v.name, err)
	}
	return objs
}

// decode splits a multi-document YAML stream into objects (integers stay int64).
func decode(data []byte) ([]*unstructured.Unstructured, error) {
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		j, err := k8syaml.ToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", len(objs)+1, err)
		}
		if t := bytes.TrimSpace(j); len(t) == 0 || string(t) == "null" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			return nil, fmt.Errorf("document %d: %w\n%s", len(objs)+1, err, truncate(string(doc), 500))
		}
		objs = append(objs, u)
	}
}

func ref(u *unstructured.Unstructured) string {
	if ns := u.GetNamespace(); ns != "" {
		return u.GetKind() + " " + ns + "/" + u.GetName()
	}
	return u.GetKind() + " " + u.GetName()
}

func ofKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func isHook(u *unstructured.Unstructured) bool {
	_, ok := u.GetAnnotations()["helm.sh/hook"]
	return ok
}

func fromUnstructured[T any](t *testing.T, v variant, u *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, out, true); err != nil {
		t.Fatalf("%s: %s: %v", v.name, ref(u), err)
	}
	return out
}

// ---------------------------------------------------------------------------------------------
// 1. Rendering.

// TestRender renders every variant (kubectl kustomize, helm template) and lints the chart with
// every values file (helm lint --strict). Every variant must render at least one object.
func TestRender(t *testing.T) {
	t.Parallel()
	for _, v := range allVariants(t) {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			begin := time.Now()
			objs, err := renderObjects(v)
			if err != nil {
				t.Fatalf("%s: rendering failed:\n%v", v.name, err)
			}
			if len(objs) == 0 {
				t.Fatalf("%s: rendered no objects", v.name)
			}
			for _, o := range objs {
				if o.GetKind() == "" || o.GetAPIVersion() == "" || o.GetName() == "" {
					t.Errorf("%s: an object without kind, apiVersion or name: %v", v.name, truncate(fmt.Sprint(o.Object), 300))
				}
			}
			if v.isHelm() {
				args := append([]string{"lint", "--strict", chartDir, "--namespace", renderNamespace}, v.helm...)
				out, err := runTool(t.Context(), tool(t, "helm"), args...)
				if err != nil {
					t.Errorf("%s: helm lint --strict failed:\n%v", v.name, err)
				} else if testing.Verbose() {
					t.Logf("%s: helm lint --strict:\n%s", v.name, strings.TrimSpace(string(out)))
				}
			}
			t.Logf("%s: %d objects (%s)", v.name, len(objs), time.Since(begin).Round(time.Millisecond))
		})
	}
}

// TestRenderRejects renders the chart with values it must refuse and checks that helm template
// fails with the message that names the problem: sharding a DaemonSet (every node must ARP every
// IP), one shard or a fraction of one, sharding without Kubernetes discovery, an unknown mode.
func TestRenderRejects(t *testing.T) {
	t.Parallel()
	fraction := filepath.Join(t.TempDir(), "fraction-values.yaml")
	if err := os.WriteFile(fraction, []byte("sharding:\n  enabled: true\n  shards: 2.5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"daemonset-sharded", []string{"--set", "mode=daemonset", "--set", "sharding.enabled=true"},
			"sharding.enabled with mode: daemonset: the DaemonSet is not sharded"},
		{"one-shard", []string{"--set", "sharding.enabled=true", "--set", "sharding.shards=1"},
			"sharding.shards: 1: shard into at least 2"},
		{"no-shards", []string{"--set", "sharding.enabled=true", "--set", "sharding.shards=0"},
			"sharding.shards: 0: shard into at least 2"},
		{"words", []string{"--set", "sharding.enabled=true", "--set", "sharding.shards=three"},
			`sharding.shards: "three" is not a whole number of shards`},
		{"fraction", []string{"-f", fraction},
			`sharding.shards: "2.5" is not a whole number of shards`},
		{"no-kube", []string{"--set", "sharding.enabled=true", "--set", "kube.enabled=false"},
			"sharding.enabled needs Kubernetes discovery"},
		{"bad-mode", []string{"--set", "mode=statefulset"},
			`mode: "statefulset" is not valid`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"template", "lbprobe", chartDir, "--namespace", renderNamespace}, tc.args...)
			out, err := runTool(t.Context(), tool(t, "helm"), args...)
			if err == nil {
				t.Fatalf("helm template %s rendered (%d bytes), want it to fail with %q", strings.Join(tc.args, " "), len(out), tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("helm template %s failed, but not with %q:\n%v", strings.Join(tc.args, " "), tc.want, err)
			}
		})
	}
}

// ---------------------------------------------------------------------------------------------
// 2. Server-side dry-run.

// applier applies objects with server-side apply and strict field validation, collecting the
// API server's warnings.
type applier struct {
	dyn      dynamic.Interface
	mapper   meta.RESTMapper
	mu       sync.Mutex
	warnings []string
}

func (a *applier) HandleWarningHeader(code int, agent, text string) {
	if code != 299 || text == "" {
		return
	}
	a.mu.Lock()
	a.warnings = append(a.warnings, text)
	a.mu.Unlock()
}

func (a *applier) takeWarnings() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.warnings
	a.warnings = nil
	return w
}

func newApplier(t testing.TB) *applier {
	t.Helper()
	c := cluster(t)
	a := &applier{mapper: shared.mapper}
	cfg := c.RESTConfig()
	cfg.WarningHandler = a
	var err error
	if a.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return a
}

// resource maps an object to its resource client; namespaced objects without a namespace get
// defaultNS, as kubectl apply -n would.
func (a *applier) resource(u *unstructured.Unstructured, defaultNS string) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("the API server does not serve %s: %w", gvk, err)
	}
	if m.Scope.Name() != meta.RESTScopeNameNamespace {
		if u.GetNamespace() != "" {
			return nil, fmt.Errorf("cluster-scoped %s has metadata.namespace %q", gvk.Kind, u.GetNamespace())
		}
		return a.dyn.Resource(m.Resource), nil
	}
	ns := u.GetNamespace()
	if ns == "" {
		ns = defaultNS
	}
	return a.dyn.Resource(m.Resource).Namespace(ns), nil
}

// apply server-side-applies one object (dryRun: nothing is persisted) and returns the API
// server's error and warnings.
func (a *applier) apply(ctx context.Context, u *unstructured.Unstructured, defaultNS string, dryRun bool) ([]string, error) {
	ri, err := a.resource(u, defaultNS)
	if err != nil {
		return nil, err
	}
	data, err := u.MarshalJSON()
	if err != nil {
		return nil, err
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: fieldManager, Force: &force, FieldValidation: "Strict"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	a.takeWarnings()
	_, err = ri.Patch(ctx, u.GetName(), types.ApplyPatchType, data, opts)
	return a.takeWarnings(), err
}

// ensureNamespaces creates, for real, the namespaces objects are in that the variant does not
// create itself (lbprobe exists; a Cilium namespace other than kube-system may not).
func ensureNamespaces(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cluster(t).RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		ns := o.GetNamespace()
		if ns == "" || slices.ContainsFunc(ofKind(objs, "Namespace"), func(u *unstructured.Unstructured) bool { return u.GetName() == ns }) {
			continue
		}
		_, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating namespace %s: %v", ns, err)
		}
	}
}

// TestDryRun sends every rendered object of every variant to the API server with server-side
// apply, dry-run and strict field validation: the Deployment, DaemonSet, RBAC, NetworkPolicy and
// the ServiceMonitor and PrometheusRule (against the CRD schemas) must be accepted without
// warnings.
func TestDryRun(t *testing.T) {
	t.Parallel()
	for _, v := range allVariants(t) {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			objs := mustRender(t, v)
			a := newApplier(t)
			begin := time.Now()
			ensureNamespaces(t, objs)
			for _, o := range objs {
				warnings, err := a.apply(t.Context(), o, renderNamespace, true)
				if err != nil {
					t.Errorf("%s: %s: server-side dry-run rejected it: %v", v.name, ref(o), err)
				}
				for _, w := range warnings {
					t.Errorf("%s: %s: server-side dry-run warning: %s", v.name, ref(o), w)
				}
			}
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.GetKind()]++
			}
			t.Logf("%s: %d objects dry-run in %s: %v", v.name, len(objs), time.Since(begin).Round(time.Millisecond), kinds)
		})
	}
	// Every kind that needs a schema must have been validated by at least one variant of each
	// tool: a chart that renders no ServiceMonitor in any variant proves nothing about it.
	t.Run("coverage", func(t *testing.T) {
		t.Parallel()
		for _, helm := range []bool{false, true} {
			seen := map[string]bool{}
			for _, v := range allVariants(t) {
				if v.isHelm() != helm {
					continue
				}
				objs, err := renderObjects(v)
				if err != nil {
					continue
				}
				for _, o := range objs {
					seen[o.GetKind()] = true
				}
			}
			toolName := map[bool]string{false: "kustomize", true: "helm"}[helm]
			for _, kind := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
				"Deployment", "DaemonSet", "StatefulSet", "Service", "ServiceMonitor", "PrometheusRule", "NetworkPolicy"} {
				if !seen[kind] {
					t.Errorf("%s: no variant renders a %s, so none is validated", toolName, kind)
				}
			}
		}
	})
}

// ---------------------------------------------------------------------------------------------
// 3. Invariants of the rendered objects.

// rbacRow is a row of the README's "RBAC: read-only" table.
type rbacRow struct {
	group     string
	resources []string
	verbs     []string
	cluster   bool // scope "cluster"; else the --cilium.namespace namespace
}

// readmeRBAC parses the README's RBAC table.
func readmeRBAC(t *testing.T) []rbacRow {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(data), "### RBAC: read-only")
	if !ok {
		t.Fatal(`README.md has no "### RBAC: read-only" section`)
	}
	var rows []rbacRow
	for line := range strings.Lines(after) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			break
		}
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "| API group") || strings.HasPrefix(line, "| ---") {
			if len(rows) > 0 && !strings.HasPrefix(line, "|") {
				break
			}
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 4 {
			t.Fatalf("README RBAC table: unexpected row %q", line)
		}
		group := regexp.MustCompile("`([^`]*)`").FindStringSubmatch(cells[0])
		if group == nil {
			t.Fatalf("README RBAC table: no `group` in %q", cells[0])
		}
		row := rbacRow{group: strings.Trim(group[1], `"`), cluster: strings.TrimSpace(cells[3]) == "cluster"}
		for _, r := range strings.Split(cells[1], ",") {
			row.resources = append(row.resources, strings.Trim(strings.TrimSpace(r), "`"))
		}
		for _, r := range strings.Split(cells[2], ",") {
			row.verbs = append(row.verbs, strings.TrimSpace(r))
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		t.Fatal("README RBAC table: no rows")
	}
	return rows
}

// grants maps "group/resource" to its sorted verbs.
type grants map[string][]string

func grantsOf(rules []rbacv1.PolicyRule) grants {
	g := grants{}
	for _, r := range rules {
		for _, group := range r.APIGroups {
			for _, res := range r.Resources {
				k := group + "/" + res
				for _, verb := range r.Verbs {
					if !slices.Contains(g[k], verb) {
						g[k] = append(g[k], verb)
					}
				}
				slices.Sort(g[k])
			}
		}
	}
	return g
}

func readmeGrants(rows []rbacRow, cluster bool) grants {
	g := grants{}
	for _, row := range rows {
		if row.cluster != cluster {
			continue
		}
		for _, res := range row.resources {
			g[row.group+"/"+res] = slices.Sorted(slices.Values(row.verbs))
		}
	}
	return g
}

// mixinGroups returns the groups of mixin/generated/rules.yaml and alerts.yaml, normalized
// through JSON, in that order.
func mixinGroups(t *testing.T) []any {
	t.Helper()
	var groups []any
	for _, f := range []string{"rules.yaml", "alerts.yaml"} {
		data, err := os.ReadFile(filepath.Join(repoRoot, "mixin", "generated", f))
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Groups []any `yaml:"groups"`
		}
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatalf("mixin/generated/%s: %v", f, err)
		}
		if len(doc.Groups) == 0 {
			t.Fatalf("mixin/generated/%s: no groups", f)
		}
		groups = append(groups, normalize(t, doc.Groups).([]any)...)
	}
	return groups
}

func normalize(t *testing.T, v any) any {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func groupName(g any) string {
	m, _ := g.(map[string]any)
	name, _ := m["name"].(string)
	return name
}

// workload is a Deployment or DaemonSet (or another pod-running object) of a variant.
type workload struct {
	obj  *unstructured.Unstructured
	kind string
	spec corev1.PodSpec
	meta metav1.ObjectMeta // the pod template's
}

func workloads(t *testing.T, v variant, objs []*unstructured.Unstructured) []workload {
	t.Helper()
	var out []workload
	for _, o := range objs {
		var tmpl *corev1.PodTemplateSpec
		switch o.GetKind() {
		case "Deployment":
			tmpl = &fromUnstructured[appsv1.Deployment](t, v, o).Spec.Template
		case "DaemonSet":
			tmpl = &fromUnstructured[appsv1.DaemonSet](t, v, o).Spec.Template
		case "StatefulSet":
			tmpl = &fromUnstructured[appsv1.StatefulSet](t, v, o).Spec.Template
		case "Pod":
			p := fromUnstructured[corev1.Pod](t, v, o)
			tmpl = &corev1.PodTemplateSpec{ObjectMeta: p.ObjectMeta, Spec: p.Spec}
		case "Job", "CronJob", "ReplicaSet":
			t.Errorf("%s: %s: unexpected workload kind", v.name, ref(o))
			continue
		default:
			continue
		}
		out = append(out, workload{obj: o, kind: o.GetKind(), spec: tmpl.Spec, meta: tmpl.ObjectMeta})
	}
	return out
}

// checkAccessOnly checks a variant for lbprobe outside the cluster: no workload, Service,
// ServiceMonitor or NetworkPolicy; one ServiceAccount with the same read-only RBAC as the
// workloads'; the PrometheusRule, if any, equal to the mixin's.
func checkAccessOnly(t *testing.T, v variant, objs []*unstructured.Unstructured, ws []workload, rows []rbacRow, groups []any) {
	t.Helper()
	if len(ws) != 0 {
		t.Errorf("%s: renders %s, want no workload", v.name, ref(ws[0].obj))
	}
	for _, kind := range []string{"Service", "ServiceMonitor", "NetworkPolicy", "ConfigMap"} {
		for _, o := range ofKind(objs, kind) {
			t.Errorf("%s: renders %s, want only the ServiceAccount and its RBAC", v.name, ref(o))
		}
	}
	sas := ofKind(objs, "ServiceAccount")
	if len(sas) != 1 {
		t.Fatalf("%s: %d ServiceAccounts, want 1", v.name, len(sas))
	}
	// The ServiceAccount stands in for the workload that would use it.
	w := workload{obj: sas[0], kind: "ServiceAccount", spec: corev1.PodSpec{ServiceAccountName: sas[0].GetName()}}
	checkRBAC(t, v, objs, w, rows, 0)
	checkPrometheusRule(t, v, objs, groups)
}

// TestInvariants checks every variant's objects:
//   - exactly one lbprobe workload (Deployment, or DaemonSet for l2-daemonset and Helm's
//     daemonset mode, or StatefulSet for a sharded variant), every container of which (init containers too) runs with runAsNonRoot
//     (a DaemonSet may instead add exactly NET_RAW), allowPrivilegeEscalation=false,
//     readOnlyRootFilesystem=true, capabilities.drop [ALL], seccompProfile RuntimeDefault, not
//     privileged, resource requests (cpu, memory) and limits (memory), and the lbprobe
//     containers have liveness /-/healthy and readiness /-/ready on a declared port;
//   - a DaemonSet has hostNetwork, NODE_NAME from spec.nodeName and a control-plane toleration;
//   - a sharded variant's StatefulSet has the variant's number of shards as replicas, the
//     --pod=$(POD_NAME) flags with their env from the downward API and the sharding Role
//     (get/list/watch statefulsets in its namespace, nothing more), its remediation one leader
//     Lease per shard; an unsharded variant none of that (checkSharding, checkShardingRBAC);
//   - every Role and ClusterRole rule has verbs in {get, list, watch} and no wildcards; the
//     ClusterRole bound to the workload's ServiceAccount grants exactly the README table's
//     cluster rows, the Role for leases (the table's namespaced row) is in kube-system (the
//     --cilium.namespace), both are bound to that ServiceAccount, which the variant renders;
//   - the PrometheusRule's spec.groups equal mixin/generated/{rules,alerts}.yaml's;
//   - the Service selects the pods, the ServiceMonitor selects the Service and its port, the
//     job label it produces is the mixin's job="lbprobe", the NetworkPolicy selects the pods,
//     and --config.file is a key of a rendered ConfigMap mounted at its folder;
//   - the lbprobe binary accepts the container's args, $(VAR) expanded as the kubelet does, and
//     that config file (--config.check): no unknown flag, no bad regular expression, no unknown
//     config key.
func TestInvariants(t *testing.T) {
	t.Parallel()
	rows := readmeRBAC(t)
	groups := mixinGroups(t)
	bin := lbprobeBinary(t)
	if bin == "" {
		t.Log("no lbprobe binary ($LBPROBE_BINARY unset, go build failed): the containers' args and config are not checked")
	}
	for _, v := range allVariants(t) {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			objs := mustRender(t, v)
			ws := workloads(t, v, objs)
			if v.accessOnly {
				checkAccessOnly(t, v, objs, ws, rows, groups)
				return
			}
			if len(ws) == 0 {
				t.Fatalf("%s: no Deployment or DaemonSet", v.name)
			}
			var main []workload
			for _, w := range ws {
				if !isHook(w.obj) {
					main = append(main, w)
				}
				checkPodSecurity(t, v, w)
			}
			if len(main) != 1 {
				var names []string
				for _, w := range main {
					names = append(names, ref(w.obj))
				}
				t.Fatalf("%s: want exactly one lbprobe workload, got %v", v.name, names)
			}
			w := main[0]
			wantKind := wantWorkloadKind(t, v)
			if w.kind != wantKind {
				t.Errorf("%s: the workload is %s, want a %s", v.name, ref(w.obj), wantKind)
			}
			checkProbes(t, v, w)
			if w.kind == "DaemonSet" {
				checkDaemonSet(t, v, w)
			}
			shards := wantShards(t, v)
			checkSharding(t, v, objs, w, shards)
			checkRBAC(t, v, objs, w, rows, shards)
			checkPrometheusRule(t, v, objs, groups)
			checkWiring(t, v, objs, w, groups)
			if bin != "" {
				checkArgsAndConfig(t, v, objs, w, bin)
			}
		})
	}
}

var missingFileRe = regexp.MustCompile(`: no such file "([^"]+)"`)

// checkArgsAndConfig runs the lbprobe binary with each container's args and --config.check, the
// config file taken from the rendered ConfigMap: lbprobe must accept every flag (kingpin exits 2
// on an unknown one or a bad regular expression) and the configuration, except files that
// another volume of the pod provides. The args' $(VAR) references are expanded first, as the
// kubelet does (podEnv): lbprobe sees --pod=lbprobe-0, not --pod=$(POD_NAME).
func checkArgsAndConfig(t *testing.T, v variant, objs []*unstructured.Unstructured, w workload, bin string) {
	t.Helper()
	for _, c := range w.spec.Containers {
		at := fmt.Sprintf("%s: %s container %s", v.name, ref(w.obj), c.Name)
		if len(c.Command) > 0 {
			t.Errorf("%s: command %v overrides the image's ENTRYPOINT (the lbprobe binary)", at, c.Command)
			continue
		}
		env := podEnv(w, c)
		args := slices.Clone(c.Args)
		for i, a := range args {
			args[i] = expandEnvRefs(a, env)
		}
		for i, a := range args {
			file, ok := strings.CutPrefix(a, "--config.file=")
			if !ok {
				continue
			}
			data, err := configFileData(w, c, objs, file)
			if err != nil {
				t.Errorf("%s: %v", at, err)
				return
			}
			local := filepath.Join(t.TempDir(), filepath.Base(file))
			if err := os.WriteFile(local, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			args[i] = "--config.file=" + local
		}
		args = append(args, "--config.check")
		out, err := exec.CommandContext(t.Context(), bin, args...).CombinedOutput()
		if err == nil {
			continue
		}
		var bad []string
		for line := range strings.Lines(strings.TrimSpace(string(out))) {
			m := missingFileRe.FindStringSubmatch(line)
			if m != nil && slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool {
				return vm.MountPath != "/etc/lbprobe" && strings.HasPrefix(m[1], strings.TrimSuffix(vm.MountPath, "/")+"/")
			}) {
				continue // mounted from another volume in the pod
			}
			if m == nil && strings.HasSuffix(strings.TrimSpace(line), "invalid configuration:") {
				continue
			}
			bad = append(bad, strings.TrimSpace(line))
		}
		if len(bad) > 0 {
			t.Errorf("%s: lbprobe %s: %v\n%s", at, strings.Join(args, " "), err, strings.Join(bad, "\n"))
		}
	}
}

// podEnv is the environment a pod of w would give container c, as far as it is known without a
// cluster: literal values, and the downward API's pod name (<statefulset>-0 for a StatefulSet),
// namespace and node name.
func podEnv(w workload, c corev1.Container) map[string]string {
	name := w.obj.GetName() + "-7d4b9c8f6d-x2x4z" // a Deployment's pod
	switch w.kind {
	case "StatefulSet":
		name = w.obj.GetName() + "-0"
	case "DaemonSet":
		name = w.obj.GetName() + "-x2x4z"
	}
	fields := map[string]string{
		"metadata.name":      name,
		"metadata.namespace": namespaceOr(w.obj, renderNamespace),
		"spec.nodeName":      "node-0",
	}
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = expandEnvRefs(e.Value, env) // an env value may name the ones before it
		case e.ValueFrom.FieldRef != nil:
			if val, ok := fields[e.ValueFrom.FieldRef.FieldPath]; ok {
				env[e.Name] = val
			}
		}
	}
	return env
}

// expandEnvRefs expands $(VAR) in s as the kubelet expands a container's command, args and env:
// $(VAR) of a known VAR becomes its value, $$ becomes $, and anything else stays as it is.
func expandEnvRefs(s string, env map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			if end := strings.IndexByte(s[i+2:], ')'); end >= 0 {
				name := s[i+2 : i+2+end]
				if val, ok := env[name]; ok {
					b.WriteString(val)
				} else {
					b.WriteString(s[i : i+3+end])
				}
				i += 2 + end
				continue
			}
			b.WriteByte('$')
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// configFileData returns the content of the config file at path from the rendered ConfigMap
// mounted at its folder.
func configFileData(w workload, c corev1.Container, objs []*unstructured.Unstructured, path string) (string, error) {
	i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == filepath.Dir(path) })
	if i < 0 {
		return "", fmt.Errorf("nothing is mounted at %s", filepath.Dir(path))
	}
	j := slices.IndexFunc(w.spec.Volumes, func(vol corev1.Volume) bool { return vol.Name == c.VolumeMounts[i].Name })
	if j < 0 || w.spec.Volumes[j].ConfigMap == nil {
		return "", fmt.Errorf("the volume mounted at %s is no ConfigMap", filepath.Dir(path))
	}
	cm := w.spec.Volumes[j].ConfigMap.Name
	for _, u := range ofKind(objs, "ConfigMap") {
		if u.GetName() == cm && namespaceOr(u, renderNamespace) == namespaceOr(w.obj, renderNamespace) {
			data, ok, _ := unstructured.NestedString(u.Object, "data", filepath.Base(path))
			if !ok {
				return "", fmt.Errorf("ConfigMap %s has no key %s", cm, filepath.Base(path))
			}
			return data, nil
		}
	}
	return "", fmt.Errorf("ConfigMap %s is not rendered", cm)
}

// wantWorkloadKind is DaemonSet for the l2-daemonset overlay and for the chart with mode
// daemonset (from --set, the values file, or the chart's values.yaml), StatefulSet for a sharded
// variant, else Deployment.
func wantWorkloadKind(t *testing.T, v variant) string {
	t.Helper()
	if !v.isHelm() {
		switch {
		case strings.Contains(v.dir, "daemonset"):
			return "DaemonSet"
		case v.shards > 0:
			return "StatefulSet"
		}
		return "Deployment"
	}
	switch vals := chartValuesOf(t, v); {
	case vals.Mode == "daemonset":
		return "DaemonSet"
	case vals.Sharding.Enabled:
		return "StatefulSet"
	}
	return "Deployment"
}

// chartValues are the chart values the tests derive their expectations from.
type chartValues struct {
	Mode     string `yaml:"mode"`
	Sharding struct {
		Enabled bool `yaml:"enabled"`
		Shards  int  `yaml:"shards"`
	} `yaml:"sharding"`
}

// chartValuesOf reads the chart's values.yaml, then each -f file and --set of a Helm variant over
// it, as Helm does (for the keys of chartValues only).
func chartValuesOf(t *testing.T, v variant) chartValues {
	t.Helper()
	var vals chartValues
	read := func(file string) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		// Keys absent from the file keep their value.
		if err := yaml.Unmarshal(data, &vals); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	read(filepath.Join(chartDir, "values.yaml"))
	for i := 0; i+1 < len(v.helm); i += 2 {
		switch v.helm[i] {
		case "-f":
			read(v.helm[i+1])
		case "--set":
			for kv := range strings.SplitSeq(v.helm[i+1], ",") {
				key, val, _ := strings.Cut(kv, "=")
				switch key {
				case "mode":
					vals.Mode = val
				case "sharding.enabled":
					vals.Sharding.Enabled = val == "true"
				case "sharding.shards":
					n, err := strconv.Atoi(val)
					if err != nil {
						t.Fatalf("%s: --set %s: %v", v.name, kv, err)
					}
					vals.Sharding.Shards = n
				}
			}
		}
	}
	return vals
}

// wantShards is the number of shards a variant runs, 0 when it is not sharded.
func wantShards(t *testing.T, v variant) int {
	t.Helper()
	if !v.isHelm() {
		return v.shards
	}
	if vals := chartValuesOf(t, v); vals.Sharding.Enabled {
		if vals.Sharding.Shards < 1 {
			t.Fatalf("%s: sharding.enabled with sharding.shards %d", v.name, vals.Sharding.Shards)
		}
		return vals.Sharding.Shards
	}
	return 0
}

func checkPodSecurity(t *testing.T, v variant, w workload) {
	t.Helper()
	psc := w.spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	containers := append(slices.Clone(w.spec.InitContainers), w.spec.Containers...)
	for _, c := range containers {
		at := fmt.Sprintf("%s: %s container %s", v.name, ref(w.obj), c.Name)
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s: no securityContext", at)
			continue
		}
		nonRoot := psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
		if sc.RunAsNonRoot != nil {
			nonRoot = *sc.RunAsNonRoot
		}
		var added []string
		if sc.Capabilities != nil {
			for _, c := range sc.Capabilities.Add {
				added = append(added, string(c))
			}
		}
		switch {
		case w.kind == "DaemonSet" && slices.Equal(added, []string{"NET_RAW"}):
			// ARP needs CAP_NET_RAW in the effective set, which Kubernetes grants only to UID 0.
		case !nonRoot:
			t.Errorf("%s: runAsNonRoot is not true (only a DaemonSet adding exactly NET_RAW may run as root)", at)
		}
		if len(added) > 0 && !(w.kind == "DaemonSet" && slices.Equal(added, []string{"NET_RAW"})) {
			t.Errorf("%s: capabilities.add %v: only a DaemonSet may add, and only NET_RAW", at, added)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: allowPrivilegeEscalation is not false", at)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: readOnlyRootFilesystem is not true", at)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s: privileged", at)
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%s: capabilities.drop is not [ALL]", at)
		}
		seccomp := psc.SeccompProfile
		if sc.SeccompProfile != nil {
			seccomp = sc.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: seccompProfile is not RuntimeDefault (container or pod)", at)
		}
		req, lim := c.Resources.Requests, c.Resources.Limits
		if req.Cpu().IsZero() || req.Memory().IsZero() {
			t.Errorf("%s: resources.requests need cpu and memory, got %v", at, req)
		}
		if len(lim) == 0 || lim.Memory().IsZero() {
			t.Errorf("%s: resources.limits need at least memory, got %v", at, lim)
		}
	}
}

func checkProbes(t *testing.T, v variant, w workload) {
	t.Helper()
	for _, c := range w.spec.Containers {
		at := fmt.Sprintf("%s: %s container %s", v.name, ref(w.obj), c.Name)
		for _, p := range []struct {
			name  string
			probe *corev1.Probe
			path  string
		}{{"livenessProbe", c.LivenessProbe, "/-/healthy"}, {"readinessProbe", c.ReadinessProbe, "/-/ready"}} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("%s: no %s.httpGet", at, p.name)
				continue
			}
			if p.probe.HTTPGet.Path != p.path {
				t.Errorf("%s: %s.httpGet.path %q, want %q", at, p.name, p.probe.HTTPGet.Path, p.path)
			}
			port := p.probe.HTTPGet.Port
			if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool {
				return port.String() == cp.Name || int32(port.IntValue()) == cp.ContainerPort
			}) {
				t.Errorf("%s: %s port %s is none of the container's ports", at, p.name, port.String())
			}
		}
	}
}

func checkDaemonSet(t *testing.T, v variant, w workload) {
	t.Helper()
	at := v.name + ": " + ref(w.obj)
	if !w.spec.HostNetwork {
		t.Errorf("%s: hostNetwork is not true (ARP and the host's routes need the node's network namespace)", at)
	}
	for _, c := range w.spec.Containers {
		i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "NODE_NAME" })
		if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.FieldRef == nil || c.Env[i].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
			t.Errorf("%s: container %s: no NODE_NAME from fieldRef spec.nodeName", at, c.Name)
		}
	}
	if !slices.ContainsFunc(w.spec.Tolerations, func(tol corev1.Toleration) bool {
		return (tol.Key == "node-role.kubernetes.io/control-plane" || tol.Key == "" && tol.Operator == corev1.TolerationOpExists) &&
			(tol.Effect == "" || tol.Effect == corev1.TaintEffectNoSchedule)
	}) {
		t.Errorf("%s: no toleration of node-role.kubernetes.io/control-plane:NoSchedule", at)
	}
}

// ciliumNamespace is the workload's --cilium.namespace (default kube-system).
func ciliumNamespace(w workload) string {
	for _, c := range w.spec.Containers {
		for _, a := range append(slices.Clone(c.Command), c.Args...) {
			if ns, ok := strings.CutPrefix(a, "--cilium.namespace="); ok {
				return ns
			}
		}
	}
	return "kube-system"
}

func namespaceOr(u *unstructured.Unstructured, def string) string {
	if ns := u.GetNamespace(); ns != "" {
		return ns
	}
	return def
}

func bindsSA(subjects []rbacv1.Subject, ns, sa string) bool {
	return slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool {
		return s.Kind == "ServiceAccount" && s.Name == sa && s.Namespace == ns
	})
}

// remediationComponent labels the RBAC of lease remediation.
const remediationComponent = "lease-remediation"

// checkRemediationRBAC checks the write access of lease remediation: only
// in a variant that turns it on, and exactly README's "Lease remediation"
// grants (delete leases in the Cilium namespace, Events, the leader Lease
// in lbprobe's namespace), bound to lbprobe's ServiceAccount. Get and update
// of the leader Lease are restricted to its name, lbprobe-remediation, or with
// shards to one Lease per shard, lbprobe-remediation-shard-0 to -<shards-1>.
// It returns objs without those objects.
func checkRemediationRBAC(t *testing.T, v variant, objs []*unstructured.Unstructured, w workload, shards int) []*unstructured.Unstructured {
	t.Helper()
	var rest, rem []*unstructured.Unstructured
	for _, u := range objs {
		if u.GetLabels()["app.kubernetes.io/component"] == remediationComponent && strings.HasPrefix(u.GetAPIVersion(), "rbac.authorization.k8s.io/") {
			rem = append(rem, u)
		} else {
			rest = append(rest, u)
		}
	}
	on := slices.ContainsFunc(w.spec.Containers, func(c corev1.Container) bool {
		return slices.Contains(c.Args, "--remediate.leases=on") || slices.Contains(c.Args, "--remediate.leases=dry-run")
	})
	if !v.remediation {
		for _, u := range rem {
			t.Errorf("%s: %s: lease remediation's RBAC in a variant without it", v.name, ref(u))
		}
		if on {
			t.Errorf("%s: --remediate.leases is on in a variant that is not opt-in", v.name)
		}
		return rest
	}
	if !on {
		t.Errorf("%s: lease remediation's RBAC without --remediate.leases", v.name)
	}
	wns := namespaceOr(w.obj, renderNamespace)
	cns := ciliumNamespace(w)
	got := map[string]grants{} // "namespace" ("" for cluster) -> grants
	roles := map[string][]rbacv1.PolicyRule{}
	for _, u := range rem {
		switch u.GetKind() {
		case "ClusterRole":
			roles["ClusterRole /"+u.GetName()] = fromUnstructured[rbacv1.ClusterRole](t, v, u).Rules
		case "Role":
			roles["Role "+namespaceOr(u, renderNamespace)+"/"+u.GetName()] = fromUnstructured[rbacv1.Role](t, v, u).Rules
		}
	}
	for _, u := range rem {
		var ref rbacv1.RoleRef
		var subjects []rbacv1.Subject
		ns := ""
		switch u.GetKind() {
		case "ClusterRoleBinding":
			b := fromUnstructured[rbacv1.ClusterRoleBinding](t, v, u)
			ref, subjects = b.RoleRef, b.Subjects
		case "RoleBinding":
			b := fromUnstructured[rbacv1.RoleBinding](t, v, u)
			ref, subjects, ns = b.RoleRef, b.Subjects, namespaceOr(u, renderNamespace)
		default:
			continue
		}
		if !bindsSA(subjects, wns, w.spec.ServiceAccountName) {
			t.Errorf("%s: %s does not bind lbprobe's ServiceAccount", v.name, u.GetName())
		}
		rules, ok := roles[ref.Kind+" "+ns+"/"+ref.Name]
		if !ok {
			t.Errorf("%s: %s binds %s %s, which is not rendered with it", v.name, u.GetName(), ref.Kind, ref.Name)
		}
		if got[ns] == nil {
			got[ns] = grants{}
		}
		for k, verbs := range grantsOf(rules) {
			got[ns][k] = append(got[ns][k], verbs...)
			slices.Sort(got[ns][k])
		}
	}
	want := map[string]grants{
		cns: {"coordination.k8s.io/leases": {"delete"}},
		"":  {"/events": {"create", "list", "patch"}},
		wns: {"coordination.k8s.io/leases": {"create", "get", "update"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: lease remediation grants\n  %v\nwant\n  %v", v.name, got, want)
	}

	// The leader Lease by name: grantsOf does not see resourceNames.
	wantLeases := []string{"lbprobe-remediation"}
	if shards > 0 {
		wantLeases = nil
		for i := range shards {
			wantLeases = append(wantLeases, fmt.Sprintf("lbprobe-remediation-shard-%d", i))
		}
	}
	slices.Sort(wantLeases)
	named := 0
	for key, rules := range roles {
		if !strings.HasPrefix(key, "Role "+wns+"/") {
			continue
		}
		for i, r := range rules {
			if !slices.Contains(r.APIGroups, "coordination.k8s.io") || !slices.Contains(r.Resources, "leases") {
				continue
			}
			names := slices.Sorted(slices.Values(r.ResourceNames))
			switch {
			case slices.Contains(r.Verbs, "get") || slices.Contains(r.Verbs, "update"):
				named++
				if !slices.Equal(names, wantLeases) {
					t.Errorf("%s: %s rule %d: get/update leases %v, want only the leader Lease%s %v", v.name, key, i, names, map[bool]string{false: "", true: "s"}[shards > 0], wantLeases)
				}
			case slices.Contains(r.Verbs, "create") && len(names) > 0:
				t.Errorf("%s: %s rule %d: create restricted to %v: the API server cannot restrict create by name", v.name, key, i, names)
			}
		}
	}
	if named == 0 {
		t.Errorf("%s: no rule grants get/update of the leader Lease in %s", v.name, wns)
	}
	return rest
}

// shardingComponent labels the RBAC of automatic sharding.
const shardingComponent = "sharding"

// checkShardingRBAC checks the RBAC of automatic sharding (--pod): in a sharded
// variant exactly get, list and watch of statefulsets (apps), in the
// workload's namespace only, without resourceNames, bound to lbprobe's
// ServiceAccount and labelled app.kubernetes.io/component=sharding; in any
// other variant, no grant of statefulsets at all. It returns objs without
// the sharding objects.
func checkShardingRBAC(t *testing.T, v variant, objs []*unstructured.Unstructured, w workload, shards int) []*unstructured.Unstructured {
	t.Helper()
	var rest, sh []*unstructured.Unstructured
	for _, u := range objs {
		if u.GetLabels()["app.kubernetes.io/component"] == shardingComponent && strings.HasPrefix(u.GetAPIVersion(), "rbac.authorization.k8s.io/") {
			sh = append(sh, u)
		} else {
			rest = append(rest, u)
		}
	}
	rulesOf := func(u *unstructured.Unstructured) []rbacv1.PolicyRule {
		switch u.GetKind() {
		case "ClusterRole":
			return fromUnstructured[rbacv1.ClusterRole](t, v, u).Rules
		case "Role":
			return fromUnstructured[rbacv1.Role](t, v, u).Rules
		}
		return nil
	}
	// Outside the sharding objects nothing may grant statefulsets, sharded or not.
	for _, u := range rest {
		for i, r := range rulesOf(u) {
			if slices.Contains(r.Resources, "statefulsets") || slices.Contains(r.Resources, "*") && slices.Contains(r.APIGroups, "apps") {
				t.Errorf("%s: %s rule %d grants statefulsets outside the sharding RBAC (app.kubernetes.io/component=%s)", v.name, ref(u), i, shardingComponent)
			}
		}
	}
	if shards == 0 {
		for _, u := range sh {
			t.Errorf("%s: %s: sharding's RBAC in a variant that is not sharded", v.name, ref(u))
		}
		return rest
	}
	wns := namespaceOr(w.obj, renderNamespace)
	roles := map[string][]rbacv1.PolicyRule{} // "Kind ns/name"
	for _, u := range sh {
		switch u.GetKind() {
		case "Role":
			roles["Role "+namespaceOr(u, renderNamespace)+"/"+u.GetName()] = rulesOf(u)
		case "ClusterRole":
			t.Errorf("%s: %s: sharding needs no cluster-wide access, only its StatefulSet's namespace", v.name, ref(u))
		}
	}
	got := map[string]grants{} // namespace -> grants bound to lbprobe's ServiceAccount
	for _, u := range sh {
		switch u.GetKind() {
		case "RoleBinding":
			b := fromUnstructured[rbacv1.RoleBinding](t, v, u)
			ns := namespaceOr(u, renderNamespace)
			if !bindsSA(b.Subjects, wns, w.spec.ServiceAccountName) {
				t.Errorf("%s: %s does not bind lbprobe's ServiceAccount %s/%s", v.name, ref(u), wns, w.spec.ServiceAccountName)
				continue
			}
			rules, ok := roles[b.RoleRef.Kind+" "+ns+"/"+b.RoleRef.Name]
			if !ok {
				t.Errorf("%s: %s binds %s %s, which is not rendered with it", v.name, ref(u), b.RoleRef.Kind, b.RoleRef.Name)
			}
			for i, r := range rules {
				if len(r.ResourceNames) > 0 {
					t.Errorf("%s: Role %s/%s rule %d: resourceNames %v (the contract of --pod: the namespace's statefulsets)", v.name, ns, b.RoleRef.Name, i, r.ResourceNames)
				}
			}
			if got[ns] == nil {
				got[ns] = grants{}
			}
			for k, verbs := range grantsOf(rules) {
				got[ns][k] = slices.Compact(slices.Sorted(slices.Values(append(got[ns][k], verbs...))))
			}
		case "ClusterRoleBinding":
			t.Errorf("%s: %s: sharding needs no cluster-wide access", v.name, ref(u))
		}
	}
	want := map[string]grants{wns: {"apps/statefulsets": {"get", "list", "watch"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: automatic sharding grants lbprobe's ServiceAccount\n  %v\nwant (the StatefulSet's namespace)\n  %v", v.name, got, want)
	}
	return rest
}

// checkSharding checks automatic sharding (deploy/README.md "Sharding"). A sharded variant runs a
// StatefulSet of exactly shards replicas, podManagementPolicy Parallel, whose serviceName is a
// rendered Service of its namespace selecting its pods (and the pods' labels are the workload's);
// its lbprobe container has the args --pod=$(POD_NAME) and --pod-namespace=$(POD_NAMESPACE) and
// POD_NAME and POD_NAMESPACE from the downward API (metadata.name, metadata.namespace), and no
// --shard or --total-shards, which --pod overrides. A kustomize StatefulSet's pod is otherwise
// the base Deployment's. Any other variant has none of these: no StatefulSet, no sharding flag,
// no POD_NAME.
func checkSharding(t *testing.T, v variant, objs []*unstructured.Unstructured, w workload, shards int) {
	t.Helper()
	at := v.name + ": " + ref(w.obj)
	shardFlag := func(a string) bool {
		for _, f := range []string{"--pod", "--pod-namespace", "--shard", "--total-shards"} {
			if a == f || strings.HasPrefix(a, f+"=") {
				return true
			}
		}
		return false
	}
	if shards == 0 {
		if w.kind == "StatefulSet" {
			t.Errorf("%s: a StatefulSet in a variant that is not sharded", at)
		}
		for _, c := range w.spec.Containers {
			for _, a := range c.Args {
				if shardFlag(a) {
					t.Errorf("%s: container %s: %s in a variant that is not sharded", at, c.Name, a)
				}
			}
			if slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "POD_NAME" }) {
				t.Errorf("%s: container %s: POD_NAME in a variant that is not sharded", at, c.Name)
			}
		}
		return
	}
	if w.kind != "StatefulSet" {
		t.Errorf("%s: a sharded variant needs a StatefulSet: the pod's ordinal is its shard", at)
		return
	}
	sts := fromUnstructured[appsv1.StatefulSet](t, v, w.obj)
	if sts.Spec.Replicas == nil || int(*sts.Spec.Replicas) != shards {
		got := "unset"
		if sts.Spec.Replicas != nil {
			got = strconv.Itoa(int(*sts.Spec.Replicas))
		}
		t.Errorf("%s: replicas %s, want %d (the number of shards)", at, got, shards)
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("%s: podManagementPolicy %q, want Parallel: shards do not wait for one another", at, sts.Spec.PodManagementPolicy)
	}
	governed := false
	for _, u := range ofKind(objs, "Service") {
		svc := fromUnstructured[corev1.Service](t, v, u)
		if svc.Name == sts.Spec.ServiceName && namespaceOr(u, renderNamespace) == namespaceOr(w.obj, renderNamespace) &&
			len(svc.Spec.Selector) > 0 && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(w.meta.Labels)) {
			governed = true
		}
	}
	if !governed {
		t.Errorf("%s: serviceName %q is no rendered Service of its namespace selecting its pods", at, sts.Spec.ServiceName)
	}
	fieldEnv := map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
	for _, c := range w.spec.Containers {
		var flags []string
		for _, a := range c.Args {
			if shardFlag(a) {
				flags = append(flags, a)
			}
		}
		if want := []string{"--pod=$(POD_NAME)", "--pod-namespace=$(POD_NAMESPACE)"}; !slices.Equal(flags, want) {
			t.Errorf("%s: container %s: sharding flags %q, want %q", at, c.Name, flags, want)
		}
		for name, path := range fieldEnv {
			var found []corev1.EnvVar
			for _, e := range c.Env {
				if e.Name == name {
					found = append(found, e)
				}
			}
			if len(found) != 1 || found[0].ValueFrom == nil || found[0].ValueFrom.FieldRef == nil || found[0].ValueFrom.FieldRef.FieldPath != path {
				t.Errorf("%s: container %s: want one %s from fieldRef %s (the downward API), got %+v", at, c.Name, name, path, found)
			}
		}
	}
	if !v.isHelm() {
		checkShardedPodIsBase(t, v, sts)
	}
}

// checkShardedPodIsBase checks that a kustomize StatefulSet's pod template is the base
// Deployment's, but for what sharding adds (the --pod flags, POD_NAME, POD_NAMESPACE) and lease
// remediation adds (--remediate.leases): the overlay copies the pod, which must not drift.
func checkShardedPodIsBase(t *testing.T, v variant, sts *appsv1.StatefulSet) {
	t.Helper()
	base, err := renderObjects(kustomizeVariants[0])
	if err != nil {
		t.Fatalf("%s: rendering the base: %v", v.name, err)
	}
	deps := ofKind(base, "Deployment")
	if len(deps) != 1 {
		t.Fatalf("%s: the base renders %d Deployments, want 1", v.name, len(deps))
	}
	want := fromUnstructured[appsv1.Deployment](t, v, deps[0]).Spec.Template
	got := *sts.Spec.Template.DeepCopy()
	for i := range got.Spec.Containers {
		c := &got.Spec.Containers[i]
		c.Args = slices.DeleteFunc(c.Args, func(a string) bool {
			return strings.HasPrefix(a, "--pod=") || strings.HasPrefix(a, "--pod-namespace=") || strings.HasPrefix(a, "--remediate.leases=")
		})
		c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "POD_NAME" || e.Name == "POD_NAMESPACE" })
		if len(c.Env) == 0 {
			c.Env = nil
		}
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("%s: StatefulSet %s/%s's pod template, without what sharding and remediation add, differs from kustomize/base's Deployment's:\n--- got\n%s\n--- want\n%s", v.name, sts.Namespace, sts.Name, g, w)
	}
}

func checkRBAC(t *testing.T, v variant, objs []*unstructured.Unstructured, w workload, rows []rbacRow, shards int) {
	t.Helper()
	objs = checkRemediationRBAC(t, v, objs, w, shards)
	objs = checkShardingRBAC(t, v, objs, w, shards)
	if slices.ContainsFunc(w.spec.Containers, func(c corev1.Container) bool { return slices.Contains(c.Args, "--kube.enabled=false") }) {
		for _, kind := range []string{"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} {
			for _, u := range ofKind(objs, kind) {
				t.Errorf("%s: %s although Kubernetes discovery is off (--kube.enabled=false)", v.name, ref(u))
			}
		}
		return
	}
	wns := namespaceOr(w.obj, renderNamespace)
	sa := w.spec.ServiceAccountName
	if sa == "" || sa == "default" {
		t.Errorf("%s: %s: serviceAccountName %q: lbprobe needs its own ServiceAccount", v.name, ref(w.obj), sa)
	}
	if !slices.ContainsFunc(ofKind(objs, "ServiceAccount"), func(u *unstructured.Unstructured) bool {
		return u.GetName() == sa && namespaceOr(u, renderNamespace) == wns
	}) {
		t.Errorf("%s: ServiceAccount %s/%s (of %s) is not rendered", v.name, wns, sa, ref(w.obj))
	}

	allowed := []string{"get", "list", "watch"}
	roles := map[string][]rbacv1.PolicyRule{} // "Kind ns/name"
	for _, kind := range []string{"ClusterRole", "Role"} {
		for _, u := range ofKind(objs, kind) {
			var rules []rbacv1.PolicyRule
			if kind == "ClusterRole" {
				rules = fromUnstructured[rbacv1.ClusterRole](t, v, u).Rules
			} else {
				rules = fromUnstructured[rbacv1.Role](t, v, u).Rules
			}
			key := kind + " " + namespaceOr(u, "") + "/" + u.GetName()
			if kind == "Role" {
				key = kind + " " + namespaceOr(u, renderNamespace) + "/" + u.GetName()
			}
			roles[key] = rules
			for i, r := range rules {
				for _, verb := range r.Verbs {
					if !slices.Contains(allowed, verb) {
						t.Errorf("%s: %s rule %d: verb %q is not read-only (allowed: %v)", v.name, ref(u), i, verb, allowed)
					}
				}
				for _, x := range slices.Concat(r.APIGroups, r.Resources, r.ResourceNames) {
					if x == "*" {
						t.Errorf("%s: %s rule %d: wildcard", v.name, ref(u), i)
					}
				}
				if len(r.NonResourceURLs) > 0 {
					t.Errorf("%s: %s rule %d: nonResourceURLs %v (discovery and /readyz are readable already)", v.name, ref(u), i, r.NonResourceURLs)
				}
			}
		}
	}

	// The ClusterRoles bound to the ServiceAccount grant exactly the README's cluster rows.
	clusterRules := []rbacv1.PolicyRule{}
	var bound []string
	for _, u := range ofKind(objs, "ClusterRoleBinding") {
		b := fromUnstructured[rbacv1.ClusterRoleBinding](t, v, u)
		if !bindsSA(b.Subjects, wns, sa) {
			continue
		}
		rules, ok := roles["ClusterRole /"+b.RoleRef.Name]
		if b.RoleRef.Kind != "ClusterRole" || !ok {
			t.Errorf("%s: %s binds %s %s, which is not rendered", v.name, ref(u), b.RoleRef.Kind, b.RoleRef.Name)
		}
		bound = append(bound, ref(u))
		clusterRules = append(clusterRules, rules...)
	}
	if len(bound) == 0 {
		t.Errorf("%s: no ClusterRoleBinding binds ServiceAccount %s/%s", v.name, wns, sa)
	}
	if got, want := grantsOf(clusterRules), readmeGrants(rows, true); !reflect.DeepEqual(got, want) {
		t.Errorf("%s: the ClusterRole bound to %s/%s grants\n  %v\nwant the README's RBAC table (cluster rows)\n  %v", v.name, wns, sa, got, want)
	}

	// The Role for leases lives in the Cilium namespace and is bound there.
	cns := ciliumNamespace(w)
	wantNS := readmeGrants(rows, false)
	var leaseRoles []string
	for key, rules := range roles {
		if !strings.HasPrefix(key, "Role ") {
			continue
		}
		ns, name, _ := strings.Cut(strings.TrimPrefix(key, "Role "), "/")
		g := grantsOf(rules)
		if _, ok := g["coordination.k8s.io/leases"]; !ok {
			t.Errorf("%s: Role %s/%s does not grant leases: lbprobe needs no other Role", v.name, ns, name)
			continue
		}
		leaseRoles = append(leaseRoles, key)
		if ns != cns {
			t.Errorf("%s: Role %s/%s for leases is in %q, but lbprobe reads leases in --cilium.namespace %q", v.name, ns, name, ns, cns)
		}
		if !v.customValues() && ns != "kube-system" {
			t.Errorf("%s: Role %s/%s for leases is in %q, want kube-system (Cilium's namespace, lbprobe's default --cilium.namespace)", v.name, ns, name, ns)
		}
		if !reflect.DeepEqual(g, wantNS) {
			t.Errorf("%s: Role %s/%s grants %v, want the README's RBAC table (namespaced rows) %v", v.name, ns, name, g, wantNS)
		}
		boundHere := false
		for _, u := range ofKind(objs, "RoleBinding") {
			b := fromUnstructured[rbacv1.RoleBinding](t, v, u)
			if namespaceOr(u, renderNamespace) == ns && b.RoleRef.Kind == "Role" && b.RoleRef.Name == name && bindsSA(b.Subjects, wns, sa) {
				boundHere = true
			}
		}
		if !boundHere {
			t.Errorf("%s: no RoleBinding in %s binds Role %s to ServiceAccount %s/%s", v.name, ns, name, wns, sa)
		}
	}
	if len(leaseRoles) != 1 {
		t.Errorf("%s: want exactly one Role for leases, got %v", v.name, leaseRoles)
	}
}

func checkPrometheusRule(t *testing.T, v variant, objs []*unstructured.Unstructured, want []any) {
	t.Helper()
	prs := ofKind(objs, "PrometheusRule")
	if len(prs) == 0 {
		if !v.isHelm() {
			t.Errorf("%s: no PrometheusRule", v.name)
		} else {
			t.Logf("%s: no PrometheusRule rendered", v.name)
		}
		return
	}
	if len(prs) > 1 {
		t.Errorf("%s: %d PrometheusRules, want one", v.name, len(prs))
	}
	for _, pr := range prs {
		gs, _, _ := unstructured.NestedSlice(pr.Object, "spec", "groups")
		got, _ := normalize(t, gs).([]any)
		if reflect.DeepEqual(got, want) {
			continue
		}
		byName := func(gs []any) map[string]any {
			m := map[string]any{}
			for _, g := range gs {
				m[groupName(g)] = g
			}
			return m
		}
		gm, wm := byName(got), byName(want)
		var diffs []string
		for _, g := range want {
			n := groupName(g)
			if _, ok := gm[n]; !ok {
				diffs = append(diffs, "missing group "+n)
			} else if !reflect.DeepEqual(gm[n], g) {
				diffs = append(diffs, "group "+n+" differs: "+firstRuleDiff(gm[n], g))
			}
		}
		var mixinOnly []any
		for _, g := range got {
			if _, ok := wm[groupName(g)]; ok {
				mixinOnly = append(mixinOnly, g)
			} else if groupName(g) == "lbprobe-additional" && v.customValues() {
				t.Logf("%s: %s: extra group lbprobe-additional (prometheusRule.additionalRules)", v.name, ref(pr))
			} else {
				diffs = append(diffs, "extra group "+groupName(g))
			}
		}
		if len(diffs) == 0 && reflect.DeepEqual(mixinOnly, want) {
			continue
		}
		if len(diffs) == 0 {
			diffs = append(diffs, "the groups are in another order")
		}
		t.Errorf("%s: %s: spec.groups differ from mixin/generated/rules.yaml + alerts.yaml (run make mixin?):\n  %s",
			v.name, ref(pr), strings.Join(diffs, "\n  "))
	}
}

func firstRuleDiff(got, want any) string {
	gr, _ := got.(map[string]any)["rules"].([]any)
	wr, _ := want.(map[string]any)["rules"].([]any)
	for i := range max(len(gr), len(wr)) {
		if i >= len(gr) || i >= len(wr) || !reflect.DeepEqual(gr[i], wr[i]) {
			gm, _ := at(gr, i).(map[string]any)
			wm, _ := at(wr, i).(map[string]any)
			if gm == nil || wm == nil {
				g, _ := json.Marshal(at(gr, i))
				w, _ := json.Marshal(at(wr, i))
				return fmt.Sprintf("rule %d: got %s, want %s", i, truncate(string(g), 300), truncate(string(w), 300))
			}
			var keys []string
			for k := range gm {
				keys = append(keys, k)
			}
			for k := range wm {
				if _, ok := gm[k]; !ok {
					keys = append(keys, k)
				}
			}
			slices.Sort(keys)
			var d []string
			for _, k := range keys {
				if !reflect.DeepEqual(gm[k], wm[k]) {
					g, _ := json.Marshal(gm[k])
					w, _ := json.Marshal(wm[k])
					d = append(d, fmt.Sprintf("%s: got %s, want %s", k, truncate(string(g), 300), truncate(string(w), 300)))
				}
			}
			name, _ := wm["alert"].(string)
			if name == "" {
				name, _ = wm["record"].(string)
			}
			return fmt.Sprintf("rule %d (%s): %s", i, name, strings.Join(d, "; "))
		}
	}
	return "outside the rules"
}

func at(s []any, i int) any {
	if i < len(s) {
		return s[i]
	}
	return nil
}

var jobSelector = regexp.MustCompile(`job="([^"]*)"`)

func checkWiring(t *testing.T, v variant, objs []*unstructured.Unstructured, w workload, groups []any) {
	t.Helper()
	podLabels := labels.Set(w.meta.Labels)

	// --config.file is in a rendered ConfigMap mounted at its folder.
	for _, c := range w.spec.Containers {
		for _, a := range c.Args {
			if file, ok := strings.CutPrefix(a, "--config.file="); ok {
				if _, err := configFileData(w, c, objs, file); err != nil {
					t.Errorf("%s: %s container %s: --config.file=%s: %v", v.name, ref(w.obj), c.Name, file, err)
				}
			}
		}
	}

	// The Service selects the pods.
	var svc *corev1.Service
	for _, u := range ofKind(objs, "Service") {
		s := fromUnstructured[corev1.Service](t, v, u)
		if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
			svc = s
		}
	}
	if svc == nil {
		t.Errorf("%s: no Service selects the pods of %s", v.name, ref(w.obj))
	}

	// The ServiceMonitor selects that Service and a port of it, and the job label it gives the
	// series is the one the mixin's rules select.
	wantJob := ""
	if len(groups) > 0 {
		b, _ := json.Marshal(groups)
		if m := jobSelector.FindSubmatch(bytes.ReplaceAll(b, []byte(`\"`), []byte(`"`))); m != nil {
			wantJob = string(m[1])
		}
	}
	for _, u := range ofKind(objs, "ServiceMonitor") {
		if svc == nil {
			break
		}
		sel, _, _ := unstructured.NestedMap(u.Object, "spec", "selector")
		var ls metav1.LabelSelector
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(sel, &ls); err != nil {
			t.Errorf("%s: %s: spec.selector: %v", v.name, ref(u), err)
			continue
		}
		s, err := metav1.LabelSelectorAsSelector(&ls)
		if err != nil || s.Empty() || !s.Matches(labels.Set(svc.Labels)) {
			t.Errorf("%s: %s: spec.selector %v does not select Service %s (labels %v)", v.name, ref(u), sel, svc.Name, svc.Labels)
		}
		if nsSel, ok, _ := unstructured.NestedStringSlice(u.Object, "spec", "namespaceSelector", "matchNames"); ok && !slices.Contains(nsSel, namespaceOr(u, renderNamespace)) {
			t.Errorf("%s: %s: namespaceSelector %v misses the Service's namespace", v.name, ref(u), nsSel)
		}
		eps, _, _ := unstructured.NestedSlice(u.Object, "spec", "endpoints")
		for i, ep := range eps {
			port, _ := ep.(map[string]any)["port"].(string)
			if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == port }) {
				t.Errorf("%s: %s: endpoint %d port %q is no port name of Service %s", v.name, ref(u), i, port, svc.Name)
			}
		}
		job := svc.Name
		if jl, _, _ := unstructured.NestedString(u.Object, "spec", "jobLabel"); jl != "" {
			job = svc.Labels[jl]
		}
		if wantJob != "" && job != wantJob {
			t.Errorf("%s: %s: Prometheus will label the series job=%q, but the mixin's rules select job=%q", v.name, ref(u), job, wantJob)
		}
	}

	// The NetworkPolicy applies to the pods.
	for _, u := range ofKind(objs, "NetworkPolicy") {
		sel, _, _ := unstructured.NestedMap(u.Object, "spec", "podSelector")
		var ls metav1.LabelSelector
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(sel, &ls); err != nil {
			t.Errorf("%s: %s: spec.podSelector: %v", v.name, ref(u), err)
			continue
		}
		if s, err := metav1.LabelSelectorAsSelector(&ls); err != nil || !s.Matches(podLabels) {
			t.Errorf("%s: %s: podSelector %v does not select the pods of %s", v.name, ref(u), sel, ref(w.obj))
		}
	}
}
