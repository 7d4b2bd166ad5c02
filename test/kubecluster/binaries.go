package kubecluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// BinDirEnv names the environment variable that, when set, names a folder holding the etcd,
// kube-apiserver and kubectl binaries to use instead of hack/tool.sh's.
const BinDirEnv = "LBPROBE_KUBE_BIN_DIR"

// GatewayAPIVersion is the version of sigs.k8s.io/gateway-api whose CRDs [GatewayAPICRDDir]
// returns when the main module's go.mod does not require one.
const GatewayAPIVersion = "v1.6.3"

const modulePath = "github.com/lbprobe/lbprobe"

// Binary returns the path of the etcd, kube-apiserver or kubectl binary: from the folder in
// $LBPROBE_KUBE_BIN_DIR if set, else from the repository's hack/tool.sh, which builds the binary
// first if it is not cached yet (several minutes; ctx bounds the wait).
func Binary(ctx context.Context, name string) (string, error) {
	return binary(ctx, name, func(string, ...any) {})
}

func binary(ctx context.Context, name string, logf func(string, ...any)) (string, error) {
	if dir := os.Getenv(BinDirEnv); dir != "" {
		path := filepath.Join(dir, name)
		if fi, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("kubecluster: %s from $%s: %w", name, BinDirEnv, err)
		} else if fi.IsDir() || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("kubecluster: %s is not an executable file", path)
		}
		return path, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("kubecluster: finding %s: %w (or set $%s)", name, err, BinDirEnv)
	}
	begin := time.Now()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(root, "hack", "tool.sh"), name)
	cmd.Stdout = &stdout
	cmd.Stderr = &logWriter{logf: logf, buf: &stderr}
	// On cancellation, SIGTERM the whole group: tool.sh and the go build it may be running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kubecluster: hack/tool.sh %s: %w\n%s", name, err, lastLines(stderr.String(), 20))
	}
	if d := time.Since(begin); d > 10*time.Second {
		logf("kubecluster: hack/tool.sh %s took %s", name, d.Round(time.Second))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// logWriter passes tool.sh's progress to logf (a build takes minutes) and keeps it for errors.
type logWriter struct {
	logf func(string, ...any)
	buf  *bytes.Buffer
}

func (w *logWriter) Write(p []byte) (int, error) {
	for line := range strings.Lines(string(p)) {
		w.logf("kubecluster: %s", strings.TrimRight(line, "\n"))
	}
	return w.buf.Write(p)
}

// GatewayAPICRDDir returns the folder of the standard-channel Gateway API CRDs in the module
// cache, downloading the module sigs.k8s.io/gateway-api if needed: at the version the main
// module's go.mod requires, else at [GatewayAPIVersion].
func GatewayAPICRDDir() (string, error) {
	version := GatewayAPIVersion
	if root, err := repoRoot(); err == nil {
		if data, err := os.ReadFile(filepath.Join(root, "go.mod")); err == nil {
			if m := gatewayRequire.FindSubmatch(data); m != nil {
				version = string(m[1])
			}
		}
	}
	mod := "sigs.k8s.io/gateway-api@" + version
	cmd := exec.Command("go", "mod", "download", "-json", mod)
	cmd.Dir = os.TempDir() // outside any module, so that no go.mod or go.sum changes
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr != nil && err == nil {
		err = jerr
	}
	if info.Error != "" {
		err = errors.New(info.Error)
	}
	if err != nil {
		return "", fmt.Errorf("kubecluster: go mod download %s: %w %s", mod, err, strings.TrimSpace(stderr.String()))
	}
	dir := filepath.Join(info.Dir, "config", "crd", "standard")
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("kubecluster: Gateway API CRDs: %w", err)
	}
	return dir, nil
}

var gatewayRequire = regexp.MustCompile(`(?m)^\s*(?:require\s+)?sigs\.k8s\.io/gateway-api\s+(v\S+)`)

// CiliumCRDDir returns the folder of the hand-written Cilium CRDs, test/crds/cilium.
func CiliumCRDDir() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("kubecluster: Cilium CRDs: %w", err)
	}
	return filepath.Join(root, "test", "crds", "cilium"), nil
}

// MetalLBCRDDir returns the folder of the hand-written MetalLB CRDs
// (IPAddressPool, L2Advertisement, ServiceL2Status), which only the tests of
// a MetalLB cluster install: CRDDirs leaves them out.
func MetalLBCRDDir() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("kubecluster: MetalLB CRDs: %w", err)
	}
	return filepath.Join(root, "test", "crds", "metallb"), nil
}

// repoRoot returns the folder of the main module's go.mod, the closest one around the working
// directory (a test's is its package folder).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && moduleLine.Match(data) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s around the working directory", modulePath)
		}
		dir = parent
	}
}

var moduleLine = regexp.MustCompile(`(?m)^module\s+` + regexp.QuoteMeta(modulePath) + `\s*$`)

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// CRDDirs returns the folders of every CRD lbprobe reads: the Gateway API's
// standard channel and Cilium's.
func CRDDirs() ([]string, error) {
	gw, err := GatewayAPICRDDir()
	if err != nil {
		return nil, err
	}
	cilium, err := CiliumCRDDir()
	if err != nil {
		return nil, err
	}
	return []string{gw, cilium}, nil
}
