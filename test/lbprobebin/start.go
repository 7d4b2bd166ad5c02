package lbprobebin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lbprobe/lbprobe/test/poll"
)

// StartOptions say how [Start] runs lbprobe.
type StartOptions struct {
	// Binary is the lbprobe binary to run; empty means [Path]'s.
	Binary string
	// Args are lbprobe's arguments.
	Args []string
	// Prefix, when set, is a command lbprobe runs under, e.g.
	// {"ip", "netns", "exec", NAME}: the command is Prefix, the binary, Args.
	Prefix []string
	// Env is added to the test process's environment.
	Env []string
	// Dir is the working directory; empty means the test's.
	Dir string
}

// Process is a running lbprobe binary whose stdout and stderr are kept.
type Process struct {
	cmd    *exec.Cmd
	logs   *logBuffer
	exited chan struct{}
	once   sync.Once
}

// Start runs lbprobe (see [Path]) as opts says. The process is killed if
// the test process dies, stopped (see [Process.Stop]) when t ends, and its
// log written to t if t failed.
func Start(t testing.TB, opts StartOptions) *Process {
	t.Helper()
	bin := opts.Binary
	if bin == "" {
		bin = Path(t)
	}
	argv := append(append(append([]string(nil), opts.Prefix...), bin), opts.Args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	p := &Process{cmd: cmd, logs: &logBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	cmd.Dir = opts.Dir
	if len(opts.Env) > 0 {
		cmd.Env = append(os.Environ(), opts.Env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", strings.Join(argv, " "), err)
	}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("lbprobe log:\n%s", p.Logs())
		}
	})
	return p
}

// Logs returns what lbprobe wrote to stdout and stderr so far.
func (p *Process) Logs() string { return p.logs.String() }

// Signal sends sig to lbprobe.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Exited is closed once lbprobe has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// ExitError returns an error saying lbprobe exited and how, or nil while it runs.
func (p *Process) ExitError() error {
	select {
	case <-p.exited:
		return fmt.Errorf("lbprobe exited: %v", p.cmd.ProcessState)
	default:
		return nil
	}
}

// Stop ends lbprobe (SIGTERM, SIGKILL after 5 s) and waits for it. Calling
// it again does nothing.
func (p *Process) Stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

var listeningRe = regexp.MustCompile(`msg=listening address=(\S+)`)

// ListenAddress waits up to timeout for lbprobe to log the address it
// listens on (useful with --web.listen-address=127.0.0.1:0) and returns it.
func (p *Process) ListenAddress(ctx context.Context, timeout time.Duration) (string, error) {
	var addr string
	err := p.poll(ctx, timeout, 10*time.Millisecond, func() error {
		m := listeningRe.FindStringSubmatch(p.Logs())
		if m == nil {
			return errors.New("no \"msg=listening address=\" in its log")
		}
		addr = m[1]
		return nil
	})
	return addr, err
}

// WaitReady polls url (lbprobe's /-/ready) with client every 100 ms until it
// answers 200 OK, lbprobe exits or timeout passes.
func (p *Process) WaitReady(ctx context.Context, client *http.Client, url string, timeout time.Duration) error {
	return p.poll(ctx, timeout, 100*time.Millisecond, func() error {
		return getOK(ctx, client, url)
	})
}

// poll runs poll.Until, stopping early when lbprobe exits.
func (p *Process) poll(ctx context.Context, timeout, every time.Duration, check func() error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-p.exited:
			cancel(p.ExitError())
		case <-ctx.Done():
		}
	}()
	return poll.Until(ctx, timeout, every, check)
}

// getOK GETs url and returns an error unless it answers 200 OK.
func getOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// logBuffer is a strings.Builder safe for concurrent writes.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(b)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Pid returns lbprobe's process ID (for reading /proc/PID).
func (p *Process) Pid() int { return p.cmd.Process.Pid }
