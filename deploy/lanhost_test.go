package deploy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lbprobe/lbprobe/test/lbprobebin"
)

// TestLANHost follows deploy/README.md's out-of-cluster set-up: the lan-host overlay applied for
// real (into a test namespace), hack/lan-kubeconfig.sh writing a kubeconfig with a token of its
// ServiceAccount from the admin's kubeconfig, and lbprobe with the systemd unit's Kubernetes flags
// and that kubeconfig: it becomes ready with every resource synced, and the token can write
// nothing.
func TestLANHost(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	ns := c.Namespace(t)
	objs := renderKustomizeInto(t, "kustomize/overlays/lan-host", ns, "-lan")
	a := newApplier(t)
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			continue
		}
		if _, err := a.apply(t.Context(), o, ns, false); err != nil {
			t.Fatalf("applying %s: %v", ref(o), err)
		}
	}
	sa := ofKind(objs, "ServiceAccount")
	if len(sa) != 1 {
		t.Fatalf("the lan-host overlay renders %d ServiceAccounts, want 1", len(sa))
	}

	out, err := runToolIn(t.Context(), nil, []string{"KUBECONFIG=" + c.KubeconfigPath(), "KUBECTL=" + tool(t, "kubectl")},
		filepath.Join("..", "hack", "lan-kubeconfig.sh"), "-n", ns, "-s", sa[0].GetName(), "-d", "1h")
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, out, 0o600); err != nil {
		t.Fatal(err)
	}

	as := []string{"--kubeconfig=" + kubeconfig}
	for _, verb := range []string{"create", "update", "delete"} {
		got, err := runTool(t.Context(), tool(t, "kubectl"), append(as, "auth", "can-i", verb, "services", "-A")...)
		if string(got) != "no\n" {
			t.Errorf("with the LAN host's kubeconfig, can-i %s services: %q (%v), want no", verb, got, err)
		}
	}
	if got, err := runTool(t.Context(), tool(t, "kubectl"), append(as, "auth", "can-i", "watch", "leases", "-n", "kube-system")...); err != nil || string(got) != "yes\n" {
		t.Errorf("with the LAN host's kubeconfig, can-i watch leases -n kube-system: %q (%v), want yes", got, err)
	}

	p := startLBProbe(t, lbprobebin.Path(t), kubeconfig)
	if err := p.waitReady(t.Context(), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	metrics, err := p.scrape(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	synced := metrics["lbprobe_kubernetes_synced"]
	if len(synced) == 0 {
		t.Fatal("lbprobe_kubernetes_synced is missing")
	}
	for labels, v := range synced {
		if v != 1 {
			t.Errorf("lbprobe_kubernetes_synced{%s} = %v, want 1", labels, v)
		}
	}
}

// TestSystemdUnit runs the unit's ExecStart with --config.check and the example config: every flag
// of the unit exists and parses (regular expressions too), and the example config is valid. The
// unit's files are mapped to the repository's: /etc/lbprobe/lbprobe.yml to systemd/lbprobe.yml.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile(filepath.Join("systemd", "lbprobe.service"))
	if err != nil {
		t.Fatal(err)
	}
	// ExecStart=, with its backslash-newline continuations joined.
	var exec string
	for line := range strings.Lines(strings.ReplaceAll(string(unit), "\\\n", " ")) {
		if rest, ok := strings.CutPrefix(line, "ExecStart="); ok {
			exec = rest
		}
	}
	args := strings.Fields(exec)
	if len(args) < 2 || args[0] != "/usr/local/bin/lbprobe" {
		t.Fatalf("ExecStart=%q: want /usr/local/bin/lbprobe and flags", exec)
	}
	args = args[1:]
	want := map[string]bool{"--config.file=/etc/lbprobe/lbprobe.yml": false, "--kube.enabled=true": false, "--kubeconfig=/etc/lbprobe/kubeconfig": false, "--probe.route.check": false}
	for i, a := range args {
		if _, ok := want[a]; ok {
			want[a] = true
		}
		if a == "--config.file=/etc/lbprobe/lbprobe.yml" {
			args[i] = "--config.file=" + filepath.Join("systemd", "lbprobe.yml")
		}
	}
	for a, seen := range want {
		if !seen {
			t.Errorf("ExecStart has no %s", a)
		}
	}
	out, err := runTool(t.Context(), lbprobebin.Path(t), append(args, "--config.check")...)
	if err != nil {
		t.Fatalf("the unit's flags with --config.check: %v", err)
	}
	t.Logf("%s", out)
}
