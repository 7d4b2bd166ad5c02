package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/lbprobe/lbprobe/test/lbprobebin"
	"github.com/lbprobe/lbprobe/test/poll"
)

// applyCase is a variant applied for real into a namespace of its own.
type applyCase struct {
	name string
	// render returns the variant's objects for namespace ns.
	render func(t *testing.T, ns string) []*unstructured.Unstructured
}

var applyCases = []applyCase{
	{
		// The overlay as a resource of a kustomization that moves it to the test namespace and
		// suffixes the names (the ClusterRole and the kube-system Role are shared by all
		// namespaces), keeping the leases Role and RoleBinding in kube-system.
		name: "kustomize/overlays/in-cluster",
		render: func(t *testing.T, ns string) []*unstructured.Unstructured {
			return renderKustomizeInto(t, "kustomize/overlays/in-cluster", ns, "-"+ns[len(ns)-5:])
		},
	},
	{
		name: "helm/default",
		render: func(t *testing.T, ns string) []*unstructured.Unstructured {
			if _, err := os.Stat(filepath.Join(chartDir, "Chart.yaml")); err != nil {
				t.Fatalf("no Helm chart at deploy/%s: %v", chartDir, err)
			}
			out, err := render(t.Context(), variant{name: "helm/default", helm: []string{}}, ns)
			if err != nil {
				t.Fatalf("helm template --namespace %s: %v", ns, err)
			}
			objs, err := decode(out)
			if err != nil {
				t.Fatal(err)
			}
			return objs
		},
	},
	{
		// A release name of its own: its ClusterRole and binding must not be helm/default's.
		name: "helm/ci/sharded-values.yaml",
		render: func(t *testing.T, ns string) []*unstructured.Unstructured {
			out, err := runTool(t.Context(), tool(t, "helm"), "template", "lbprobe-sharded", chartDir, "--namespace", ns,
				"-f", filepath.Join(chartDir, "ci", "sharded-values.yaml"))
			if err != nil {
				t.Fatalf("helm template --namespace %s: %v", ns, err)
			}
			objs, err := decode(out)
			if err != nil {
				t.Fatal(err)
			}
			return objs
		},
	},
}

const wrapperKustomization = `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %q
nameSuffix: %q
patches:
  - target: {kind: Namespace}
    patch: |-
      $patch: delete
      apiVersion: v1
      kind: Namespace
      metadata:
        name: unused
transformers:
  - |-
    apiVersion: builtin
    kind: NamespaceTransformer
    metadata:
      name: test-namespace
      namespace: %q
    setRoleBindingSubjects: allServiceAccounts
  - |-
    apiVersion: builtin
    kind: PatchTransformer
    metadata:
      name: leases-stay-in-kube-system
    target:
      group: rbac.authorization.k8s.io
      kind: ^(Role|RoleBinding)$
    patch: |-
      - op: replace
        path: /metadata/namespace
        value: kube-system
`

func renderKustomizeInto(t *testing.T, dir, ns, suffix string) []*unstructured.Unstructured {
	t.Helper()
	tmp := t.TempDir()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(tmp, abs) // kustomize refuses absolute resource paths
	if err != nil {
		t.Fatal(err)
	}
	k := fmt.Sprintf(wrapperKustomization, rel, suffix, ns)
	if err := os.WriteFile(filepath.Join(tmp, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t.Context(), tool(t, "kubectl"), "kustomize", tmp)
	if err != nil {
		t.Fatalf("kustomize of %s into namespace %s:\n%v\n--- kustomization.yaml:\n%s", dir, ns, err, k)
	}
	objs, err := decode(out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestApply applies one kustomize and two Helm variants (the default, and sharded) for real, each
// into a namespace of its own, and checks the RBAC they grant their ServiceAccount:
//   - kubectl auth can-i --as the ServiceAccount: yes for get/list/watch of every resource of
//     the README's RBAC table (leases in kube-system only); no for create/update/patch/delete of
//     services, leases, gateways, pods and secrets, for get/list secrets, list pods, and list
//     leases in other namespaces; statefulsets: get/list/watch in its own namespace only and only
//     when sharded, never create/update/patch/delete;
//   - sharded: lbprobe run with --pod=<statefulset>-1 and the ServiceAccount's token serves shard
//     1 of the StatefulSet's replicas (lbprobe_shard_info) and follows a scale; without the
//     sharding RoleBinding it refuses to start;
//   - lbprobe run with the ServiceAccount's token becomes ready, reports every resource enabled
//     and synced with no watch errors, and logs nothing forbidden;
//   - negative control: without the leases RoleBinding, can-i says no and a fresh lbprobe does
//     not become ready and counts watch errors for leases within 15 s.
func TestApply(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	rows := readmeRBAC(t)
	bin := lbprobeBinary(t)
	for _, tc := range applyCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := c.Namespace(t)
			begin := time.Now()
			var objs []*unstructured.Unstructured
			for _, o := range tc.render(t, ns) {
				if !isHook(o) {
					objs = append(objs, o)
				}
			}
			slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int { // namespaces first
				return boolInt(b.GetKind() == "Namespace") - boolInt(a.GetKind() == "Namespace")
			})
			a := newApplier(t)
			for _, o := range objs {
				warnings, err := a.apply(t.Context(), o, ns, false)
				if err != nil {
					t.Fatalf("%s: applying %s: %v", tc.name, ref(o), err)
				}
				for _, w := range warnings {
					t.Errorf("%s: applying %s: warning: %s", tc.name, ref(o), w)
				}
			}
			t.Logf("%s: applied %d objects into namespace %s in %s", tc.name, len(objs), ns, time.Since(begin).Round(time.Millisecond))

			v := variant{name: tc.name}
			ws := workloads(t, v, objs)
			if len(ws) != 1 {
				t.Fatalf("%s: want one workload, got %d", tc.name, len(ws))
			}
			saNS, sa := namespaceOr(ws[0].obj, ns), ws[0].spec.ServiceAccountName
			as := "system:serviceaccount:" + saNS + ":" + sa

			// The leases RoleBinding, removed by the negative control.
			var leaseBinding *unstructured.Unstructured
			for _, u := range ofKind(objs, "RoleBinding") {
				b := fromUnstructured[rbacv1.RoleBinding](t, v, u)
				if u.GetNamespace() == "kube-system" && bindsSA(b.Subjects, saNS, sa) {
					leaseBinding = u
				}
			}
			if leaseBinding == nil {
				t.Fatalf("%s: no RoleBinding in kube-system binds %s", tc.name, as)
			}

			sharded := ws[0].kind == "StatefulSet"
			t.Run("can-i", func(t *testing.T) {
				begin := time.Now()
				checks := append(canIChecks(rows, ns), shardingCanIChecks(ns, sharded)...)
				type result struct {
					got bool
					err error
				}
				results := make([]result, len(checks))
				var wg sync.WaitGroup
				sem := make(chan struct{}, 3) // kubectl starts in ~0.1 s of CPU; two cores
				for i, ch := range checks {
					wg.Go(func() {
						sem <- struct{}{}
						defer func() { <-sem }()
						got, err := canI(t, as, ch.verb, ch.resource, ch.scope...)
						results[i] = result{got, err}
					})
				}
				wg.Wait()
				for i, ch := range checks {
					got, err := results[i].got, results[i].err
					if err != nil {
						t.Errorf("%s: %v", tc.name, err)
					} else if got != ch.want {
						t.Errorf("%s: kubectl auth can-i %s %s %s --as=%s: %v, want %v", tc.name, ch.verb, ch.resource, strings.Join(ch.scope, " "), as, yesNo(got), yesNo(ch.want))
					}
				}
				t.Logf("%s: %d can-i checks as %s in %s", tc.name, len(checks), as, time.Since(begin).Round(time.Millisecond))
			})

			kubeconfig, err := c.TokenKubeconfig(t.Context(), saNS, sa)
			if err != nil {
				t.Fatal(err)
			}
			t.Run("lbprobe", func(t *testing.T) {
				if bin == "" {
					t.Skip("no lbprobe binary: $LBPROBE_BINARY is unset and go build failed (see TestBinary)")
				}
				p := startLBProbe(t, bin, kubeconfig)
				begin := time.Now()
				if err := p.waitReady(t.Context(), 30*time.Second); err != nil {
					t.Fatalf("%s: lbprobe as %s: %v", tc.name, as, err)
				}
				t.Logf("%s: lbprobe as %s ready after %s", tc.name, as, time.Since(begin).Round(time.Millisecond))
				m, err := p.scrape(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				for _, res := range readmeResources(rows) {
					if got, ok := m["lbprobe_kubernetes_resource_enabled"][res]; !ok || got != 1 {
						t.Errorf("%s: lbprobe_kubernetes_resource_enabled{resource=%q} = %v (present %v), want 1", tc.name, res, got, ok)
					}
					if got, ok := m["lbprobe_kubernetes_synced"][res]; !ok || got != 1 {
						t.Errorf("%s: lbprobe_kubernetes_synced{resource=%q} = %v (present %v), want 1", tc.name, res, got, ok)
					}
				}
				for name, want := range map[string]float64{"lbprobe_kubernetes_resource_enabled": 1, "lbprobe_kubernetes_synced": 1, "lbprobe_kubernetes_watch_errors_total": 0} {
					if len(m[name]) == 0 {
						t.Errorf("%s: no %s series", tc.name, name)
					}
					for res, got := range m[name] {
						if got != want {
							t.Errorf("%s: %s{resource=%q} = %v, want %v", tc.name, name, res, got, want)
						}
					}
				}
				if log := p.Logs(); strings.Contains(strings.ToLower(log), "forbidden") {
					t.Errorf("%s: lbprobe's log mentions forbidden:\n%s", tc.name, log)
				}
				p.Stop()
			})

			if sharded {
				t.Run("sharding", func(t *testing.T) {
					checkAutoSharding(t, a, bin, kubeconfig, as, ws[0], objs)
				})
			}

			t.Run("negative-control", func(t *testing.T) {
				begin := time.Now()
				if err := a.delete(t.Context(), leaseBinding); err != nil {
					t.Fatalf("deleting %s: %v", ref(leaseBinding), err)
				}
				// The API server's RBAC authorizer learns of the deletion through its informer:
				// poll until it says no, before lbprobe starts (else lbprobe could still list).
				err := poll.Until(t.Context(), 10*time.Second, 200*time.Millisecond, func() error {
					got, err := canI(t, as, "list", "leases.coordination.k8s.io", "-n", "kube-system")
					if err == nil && !got {
						return nil
					}
					return fmt.Errorf("%v (err %v), want no", yesNo(got), err)
				})
				if err != nil {
					t.Fatalf("%s: without %s, can-i list leases -n kube-system: %v", tc.name, ref(leaseBinding), err)
				}
				if bin == "" {
					t.Skip("no lbprobe binary: $LBPROBE_BINARY is unset and go build failed (see TestBinary)")
				}
				p := startLBProbe(t, bin, kubeconfig)
				var errs, synced float64
				err = poll.Until(t.Context(), 15*time.Second, 200*time.Millisecond, func() error {
					if ready, err := p.ready(t.Context()); err != nil {
						t.Fatal(err)
					} else if ready {
						t.Fatalf("%s: lbprobe became ready without the leases RoleBinding: the RBAC check cannot fail\n%s", tc.name, p.Logs())
					}
					m, err := p.scrape(t.Context())
					if err != nil {
						t.Fatal(err)
					}
					errs, synced = m["lbprobe_kubernetes_watch_errors_total"]["leases"], m["lbprobe_kubernetes_synced"]["leases"]
					if errs > 0 && strings.Contains(p.Logs(), "forbidden") {
						return nil
					}
					return fmt.Errorf("no watch error for leases (errors %v, synced %v)", errs, synced)
				})
				if err != nil {
					t.Fatalf("%s: without the leases RoleBinding, lbprobe: %v; log:\n%s", tc.name, err, p.Logs())
				}
				if synced != 0 {
					t.Errorf("%s: lbprobe_kubernetes_synced{resource=\"leases\"} = %v without the RoleBinding, want 0", tc.name, synced)
				}
				t.Logf("%s: without %s lbprobe is not ready and counted %v watch errors for leases after %s",
					tc.name, ref(leaseBinding), errs, time.Since(begin).Round(time.Millisecond))
				p.Stop()
			})
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// readmeResources are the resources of the README's RBAC table: the resource label values of
// lbprobe_kubernetes_*.
func readmeResources(rows []rbacRow) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.resources...)
	}
	return out
}

type canICheck struct {
	verb, resource string
	scope          []string // -A or -n NS
	want           bool
}

func canIChecks(rows []rbacRow, ns string) []canICheck {
	all := []string{"-A"}
	inNS := func(ns string) []string { return []string{"-n", ns} }
	qualified := func(group, res string) string {
		if group == "" {
			return res
		}
		return res + "." + group
	}
	var checks []canICheck
	for _, row := range rows {
		for _, res := range row.resources {
			r := qualified(row.group, res)
			for _, verb := range row.verbs {
				if row.cluster {
					checks = append(checks, canICheck{verb, r, all, true})
				} else {
					checks = append(checks, canICheck{verb, r, inNS("kube-system"), true})
				}
			}
			if !row.cluster {
				checks = append(checks,
					canICheck{"list", r, inNS(ns), false},
					canICheck{"list", r, inNS("default"), false},
					canICheck{"list", r, all, false})
			}
		}
	}
	for _, target := range []struct {
		res   string
		scope []string
	}{
		{"services", all}, {"leases.coordination.k8s.io", inNS("kube-system")}, {"gateways.gateway.networking.k8s.io", all},
		{"pods", all}, {"secrets", all},
	} {
		for _, verb := range []string{"create", "update", "patch", "delete"} {
			checks = append(checks, canICheck{verb, target.res, target.scope, false})
		}
	}
	for _, scope := range [][]string{all, inNS("kube-system"), inNS(ns)} {
		checks = append(checks, canICheck{"get", "secrets", scope, false})
	}
	checks = append(checks, canICheck{"list", "secrets", all, false}, canICheck{"list", "pods", all, false})
	return checks
}

// shardingCanIChecks are the checks of automatic sharding's access: get, list and watch
// statefulsets in the workload's namespace when sharded, and nothing else of statefulsets.
func shardingCanIChecks(ns string, sharded bool) []canICheck {
	const res = "statefulsets.apps"
	var checks []canICheck
	for _, verb := range []string{"get", "list", "watch"} {
		checks = append(checks, canICheck{verb, res, []string{"-n", ns}, sharded})
	}
	for _, verb := range []string{"create", "update", "patch", "delete"} {
		checks = append(checks, canICheck{verb, res, []string{"-n", ns}, false})
	}
	return append(checks,
		canICheck{"list", res, []string{"-n", "default"}, false},
		canICheck{"list", res, []string{"-n", "kube-system"}, false},
		canICheck{"list", res, []string{"-A"}, false})
}

// checkAutoSharding runs lbprobe in automatic mode as the applied variant's ServiceAccount (as,
// kubeconfig), as pod 1 of its StatefulSet w: it must serve shard 1 of the StatefulSet's replicas,
// follow a scale to 2 through its watch, and, without the sharding RoleBinding, refuse to start.
func checkAutoSharding(t *testing.T, a *applier, bin, kubeconfig, as string, w workload, objs []*unstructured.Unstructured) {
	t.Helper()
	if bin == "" {
		t.Skip("no lbprobe binary: $LBPROBE_BINARY is unset and go build failed (see TestBinary)")
	}
	ns, name := w.obj.GetNamespace(), w.obj.GetName()
	replicas, _, _ := unstructured.NestedInt64(w.obj.Object, "spec", "replicas")
	if replicas < 2 {
		t.Fatalf("StatefulSet %s/%s: replicas %d, want at least 2", ns, name, replicas)
	}
	podArgs := []string{"--pod=" + name + "-1", "--pod-namespace=" + ns}
	p := startLBProbe(t, bin, kubeconfig, podArgs...)
	if err := p.waitReady(t.Context(), 30*time.Second); err != nil {
		t.Fatalf("lbprobe %s as %s: %v", strings.Join(podArgs, " "), as, err)
	}
	want := func(total int64) error {
		return poll.Until(t.Context(), 15*time.Second, 200*time.Millisecond, func() error {
			shard, got, err := p.shardInfo(t.Context())
			if err != nil {
				return err
			}
			if shard != "1" || got != fmt.Sprint(total) {
				return fmt.Errorf(`lbprobe_shard_info{shard=%q,total_shards=%q}, want {shard="1",total_shards="%d"}`, shard, got, total)
			}
			return nil
		})
	}
	if err := want(replicas); err != nil {
		t.Fatalf("lbprobe %s as %s: %v\n%s", strings.Join(podArgs, " "), as, err, p.Logs())
	}
	// kubectl scale: lbprobe's watch of the StatefulSet (list and watch by name) re-shards it.
	cs, err := kubernetes.NewForConfig(cluster(t).RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AppsV1().StatefulSets(ns).Patch(t.Context(), name, types.MergePatchType, []byte(`{"spec":{"replicas":2}}`), metav1.PatchOptions{}); err != nil {
		t.Fatalf("scaling StatefulSet %s/%s to 2: %v", ns, name, err)
	}
	if err := want(2); err != nil {
		t.Fatalf("after scaling StatefulSet %s/%s to 2, lbprobe as %s: %v\n%s", ns, name, as, err, p.Logs())
	}
	t.Logf("lbprobe %s as %s served shard 1 of %d, then of 2 after the scale", strings.Join(podArgs, " "), as, replicas)
	if log := p.Logs(); strings.Contains(strings.ToLower(log), "forbidden") {
		t.Errorf("lbprobe's log mentions forbidden:\n%s", log)
	}
	p.Stop()

	// Negative control: without the sharding RoleBinding lbprobe cannot read its shard count.
	var binding *unstructured.Unstructured
	for _, u := range ofKind(objs, "RoleBinding") {
		if u.GetLabels()["app.kubernetes.io/component"] == shardingComponent {
			binding = u
		}
	}
	if binding == nil {
		t.Fatalf("no RoleBinding labelled app.kubernetes.io/component=%s", shardingComponent)
	}
	if err := a.delete(t.Context(), binding); err != nil {
		t.Fatalf("deleting %s: %v", ref(binding), err)
	}
	err = poll.Until(t.Context(), 10*time.Second, 200*time.Millisecond, func() error {
		got, err := canI(t, as, "get", "statefulsets.apps", "-n", ns)
		if err == nil && !got {
			return nil
		}
		return fmt.Errorf("%v (err %v), want no", yesNo(got), err)
	})
	if err != nil {
		t.Fatalf("without %s, can-i get statefulsets -n %s: %v", ref(binding), ns, err)
	}
	p = startLBProbe(t, bin, kubeconfig, podArgs...)
	select {
	case <-p.Exited():
		if p.ExitError() == nil || !strings.Contains(p.Logs(), "forbidden") {
			t.Errorf("without %s, lbprobe %s exited with %v, want an error saying forbidden; log:\n%s", ref(binding), strings.Join(podArgs, " "), p.ExitError(), p.Logs())
		} else {
			t.Logf("without %s, lbprobe %s exits: %v", ref(binding), strings.Join(podArgs, " "), p.ExitError())
		}
	case <-time.After(15 * time.Second):
		t.Errorf("without %s, lbprobe %s still runs after 15s: the sharding RBAC check cannot fail; log:\n%s", ref(binding), strings.Join(podArgs, " "), p.Logs())
	}
	p.Stop()
}

// canI runs kubectl auth can-i as the admin impersonating user as.
func canI(t *testing.T, as, verb, resource string, scope ...string) (bool, error) {
	t.Helper()
	args := append([]string{"--kubeconfig=" + cluster(t).KubeconfigPath(), "--cache-dir=" + filepath.Join(tmpRoot, "kubectl-cache"),
		"auth", "can-i", verb, resource, "--as=" + as}, scope...)
	cmd := exec.CommandContext(t.Context(), tool(t, "kubectl"), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	answer := strings.TrimSpace(string(out))
	var exit *exec.ExitError
	switch {
	case err == nil && answer == "yes":
		return true, nil
	case (err == nil || errors.As(err, &exit) && exit.ExitCode() == 1) && strings.HasPrefix(answer, "no"):
		return false, nil
	}
	return false, fmt.Errorf("kubectl %s: %v: %q %s", strings.Join(args[2:], " "), err, answer, stderr.String())
}

func (a *applier) delete(ctx context.Context, u *unstructured.Unstructured) error {
	ri, err := a.resource(u, "")
	if err != nil {
		return err
	}
	return ri.Delete(ctx, u.GetName(), metav1.DeleteOptions{})
}

// ---------------------------------------------------------------------------------------------
// lbprobe as a process.

type lbprobeProc struct {
	*lbprobebin.Process
	base string // http://127.0.0.1:PORT
	hc   *http.Client
}

// startLBProbe runs lbprobe with Kubernetes discovery through kubeconfig, Cilium's leases in
// kube-system, a minimal config, a free loopback port and the extra flags. It is stopped when the
// test ends.
func startLBProbe(t *testing.T, bin, kubeconfig string, extra ...string) *lbprobeProc {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "lbprobe.yml")
	if err := os.WriteFile(cfg, []byte("dns:\n  domain: example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := &lbprobeProc{base: "http://" + addr, hc: &http.Client{Timeout: 15 * time.Second}}
	p.Process = lbprobebin.Start(t, lbprobebin.StartOptions{Binary: bin, Dir: dir, Args: append([]string{
		"--kube.enabled=true", "--kubeconfig=" + kubeconfig, "--cilium.namespace=kube-system",
		"--web.listen-address=" + addr, "--config.file=" + cfg,
	}, extra...)})
	t.Cleanup(p.hc.CloseIdleConnections)
	return p
}

func (p *lbprobeProc) get(ctx context.Context, path string) (int, []byte, error) {
	if err := p.ExitError(); err != nil {
		return 0, nil, fmt.Errorf("%w; log:\n%s", err, p.Logs())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", "5")
	resp, err := p.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// ready reports whether /-/ready answers 200; not listening yet counts as not ready.
func (p *lbprobeProc) ready(ctx context.Context) (bool, error) {
	code, _, err := p.get(ctx, "/-/ready")
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			return false, nil
		}
		return false, err
	}
	return code == http.StatusOK, nil
}

// waitReady waits until /-/ready answers 200, saying why not and with lbprobe's log once timeout
// passes or lbprobe exits.
func (p *lbprobeProc) waitReady(ctx context.Context, timeout time.Duration) error {
	if err := p.WaitReady(ctx, p.hc, p.base+"/-/ready", timeout); err != nil {
		return fmt.Errorf("/-/ready: %w; log:\n%s", err, p.Logs())
	}
	return nil
}

// shardInfo returns the shard and total_shards labels of lbprobe_shard_info.
func (p *lbprobeProc) shardInfo(ctx context.Context) (shard, total string, err error) {
	code, body, err := p.get(ctx, "/metrics")
	if err != nil {
		return "", "", err
	}
	if code != http.StatusOK {
		return "", "", fmt.Errorf("/metrics: %d: %s", code, truncate(string(body), 500))
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		return "", "", fmt.Errorf("parsing /metrics: %w", err)
	}
	f, ok := fams["lbprobe_shard_info"]
	if !ok || len(f.GetMetric()) != 1 {
		return "", "", fmt.Errorf("want one lbprobe_shard_info series, got %v", f.GetMetric())
	}
	for _, l := range f.GetMetric()[0].GetLabel() {
		switch l.GetName() {
		case "shard":
			shard = l.GetValue()
		case "total_shards":
			total = l.GetValue()
		}
	}
	return shard, total, nil
}

// scrape returns the lbprobe_kubernetes_* series by name and resource label.
func (p *lbprobeProc) scrape(ctx context.Context) (map[string]map[string]float64, error) {
	var (
		code int
		body []byte
	)
	err := poll.Until(ctx, 5*time.Second, 100*time.Millisecond, func() error { // the listener may not be up yet
		var err error
		code, body, err = p.get(ctx, "/metrics")
		return err
	})
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %d: %s", code, truncate(string(body), 500))
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		return nil, fmt.Errorf("parsing /metrics: %w", err)
	}
	out := map[string]map[string]float64{}
	for name, f := range fams {
		if !strings.HasPrefix(name, "lbprobe_kubernetes_") {
			continue
		}
		out[name] = map[string]float64{}
		for _, m := range f.GetMetric() {
			res := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "resource" {
					res = l.GetValue()
				}
			}
			v := m.GetGauge().GetValue()
			if m.GetCounter() != nil {
				v = m.GetCounter().GetValue()
			}
			out[name][res] = v
		}
	}
	return out, nil
}
