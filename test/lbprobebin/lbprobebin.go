// Package lbprobebin gives tests the lbprobe binary to run: $LBPROBE_BINARY, which `make test` sets
// to bin/lbprobe (built the way the Dockerfile builds it), or else a build of ./cmd/lbprobe made
// once per test process.
package lbprobebin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Env names the environment variable holding the path of a built lbprobe binary.
const Env = "LBPROBE_BINARY"

var build struct {
	once sync.Once
	path string
	err  error
}

// Path returns $LBPROBE_BINARY, or builds ./cmd/lbprobe into a temporary folder on the first call
// of the test process (go build's cache makes that quick after the first time). It fails the test
// when the build fails.
func Path(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(Env); p != "" {
		return p
	}
	build.once.Do(func() {
		dir, err := os.MkdirTemp("", "lbprobe-bin-")
		if err != nil {
			build.err = err
			return
		}
		build.path = filepath.Join(dir, "lbprobe")
		out, err := exec.Command("go", "build", "-o", build.path, "github.com/lbprobe/lbprobe/cmd/lbprobe").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build ./cmd/lbprobe (or set $%s): %w\n%s", Env, err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}
