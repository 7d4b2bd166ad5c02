// Tests of the jsonnet mixin: the checked-in output matches the jsonnet, the jsonnet is formatted,
// promtool accepts the rules and passes their unit tests (mixin/tests), and every PromQL
// expression names only series and labels that lbprobe really exposes (series_test.go); the
// alerts go pending, firing and resolved in a real Prometheus (e2e_test.go).
package mixin_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// repo is the repository root, seen from this package's folder (go test's working directory).
const repo = ".."

// tool returns the path of a pinned tool, built and cached by hack/tool.sh on first use.
func tool(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(repo, "hack", "tool.sh"), name)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("hack/tool.sh %s: %v\n%s", name, err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// run runs a command and fails the test with its output when it fails.
func run(t testing.TB, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// generatedFiles lists the files hack/mixin.sh writes, relative to root.
func generatedFiles(t testing.TB, root string) []string {
	t.Helper()
	files := []string{"deploy/kustomize/base/prometheusrule.yaml", "deploy/helm/lbprobe/files/rules.yaml"}
	err := filepath.WalkDir(filepath.Join(root, "mixin", "generated"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, path)
		files = append(files, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

// TestGeneratedUpToDate regenerates the mixin's output into a temporary folder and compares it
// with the checked-in files: a change to the jsonnet without `make mixin` fails here (and in CI).
func TestGeneratedUpToDate(t *testing.T) {
	out := t.TempDir()
	run(t, repo, filepath.Join("hack", "mixin.sh"), out)
	got, want := generatedFiles(t, out), generatedFiles(t, repo)
	if !slices.Equal(got, want) {
		t.Fatalf("hack/mixin.sh writes %v, the repository has %v: run 'make mixin' and commit", got, want)
	}
	if len(got) < 4 {
		t.Fatalf("hack/mixin.sh wrote only %v", got)
	}
	for _, f := range got {
		generated, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		checkedIn, err := os.ReadFile(filepath.Join(repo, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(generated, checkedIn) {
			t.Errorf("%s is out of date: run 'make mixin' and commit", f)
		}
	}
}

// TestJsonnetFormatted runs jsonnetfmt --test over every jsonnet file of the mixin.
func TestJsonnetFormatted(t *testing.T) {
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".jsonnet") || strings.HasSuffix(path, ".libsonnet")) {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 {
		t.Fatalf("found only %v", files)
	}
	fmtTool := tool(t, "jsonnetfmt")
	for _, f := range files {
		if err := exec.CommandContext(t.Context(), fmtTool, "--test", f).Run(); err != nil {
			t.Errorf("%s is not formatted (%v): run 'make mixin'", f, err)
		}
	}
}

// TestPromtool checks the generated rule files and runs the rule unit tests in mixin/tests.
func TestPromtool(t *testing.T) {
	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		promtool = tool(t, "promtool")
	}
	out := run(t, ".", promtool, "check", "rules", "generated/alerts.yaml", "generated/rules.yaml")
	t.Logf("promtool check rules:\n%s", out)
	tests, err := filepath.Glob("tests/*_test.yaml")
	if err != nil || len(tests) == 0 {
		t.Fatalf("no rule tests in mixin/tests (%v)", err)
	}
	out = run(t, ".", promtool, append([]string{"test", "rules"}, tests...)...)
	t.Logf("promtool test rules:\n%s", out)
}
