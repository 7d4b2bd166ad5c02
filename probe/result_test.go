package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// testLogger logs at debug level into the test's output, shown for failing
// tests and with -v.
func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// deadlineSlack is how long after its deadline a probe may return: the
// time to notice it and clean up, generous for the race detector.
const deadlineSlack = 500 * time.Millisecond

// checkNotLate fails the test when a probe that began at start and had
// timeout to run took much longer.
func checkNotLate(t *testing.T, start time.Time, timeout time.Duration) {
	t.Helper()
	if took := time.Since(start); took > timeout+deadlineSlack {
		t.Errorf("probe returned %v after start, deadline was %v", took, timeout)
	}
}

func TestClassifyNetError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want Reason
	}{
		{"nil", nil, ReasonNone},
		{"deadline", fmt.Errorf("dial: %w", context.DeadlineExceeded), ReasonTimeout},
		{"canceled", context.Canceled, ReasonTimeout},
		{"os deadline", os.ErrDeadlineExceeded, ReasonTimeout},
		{"refused", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, ReasonRefused},
		{"host unreachable", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, ReasonUnreachable},
		{"network unreachable", os.NewSyscallError("sendto", syscall.ENETUNREACH), ReasonUnreachable},
		{"eperm", os.NewSyscallError("socket", syscall.EPERM), ReasonPermission},
		{"eacces", os.NewSyscallError("socket", syscall.EACCES), ReasonPermission},
		{"other", errors.New("boom"), ReasonError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classifyNetError(tt.err); got != tt.want {
				t.Errorf("classifyNetError(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}
