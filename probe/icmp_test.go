package probe

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lbprobe/lbprobe/test/needroot"
)

// icmpSocketAllowed reports whether this process may open an ICMP socket
// of the given kind (syscall.SOCK_RAW or syscall.SOCK_DGRAM), with the
// error that says why not.
func icmpSocketAllowed(kind int) (bool, error) {
	fd, err := syscall.Socket(syscall.AF_INET, kind|syscall.SOCK_CLOEXEC, syscall.IPPROTO_ICMP)
	if err != nil {
		return false, err
	}
	syscall.Close(fd)
	return true, nil
}

func TestICMP(t *testing.T) {
	t.Parallel()
	canRaw, rawErr := icmpSocketAllowed(syscall.SOCK_RAW)
	canDgram, dgramErr := icmpSocketAllowed(syscall.SOCK_DGRAM)
	if !canRaw && !canDgram {
		needroot.Allowed(t, fmt.Errorf("raw: %v; datagram: %v: %w", rawErr, dgramErr,
			icmpPermissionError(ICMPModeAuto, readPingGroupRange(pingGroupRangeFile), errors.Join(rawErr, dgramErr))), "no ICMP socket allowed")
	}
	autoMode := ICMPModeUnprivileged
	if canRaw {
		autoMode = ICMPModePrivileged
	}
	// want returns the expected outcome of a mode that is allowed or not.
	want := func(allowed bool) (bool, Reason) {
		if allowed {
			return true, ReasonNone
		}
		return false, ReasonPermission
	}
	// What the explicit modes give depends on what this process may do.
	rawOK, rawReason := want(canRaw)
	rawMode, rawErrWant := ICMPModePrivileged, ""
	if !canRaw {
		rawMode, rawErrWant = "", "CAP_NET_RAW"
	}
	dgramOK, dgramReason := want(canDgram)
	dgramMode, dgramErrWant := ICMPModeUnprivileged, ""
	if !canDgram {
		dgramMode, dgramErrWant = "", "ping_group_range"
	}
	v4 := netip.MustParseAddr("127.0.0.1")

	tests := []struct {
		name       string
		ip         netip.Addr
		opts       ICMPOptions
		timeout    time.Duration // 2s when 0
		expired    bool          // the context's deadline has passed already
		wantOK     bool
		wantReason Reason
		wantMode   ICMPMode
		wantErr    string // in Err
	}{
		{name: "auto", ip: v4, wantOK: true, wantMode: autoMode},
		{name: "auto by name", ip: v4, opts: ICMPOptions{Mode: ICMPModeAuto}, wantOK: true, wantMode: autoMode},
		{name: "ipv4-mapped ipv6", ip: netip.MustParseAddr("::ffff:127.0.0.1"), wantOK: true, wantMode: autoMode},
		{name: "other loopback address", ip: netip.MustParseAddr("127.0.0.2"), wantOK: true, wantMode: autoMode},
		{name: "larger payload", ip: v4, opts: ICMPOptions{PayloadSize: 1000}, wantOK: true, wantMode: autoMode},
		{name: "privileged", ip: v4, opts: ICMPOptions{Mode: ICMPModePrivileged},
			wantOK: rawOK, wantReason: rawReason, wantMode: rawMode, wantErr: rawErrWant},
		{name: "unprivileged", ip: v4, opts: ICMPOptions{Mode: ICMPModeUnprivileged},
			wantOK: dgramOK, wantReason: dgramReason, wantMode: dgramMode, wantErr: dgramErrWant},
		// The second request would go out 1s after the first, past the
		// deadline: the one reply makes a success, at the deadline.
		{name: "deadline before count is reached", ip: v4, opts: ICMPOptions{Count: 3}, timeout: 300 * time.Millisecond,
			wantOK: true, wantMode: autoMode},
		{name: "expired context", ip: v4, expired: true, wantReason: ReasonTimeout, wantErr: "deadline exceeded"},
		{name: "zero address", wantReason: ReasonError, wantErr: "no IP address"},
		{name: "bad mode", ip: v4, opts: ICMPOptions{Mode: "raw"}, wantReason: ReasonError, wantErr: `invalid ICMP mode "raw"`},
		{name: "negative count", ip: v4, opts: ICMPOptions{Count: -1}, wantReason: ReasonError, wantErr: "count -1"},
		{name: "payload too small", ip: v4, opts: ICMPOptions{PayloadSize: 8}, wantReason: ReasonError, wantErr: "payload size 8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			timeout := cmp.Or(tt.timeout, 2*time.Second)
			deadline := time.Now().Add(timeout)
			if tt.expired {
				deadline, timeout = time.Now().Add(-time.Second), 0
			}
			ctx, cancel := context.WithDeadline(t.Context(), deadline)
			defer cancel()
			start := time.Now()
			res := ICMP(ctx, tt.ip, tt.opts, testLogger(t))
			checkNotLate(t, start, timeout)
			checkResult(t, res.Result, tt.wantOK, tt.wantReason)
			if tt.timeout > 0 && time.Now().Before(deadline) {
				t.Errorf("returned %v before the deadline (Duration %v)", time.Until(deadline), res.Duration)
			}
			if res.Mode != tt.wantMode {
				t.Errorf("Mode = %q, want %q", res.Mode, tt.wantMode)
			}
			if tt.wantOK && res.RTT <= 0 {
				t.Errorf("RTT = %v, want > 0", res.RTT)
			}
			if !tt.wantOK && res.RTT != 0 {
				t.Errorf("RTT = %v on failure, want 0", res.RTT)
			}
			if tt.wantErr != "" && (res.Err == nil || !strings.Contains(res.Err.Error(), tt.wantErr)) {
				t.Errorf("Err = %v, want it to contain %q", res.Err, tt.wantErr)
			}
		})
	}
}

func TestICMPIPv6(t *testing.T) {
	t.Parallel()
	ip := netip.MustParseAddr("::1")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	res := ICMP(ctx, ip, ICMPOptions{}, testLogger(t))
	if res.Reason == ReasonPermission {
		needroot.Allowed(t, res.Err, "no ICMP socket allowed")
	}
	if ok, _ := icmpSocketAllowed(syscall.SOCK_RAW); !ok && res.Reason != ReasonNone {
		// Without raw sockets ::1 needs a datagram ICMPv6 socket and IPv6.
		t.Skipf("ICMPv6 to %s: %v", ip, res.Err)
	}
	checkResult(t, res.Result, true, ReasonNone)
	if res.RTT <= 0 {
		t.Errorf("RTT = %v, want > 0", res.RTT)
	}
}

// childEnv marks the copy of the test binary that TestICMPWithoutPrivileges
// starts as an unprivileged user.
const childEnv = "LBPROBE_TEST_ICMP_UNPRIVILEGED_CHILD"

// TestICMPWithoutPrivileges checks what an unprivileged process gets. As
// root it runs itself again as user and group nobody (65534), without
// capabilities; run by any other user it checks directly.
func TestICMPWithoutPrivileges(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		if os.Getenv(childEnv) != "" {
			t.Fatal("the child still runs as root")
		}
		runAsNobody(t, "^TestICMPWithoutPrivileges$")
		return
	}

	canRaw, _ := icmpSocketAllowed(syscall.SOCK_RAW)
	canDgram, _ := icmpSocketAllowed(syscall.SOCK_DGRAM)
	groupRange := readPingGroupRange(pingGroupRangeFile)
	t.Logf("uid %d, gid %d, raw ICMP allowed: %v, datagram ICMP allowed: %v, ping_group_range %q",
		os.Geteuid(), os.Getegid(), canRaw, canDgram, groupRange)
	if canRaw {
		t.Skip("this unprivileged process may open raw sockets (file capabilities?)")
	}
	v4 := netip.MustParseAddr("127.0.0.1")

	rawMissing := "raw ICMP needs CAP_NET_RAW"
	dgramMissing := `unprivileged ICMP needs the process's group within sysctl net.ipv4.ping_group_range (now "` + groupRange + `")`
	type icmpCase struct {
		name       string
		mode       ICMPMode
		wantOK     bool
		wantReason Reason
		wantMode   ICMPMode
		wantErr    []string // each in Err
		wantErrIs  []error  // each wrapped by Err
	}
	tests := []icmpCase{
		{name: "privileged", mode: ICMPModePrivileged, wantReason: ReasonPermission,
			wantErr: []string{rawMissing}, wantErrIs: []error{syscall.EPERM}},
	}
	if canDgram {
		tests = append(tests,
			icmpCase{name: "auto falls back", mode: ICMPModeAuto, wantOK: true, wantMode: ICMPModeUnprivileged},
			icmpCase{name: "unprivileged", mode: ICMPModeUnprivileged, wantOK: true, wantMode: ICMPModeUnprivileged})
	} else {
		tests = append(tests,
			icmpCase{name: "auto without either", mode: ICMPModeAuto, wantReason: ReasonPermission,
				wantErr:   []string{rawMissing + ", " + dgramMissing},
				wantErrIs: []error{syscall.EPERM, syscall.EACCES}},
			icmpCase{name: "unprivileged", mode: ICMPModeUnprivileged, wantReason: ReasonPermission,
				wantErr: []string{dgramMissing}, wantErrIs: []error{syscall.EACCES}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			res := ICMP(ctx, v4, ICMPOptions{Mode: tt.mode}, testLogger(t))
			checkResult(t, res.Result, tt.wantOK, tt.wantReason)
			if res.Mode != tt.wantMode {
				t.Errorf("Mode = %q, want %q", res.Mode, tt.wantMode)
			}
			for _, s := range tt.wantErr {
				if res.Err == nil || !strings.Contains(res.Err.Error(), s) {
					t.Errorf("Err = %v, want it to contain %q", res.Err, s)
				}
			}
			for _, target := range tt.wantErrIs {
				if !errors.Is(res.Err, target) {
					t.Errorf("Err = %v, want errors.Is(Err, %v)", res.Err, target)
				}
			}
		})
	}
}

// runAsNobody runs the tests matching pattern in a copy of this test
// binary as user and group 65534, which has no capabilities, and fails
// when they do not pass.
func runAsNobody(t *testing.T, pattern string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary lives in a directory only root may enter; nobody
	// needs a copy it can execute.
	dir, err := os.MkdirTemp("", "lbprobe-icmp-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "probe.test")
	if err := copyFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}

	cmd := exec.CommandContext(t.Context(), bin, "-test.run="+pattern, "-test.count=1", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	t.Logf("as uid 65534:\n%s", out)
	if errors.Is(err, syscall.EPERM) {
		needroot.Allowed(t, err, "cannot start a process as uid 65534")
	}
	if err != nil {
		t.Fatalf("tests as uid 65534: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: "+strings.Trim(pattern, "^$")) {
		t.Fatalf("tests as uid 65534 did not pass")
	}
}

func copyFile(dst, src string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func TestICMPPermissionError(t *testing.T) {
	t.Parallel()
	cause := errors.Join(syscall.EPERM, syscall.EACCES)
	const (
		raw   = "raw ICMP needs CAP_NET_RAW"
		dgram = `unprivileged ICMP needs the process's group within sysctl net.ipv4.ping_group_range (now "1 0")`
	)
	tests := []struct {
		mode ICMPMode
		want string
	}{
		{ICMPModeAuto, "no permission to open an ICMP socket: " + raw + ", " + dgram + ": "},
		{"", "no permission to open an ICMP socket: " + raw + ", " + dgram + ": "},
		{ICMPModePrivileged, "no permission to open an ICMP socket: " + raw + ": "},
		{ICMPModeUnprivileged, "no permission to open an ICMP socket: " + dgram + ": "},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			err := icmpPermissionError(tt.mode, "1 0", cause)
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error = %q, want prefix %q", err, tt.want)
			}
			if !errors.Is(err, syscall.EPERM) || !errors.Is(err, syscall.EACCES) {
				t.Errorf("error %q does not wrap its cause", err)
			}
		})
	}
}

func TestReadPingGroupRange(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name    string
		content *string // nil: no file
		want    string
	}{
		{name: "disabled", content: ptr("1\t0\n"), want: "1 0"},
		{name: "everyone", content: ptr("0\t2147483647\n"), want: "0 2147483647"},
		{name: "missing", want: "unreadable: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name)
			if tt.content != nil {
				if err := os.WriteFile(path, []byte(*tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := readPingGroupRange(path); !strings.HasPrefix(got, tt.want) || (tt.content != nil && got != tt.want) {
				t.Errorf("readPingGroupRange = %q, want %q", got, tt.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
