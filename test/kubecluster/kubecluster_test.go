package kubecluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	testpoll "github.com/lbprobe/lbprobe/test/poll"
)

func TestMain(m *testing.M) {
	gateway, err := GatewayAPICRDDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cilium, err := CiliumCRDDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(Shared(m, Options{CRDDirs: []string{gateway, cilium}, Logf: verboseLogf}))
}

func verboseLogf(format string, args ...any) {
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
	}
}

// The addresses below are only stored in the API, never contacted.
const lbIP = "10.11.80.80"

var (
	gatewayGVR  = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}
	poolV2      = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumloadbalancerippools"}
	poolV2alpha = schema.GroupVersionResource{Group: "cilium.io", Version: "v2alpha1", Resource: "ciliumloadbalancerippools"}
	l2Policy    = schema.GroupVersionResource{Group: "cilium.io", Version: "v2alpha1", Resource: "ciliuml2announcementpolicies"}
)

func clients(t *testing.T, c *Cluster) (kubernetes.Interface, dynamic.Interface) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	return cs, dyn
}

func createLoadBalancer(t *testing.T, cs kubernetes.Interface, ns, name string) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"lbprobe.io/probe": "true"}},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	svc, err := cs.CoreV1().Services(ns).Create(t.Context(), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating Service: %v", err)
	}
	return svc
}

func TestServiceLoadBalancerStatus(t *testing.T) {
	c := Get(t)
	cs, _ := clients(t, c)
	ns := c.Namespace(t)
	svc := createLoadBalancer(t, cs, ns, "web")
	if !strings.HasPrefix(svc.Spec.ClusterIP, "10.96.") || svc.Spec.Ports[0].NodePort == 0 {
		t.Errorf("clusterIP %q, nodePort %d: want both allocated by the API server", svc.Spec.ClusterIP, svc.Spec.Ports[0].NodePort)
	}

	// Nothing assigns the address: the test plays the load-balancer controller.
	patch := fmt.Sprintf(`{"status":{"loadBalancer":{"ingress":[{"ip":%q,"ipMode":"VIP"}]}}}`, lbIP)
	if _, err := cs.CoreV1().Services(ns).Patch(t.Context(), "web", types.MergePatchType, []byte(patch),
		metav1.PatchOptions{}, "status"); err != nil {
		t.Fatalf("patching status: %v", err)
	}
	got, err := cs.CoreV1().Services(ns).Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ing := got.Status.LoadBalancer.Ingress; len(ing) != 1 || ing[0].IP != lbIP {
		t.Errorf("status.loadBalancer.ingress = %+v, want one with IP %s", ing, lbIP)
	}
}

func TestGateway(t *testing.T) {
	c := Get(t)
	_, dyn := clients(t, c)
	ns := c.Namespace(t)
	gw := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1",
		"kind":       "Gateway",
		"metadata":   map[string]any{"name": "public"},
		"spec": map[string]any{
			"gatewayClassName": "test",
			"listeners": []any{
				map[string]any{"name": "https", "port": int64(443), "protocol": "HTTPS", "hostname": "shop.example.test",
					"tls": map[string]any{"certificateRefs": []any{map[string]any{"name": "shop-tls"}}}},
			},
		},
	}}
	if _, err := dyn.Resource(gatewayGVR).Namespace(ns).Create(t.Context(), gw, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating Gateway: %v", err)
	}
	patch := fmt.Sprintf(`{"status":{"addresses":[{"type":"IPAddress","value":%q}]}}`, lbIP)
	if _, err := dyn.Resource(gatewayGVR).Namespace(ns).Patch(t.Context(), "public", types.MergePatchType,
		[]byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatalf("patching Gateway status: %v", err)
	}
	got, err := dyn.Resource(gatewayGVR).Namespace(ns).Get(t.Context(), "public", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	addrs, _, _ := unstructured.NestedSlice(got.Object, "status", "addresses")
	listeners, _, _ := unstructured.NestedSlice(got.Object, "spec", "listeners")
	if len(addrs) != 1 || addrs[0].(map[string]any)["value"] != lbIP || len(listeners) != 1 {
		t.Errorf("Gateway read back: addresses %v, listeners %v", addrs, listeners)
	}
}

func TestCiliumCRDs(t *testing.T) {
	c := Get(t)
	_, dyn := clients(t, c)
	name := c.Namespace(t) // cluster-scoped objects: a fresh namespace name is a fresh object name
	pool := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2",
		"kind":       "CiliumLoadBalancerIPPool",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"blocks":          []any{map[string]any{"cidr": "10.11.80.0/24"}, map[string]any{"start": "10.11.81.10", "stop": "10.11.81.20"}},
			"serviceSelector": map[string]any{"matchLabels": map[string]any{"lbprobe.io/probe": "true"}},
		},
	}}
	if _, err := dyn.Resource(poolV2).Create(t.Context(), pool, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating pool: %v", err)
	}
	status := `{"status":{"conditions":[{"type":"cilium.io/IPsAvailable","status":"True","reason":"Counted",` +
		`"message":"267","lastTransitionTime":"2026-01-02T03:04:05Z"}]}}`
	if _, err := dyn.Resource(poolV2).Patch(t.Context(), name, types.MergePatchType, []byte(status),
		metav1.PatchOptions{}, "status"); err != nil {
		t.Fatalf("patching pool status: %v", err)
	}

	got, err := dyn.Resource(poolV2alpha).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading pool as v2alpha1: %v", err)
	}
	blocks, _, _ := unstructured.NestedSlice(got.Object, "spec", "blocks")
	disabled, found, _ := unstructured.NestedBool(got.Object, "spec", "disabled")
	conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
	if got.GetAPIVersion() != "cilium.io/v2alpha1" || len(blocks) != 2 || !found || disabled || len(conds) != 1 {
		t.Errorf("pool as v2alpha1: apiVersion %s, blocks %v, disabled %v (set: %v), conditions %v",
			got.GetAPIVersion(), blocks, disabled, found, conds)
	}

	bad := pool.DeepCopy()
	bad.SetName(name + "-bad")
	_ = unstructured.SetNestedField(bad.Object, "Maybe", "spec", "allowFirstLastIPs")
	if _, err := dyn.Resource(poolV2).Create(t.Context(), bad, metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Errorf("pool with allowFirstLastIPs: Maybe: got %v, want Invalid", err)
	}

	policy := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2alpha1",
		"kind":       "CiliumL2AnnouncementPolicy",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"serviceSelector": map[string]any{"matchLabels": map[string]any{"lbprobe.io/probe": "true"}},
			"nodeSelector": map[string]any{"matchExpressions": []any{
				map[string]any{"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}}},
			"interfaces":      []any{"^eth[0-9]+"},
			"loadBalancerIPs": true,
			"externalIPs":     false,
		},
	}}
	if _, err := dyn.Resource(l2Policy).Create(t.Context(), policy, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating L2 announcement policy: %v", err)
	}
}

func TestRBAC(t *testing.T) {
	c := Get(t)
	// The admin is a bearer token alone (test/lab writes kubeconfigs from it), and it works.
	if cfg := c.RESTConfig(); cfg.BearerToken == "" || len(cfg.CertData) > 0 || cfg.CertFile != "" {
		t.Errorf("admin config: token %t, client certificate %t: want a token only", cfg.BearerToken != "", len(cfg.CertData) > 0 || cfg.CertFile != "")
	}
	cs, _ := clients(t, c)
	ns := c.Namespace(t)
	path, err := c.TokenKubeconfig(t.Context(), ns, "lbprobe")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	user := "system:serviceaccount:" + ns + ":lbprobe"
	_, err = sa.CoreV1().Services(ns).List(t.Context(), metav1.ListOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), user) {
		t.Fatalf("ServiceAccount listing Services: got %v, want Forbidden for %s", err, user)
	}
	if _, err := cs.CoreV1().Services(ns).List(t.Context(), metav1.ListOptions{}); err != nil {
		t.Fatalf("admin listing Services: %v", err)
	}

	// Granted a Role, the same token may list. (Not the bootstrap "view" ClusterRole: it is
	// aggregated, and only kube-controller-manager fills in the rules of aggregated roles.)
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "service-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch"}}},
	}
	if _, err := cs.RbacV1().Roles(ns).Create(t.Context(), role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "lbprobe-service-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "lbprobe", Namespace: ns}},
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(t.Context(), rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The authorizer reads roles from an informer: the grant takes effect within moments.
	eventually(t, 10*time.Second, func() error {
		_, err := sa.CoreV1().Services(ns).List(t.Context(), metav1.ListOptions{})
		return err
	})
}

// TestRestart stops and starts the API server; it must not run in parallel with other tests.
func TestRestart(t *testing.T) {
	c := Get(t)
	cs, _ := clients(t, c)
	ns := c.Namespace(t)
	createLoadBalancer(t, cs, ns, "kept")
	server := c.Server()
	path, err := c.TokenKubeconfig(t.Context(), ns, "before-restart")
	if err != nil {
		t.Fatal(err)
	}
	// An open watch, as informers keep, must not hold up the stop until SIGKILL.
	w, err := cs.CoreV1().Services(ns).Watch(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	begin := time.Now()
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Since(begin)
	if stopped >= stopTimeout {
		t.Errorf("kube-apiserver with an open watch stopped after %s: killed after the grace of %s", stopped, stopTimeout)
	}
	if _, err := cs.CoreV1().Services(ns).Get(t.Context(), "kept", metav1.GetOptions{}); err == nil {
		t.Fatal("Get succeeded with the API server stopped")
	}
	begin = time.Now()
	if err := c.StartAPIServer(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver stopped in %s, started again in %s", stopped.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
	if c.Server() != server {
		t.Errorf("server %s after restart, was %s", c.Server(), server)
	}
	// The clientset made before the restart reconnects, and etcd kept the data.
	if _, err := cs.CoreV1().Services(ns).Get(t.Context(), "kept", metav1.GetOptions{}); err != nil {
		t.Fatalf("Service after restart: %v", err)
	}
	// A token issued before the restart still authenticates (Forbidden, not Unauthorized): the
	// signing key is kept.
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sa.CoreV1().Services(ns).Get(t.Context(), "kept", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("token from before the restart: got %v, want Forbidden", err)
	}
}

func TestStartFailure(t *testing.T) {
	etcd, err := Binary(t.Context(), "etcd")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(etcd, filepath.Join(bin, "etcd")); err != nil {
		t.Fatal(err)
	}
	apiServer, err := Binary(t.Context(), "kube-apiserver")
	if err != nil {
		t.Fatal(err)
	}
	// It tells its flags like the real one, and fails when started.
	script := fmt.Sprintf("#!/bin/sh\n[ \"$1\" = --help ] && exec %s --help\necho 'refusing to start: test-marker-81' >&2\nexit 3\n", shellQuote(apiServer))
	if err := os.WriteFile(filepath.Join(bin, "kube-apiserver"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(BinDirEnv, bin)
	c, err := Start(t.Context(), Options{})
	if c != nil || err == nil || !strings.Contains(err.Error(), "test-marker-81") || !strings.Contains(err.Error(), "kube-apiserver.log") {
		t.Fatalf("Start with a failing kube-apiserver: %v, want an error with the end of its log", err)
	}
	t.Log(err)

	t.Setenv(BinDirEnv, t.TempDir())
	if _, err := Start(t.Context(), Options{}); err == nil || !strings.Contains(err.Error(), BinDirEnv) {
		t.Fatalf("Start with no binaries: %v, want an error naming $%s", err, BinDirEnv)
	}
}

// eventually polls f every 50 ms until it returns nil, failing the test
// with f's last error once timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	if err := testpoll.Until(t.Context(), timeout, 50*time.Millisecond, f); err != nil {
		t.Fatal(err)
	}
}

func TestReadCRDs(t *testing.T) {
	const crd = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.test
spec:
  group: example.test
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object}}
`
	const policy = `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: widgets
`
	folder := func(files map[string]string) string {
		dir := t.TempDir()
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	missing := filepath.Join(t.TempDir(), "missing")
	noCRD := folder(map[string]string{"policy.yaml": policy, "crd.txt": crd})
	broken := folder(map[string]string{"broken.yaml": "kind: [CustomResourceDefinition\n"})
	for _, tc := range []struct {
		name    string
		dirs    []string
		want    []string // CRD names that must be among those read
		wantErr []string // substrings of the error
	}{
		{"mixed documents", []string{folder(map[string]string{"all.yaml": crd + "---\n" + policy, "README.md": "# CRDs"})}, []string{"widgets.example.test"}, nil},
		{"json", []string{folder(map[string]string{"crd.json": `{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"gadgets.example.test"},"spec":{"group":"example.test","scope":"Cluster","names":{"plural":"gadgets","kind":"Gadget"},"versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object"}}}]}}`})}, []string{"gadgets.example.test"}, nil},
		{"missing folder", []string{missing}, nil, []string{"Options.CRDDirs", missing}},
		{"no CRD", []string{noCRD}, nil, []string{"Options.CRDDirs", "no CustomResourceDefinition in " + noCRD}},
		{"broken YAML", []string{broken}, nil, []string{"Options.CRDDirs", broken}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			crds, err := readCRDs(tc.dirs)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("read %d CRDs, want an error", len(crds))
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			names := map[string]bool{}
			for _, c := range crds {
				names[c.Name] = true
			}
			for _, want := range tc.want {
				if !names[want] {
					t.Errorf("CRD %s not read; got %v", want, names)
				}
			}
		})
	}
}
