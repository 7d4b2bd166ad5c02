package lbprobebin

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Result is what a one-shot run of lbprobe (a subcommand such as
// `lbprobe diagnose`) printed, and its exit code.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs lbprobe as opts says until it exits, for at most timeout, and
// returns its output and exit code. It fails t when lbprobe cannot start,
// is killed, or runs past timeout.
func Run(t testing.TB, opts StartOptions, timeout time.Duration) Result {
	t.Helper()
	bin := opts.Binary
	if bin == "" {
		bin = Path(t)
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	argv := append(append(append([]string(nil), opts.Prefix...), bin), opts.Args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Dir = opts.Dir
	if len(opts.Env) > 0 {
		cmd.Env = append(os.Environ(), opts.Env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s ran past %s; stderr:\n%s", strings.Join(argv, " "), timeout, res.Stderr)
	case errors.As(err, &exit) && exit.Exited():
		res.Code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v; stderr:\n%s", strings.Join(argv, " "), err, res.Stderr)
	}
	return res
}
