package kubecluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// errPortTaken marks a start that failed because a port picked as free was taken meanwhile.
var errPortTaken = errors.New("address already in use")

// process is a child process whose output goes to a log file.
type process struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // of cmd.Wait, set before done is closed
}

// startProcess starts bin in its own process group (so that a terminal's Ctrl-C reaches only the
// test process, which then takes its children down, see sysProcAttr), appending its stdout and
// stderr to logFile.
func startProcess(name, bin string, args []string, logFile string) (*process, error) {
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("kubecluster: %w", err)
	}
	defer f.Close() // the child has its own copy
	fmt.Fprintf(f, "=== %s: %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := startCmd(cmd); err != nil {
		return nil, fmt.Errorf("kubecluster: starting %s: %w", name, err)
	}
	p := &process{name: name, log: logFile, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// waitReady polls ready every 100 ms until it reports true, the process exits, ctx ends or
// readyTimeout passes. Its errors carry the end of the process's log, and wrap errPortTaken
// when the log says a port was in use.
func (p *process) waitReady(ctx context.Context, ready func(context.Context) bool) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 5*time.Second)
		ok := ready(attempt)
		cancelAttempt()
		if ok {
			return nil
		}
		select {
		case <-p.done:
			return p.failure(fmt.Sprintf("exited (%v)", p.err))
		case <-ctx.Done():
			return p.failure(fmt.Sprintf("not ready: %v", context.Cause(ctx)))
		case <-tick.C:
		}
	}
}

func (p *process) failure(what string) error {
	err := fmt.Errorf("kubecluster: %s %s; the end of %s:\n%s", p.name, what, filepath.Base(p.log), tail(p.log, 30))
	if data, _ := os.ReadFile(p.log); bytes.Contains(data, []byte("address already in use")) {
		return fmt.Errorf("%w: %w", errPortTaken, err)
	}
	return err
}

// stop sends SIGTERM to the process group and waits up to grace for the process to exit, then
// sends SIGKILL; grace 0 kills at once. It returns an error only if the process does not exit.
func (p *process) stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil // and its pid may belong to another process by now
	default:
	}
	pgid := -p.cmd.Process.Pid
	if grace > 0 {
		_ = syscall.Kill(pgid, syscall.SIGTERM)
		select {
		case <-p.done:
			return nil
		case <-time.After(grace):
		}
	}
	_ = syscall.Kill(pgid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("kubecluster: %s (pid %d) did not exit after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// removeStaleDirs removes the temporary folders of processes that no longer exist, e.g. test
// binaries killed on timeout before they could call Stop. Their children died with them.
func removeStaleDirs(logf func(string, ...any)) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if err != nil {
			continue // not ours, or being created
		}
		pid, err := strconv.Atoi(string(data))
		if err != nil || pid <= 0 || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue
		}
		if err := os.RemoveAll(dir); err == nil {
			logf("kubecluster: removed %s, left behind by process %d", dir, pid)
		}
	}
}
