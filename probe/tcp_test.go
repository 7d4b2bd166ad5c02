package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lbprobe/lbprobe/test/targets"
)

// listenTCP starts test/targets's TCP listener on a loopback address,
// accepting and closing every connection until the test ends. It skips the
// test when the address family is not available.
func listenTCP(t testing.TB, address string) netip.AddrPort {
	t.Helper()
	ap, err := targets.TCP(t.Context(), address)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", address, err)
	}
	return ap
}

// closedPort returns a loopback port (of network "tcp" or "udp") that
// nothing listens on: for TCP one test/targets holds without listening until
// the test ends, for UDP one that was just bound and released.
func closedPort(t testing.TB, network string) netip.AddrPort {
	t.Helper()
	var ap netip.AddrPort
	switch network {
	case "tcp":
		var err error
		if ap, err = targets.ClosedTCP(t.Context(), "127.0.0.1"); err != nil {
			t.Fatal(err)
		}
	case "udp":
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ap = pc.LocalAddr().(*net.UDPAddr).AddrPort()
		pc.Close()
	default:
		t.Fatalf("closedPort: unknown network %q", network)
	}
	return ap
}

// fullBacklog returns a loopback port whose listen socket never accepts and
// whose accept queue is full, so that the kernel drops further SYNs and a
// connect can only time out. The socket is made with backlog 0 through
// syscall, since net.Listen uses somaxconn; connections are made until one
// times out, which proves the queue is full.
func fullBacklog(t *testing.T) netip.AddrPort {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*syscall.SockaddrInet4).Port))

	var d net.Dialer
	for range 16 {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		c, err := d.DialContext(ctx, "tcp", addr.String())
		cancel()
		if err == nil {
			t.Cleanup(func() { c.Close() })
			continue
		}
		var netErr net.Error
		if errors.As(err, &netErr) && netErr.Timeout() {
			return addr // the queue is full
		}
		t.Fatalf("filling the accept queue of %s: %v", addr, err)
	}
	t.Fatalf("the accept queue of %s never filled", addr)
	return addr
}

func TestTCP(t *testing.T) {
	t.Parallel()
	const shortDeadline = 200 * time.Millisecond
	open := listenTCP(t, "127.0.0.1:0")
	closed := closedPort(t, "tcp")
	full := fullBacklog(t)

	tests := []struct {
		name       string
		addr       netip.AddrPort
		timeout    time.Duration // 0: the test's context as it is; negative: already expired
		nilLogger  bool
		wantOK     bool
		wantReason Reason
	}{
		{name: "open port", addr: open, timeout: time.Second, wantOK: true},
		{name: "open port without deadline", addr: open, wantOK: true},
		{name: "open port nil logger", addr: open, timeout: time.Second, nilLogger: true, wantOK: true},
		{name: "closed port", addr: closed, timeout: time.Second, wantReason: ReasonRefused},
		{name: "full accept queue", addr: full, timeout: shortDeadline, wantReason: ReasonTimeout},
		{name: "expired context", addr: open, timeout: -1, wantReason: ReasonTimeout},
		{name: "zero address", addr: netip.AddrPort{}, timeout: time.Second, wantReason: ReasonError},
		{name: "port zero", addr: netip.AddrPortFrom(open.Addr(), 0), timeout: time.Second, wantReason: ReasonError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			switch {
			case tt.timeout > 0:
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			case tt.timeout < 0:
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, time.Now().Add(-time.Second))
				defer cancel()
			}
			logger := testLogger(t)
			if tt.nilLogger {
				logger = nil
			}
			start := time.Now()
			res := TCP(ctx, tt.addr, logger)
			checkNotLate(t, start, max(tt.timeout, 0))
			checkResult(t, res, tt.wantOK, tt.wantReason)
			if tt.wantReason != ReasonError {
				if len(res.Phases) != 1 || res.Phases[0].Name != "connect" {
					t.Errorf("Phases = %v, want one phase \"connect\"", res.Phases)
				}
			}
		})
	}
}

func TestTCPIPv6(t *testing.T) {
	t.Parallel()
	open := listenTCP(t, "[::1]:0")
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	checkResult(t, TCP(ctx, open, testLogger(t)), true, ReasonNone)
}

// checkResult checks the fields every prober sets.
func checkResult(t *testing.T, res Result, wantOK bool, wantReason Reason) {
	t.Helper()
	if res.Success != wantOK || res.Reason != wantReason {
		t.Errorf("Success, Reason = %v, %q, want %v, %q (Err: %v)", res.Success, res.Reason, wantOK, wantReason, res.Err)
	}
	if res.Success != (res.Err == nil) {
		t.Errorf("Success = %v with Err = %v", res.Success, res.Err)
	}
	if res.Duration <= 0 {
		t.Errorf("Duration = %v, want > 0", res.Duration)
	}
}

func BenchmarkTCP(b *testing.B) {
	addr := listenTCP(b, "127.0.0.1:0")
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if res := TCP(ctx, addr, nil); !res.Success {
			b.Fatalf("TCP(%s) failed: %v", addr, res.Err)
		}
	}
}

// TestTCPLeavesNoTimeWait: the probe closes with a reset, so that neither
// side keeps the connection in TIME_WAIT (an ephemeral port held for a
// minute per probe).
func TestTCPLeavesNoTimeWait(t *testing.T) {
	ap := listenTCP(t, "127.0.0.1:0")
	for range 20 {
		if r := TCP(t.Context(), ap, nil); !r.Success {
			t.Fatalf("probe of %s failed: %v", ap, r.Err)
		}
	}
	// /proc/net/tcp: local and remote address as hex ip:port, then the
	// state; 06 is TIME_WAIT.
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	// 127.0.0.1:port as /proc/net/tcp writes it (the address in host byte order).
	a := ap.Addr().As4()
	addr := fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], ap.Port())
	n := 0
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) > 3 && f[3] == "06" && (f[1] == addr || f[2] == addr) {
			n++
		}
	}
	if n != 0 {
		t.Errorf("%d connections to %s in TIME_WAIT after 20 probes, want 0", n, ap)
	}
}
