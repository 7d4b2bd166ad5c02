package kubecluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// launcher returns what to start instead of bin so that the kernel SIGKILLs the server when the
// process that started it dies, e.g. a test binary killed on timeout or by Ctrl-C: a shell
// script dir/bin/name that runs bin under setpriv --pdeathsig KILL. envtest starts the script,
// which becomes the server (exec), in its own process group. Without setpriv it returns bin.
func launcher(dir, name, bin string, logf func(string, ...any)) (string, error) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		logf("kubecluster: no setpriv (util-linux): %s will outlive this process if it is killed", name)
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		return "", fmt.Errorf("kubecluster: %w", err)
	}
	path := filepath.Join(dir, "bin", name)
	script := fmt.Sprintf("#!/bin/sh\nexec %s --pdeathsig KILL -- %s \"$@\"\n", shellQuote(setpriv), shellQuote(bin))
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		return "", fmt.Errorf("kubecluster: %w", err)
	}
	return path, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// The kernel sends the death signal when the thread that forked the child exits, not the
// process: Go ends a thread when a goroutine locked to it returns without unlocking it (as
// network-namespace code does on purpose). So envtest's starts, which fork in the calling
// goroutine, run on one goroutine that locks its thread and never returns.
var spawner struct {
	once sync.Once
	jobs chan func()
}

// onSpawner runs f on the spawner's thread and returns when f has.
func onSpawner(f func()) {
	spawner.once.Do(func() {
		spawner.jobs = make(chan func())
		go func() {
			runtime.LockOSThread() // for the life of the process
			for job := range spawner.jobs {
				job()
			}
		}()
	})
	done := make(chan struct{})
	spawner.jobs <- func() {
		defer close(done)
		f()
	}
	<-done
}
