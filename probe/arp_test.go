package probe

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lbprobe/lbprobe/test/netlab"
)

// arpLab is a LAN of namespaces on one bridge: the prober (10.99.0.1) and
// two nodes (10.99.0.2, .3). node1 holds 10.99.0.10; both nodes hold
// 10.99.0.20, so both answer ARP for it. The prober also has "bare", an
// interface without an IPv4 address.
type arpLab struct {
	prober       *netlab.Namespace
	node1, node2 net.HardwareAddr // the nodes' eth0 MACs
}

func newARPLab(t *testing.T) arpLab {
	t.Helper()
	lab := netlab.New(t) // skips unless root
	sw := lab.Namespace("sw")
	prober := lab.Namespace("prober")
	node1 := lab.Namespace("node1")
	node2 := lab.Namespace("node2")
	sw.Bridge("br0")
	sw.Connect("br0", "p0", prober, "eth0", "10.99.0.1/24")
	sw.Connect("br0", "p1", node1, "eth0", "10.99.0.2/24", "10.99.0.10/32", "10.99.0.20/32")
	sw.Connect("br0", "p2", node2, "eth0", "10.99.0.3/24", "10.99.0.20/32")
	lab.Veth(prober, "bare", sw, "pbare")
	for _, ns := range []*netlab.Namespace{prober, node1, node2} {
		ns.WaitUp("eth0")
	}
	sw.WaitUp("br0", "p0", "p1", "p2")
	return arpLab{prober: prober, node1: node1.MAC("eth0"), node2: node2.MAC("eth0")}
}

// arpIn runs an ARP probe inside ns.
func arpIn(t *testing.T, ns *netlab.Namespace, ctx context.Context, ip netip.Addr, opts ARPOptions) ARPResult {
	t.Helper()
	var res ARPResult
	if err := ns.Run(func() error {
		res = ARP(ctx, ip, opts, testLogger(t))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return res
}

func TestARP(t *testing.T) {
	t.Parallel()
	lab := newARPLab(t)
	sorted := func(macs ...net.HardwareAddr) []net.HardwareAddr {
		return slices.SortedFunc(slices.Values(macs), func(a, b net.HardwareAddr) int { return bytes.Compare(a, b) })
	}

	tests := []struct {
		name       string
		ip         string
		opts       ARPOptions // Interface eth0 when empty
		timeout    time.Duration
		cancel     time.Duration // cancel ctx after this long, when > 0
		wantOK     bool
		wantReason Reason
		wantMACs   []net.HardwareAddr
		minTook    time.Duration // the probe collects replies at least this long
		maxTook    time.Duration // and returns within this (plus slack)
		wantErr    string
	}{
		{name: "node holds the IP", ip: "10.99.0.10", opts: ARPOptions{Wait: 300 * time.Millisecond}, timeout: 2 * time.Second,
			wantOK: true, wantMACs: []net.HardwareAddr{lab.node1}, minTook: 300 * time.Millisecond, maxTook: 300 * time.Millisecond},
		{name: "node's own address", ip: "10.99.0.3", opts: ARPOptions{Wait: 300 * time.Millisecond}, timeout: 2 * time.Second,
			wantOK: true, wantMACs: []net.HardwareAddr{lab.node2}},
		{name: "ipv4-mapped ipv6", ip: "::ffff:10.99.0.10", opts: ARPOptions{Wait: 300 * time.Millisecond}, timeout: 2 * time.Second,
			wantOK: true, wantMACs: []net.HardwareAddr{lab.node1}},
		{name: "two nodes answer", ip: "10.99.0.20", opts: ARPOptions{Wait: 300 * time.Millisecond}, timeout: 2 * time.Second,
			wantOK: true, wantMACs: sorted(lab.node1, lab.node2)},
		{name: "wait until the deadline", ip: "10.99.0.20", timeout: 400 * time.Millisecond,
			wantOK: true, wantMACs: sorted(lab.node1, lab.node2), minTook: 400 * time.Millisecond, maxTook: 400 * time.Millisecond},
		{name: "nobody holds the IP", ip: "10.99.0.99", opts: ARPOptions{Wait: 300 * time.Millisecond}, timeout: 2 * time.Second,
			wantReason: ReasonTimeout, minTook: 300 * time.Millisecond, maxTook: 300 * time.Millisecond,
			wantErr: `no reply for 10.99.0.99 on "eth0" within 300ms (3 requests)`},
		{name: "deadline before wait", ip: "10.99.0.99", opts: ARPOptions{Wait: 5 * time.Second}, timeout: 300 * time.Millisecond,
			wantReason: ReasonTimeout, minTook: 300 * time.Millisecond, maxTook: 300 * time.Millisecond},
		{name: "cancelled", ip: "10.99.0.99", opts: ARPOptions{Wait: 5 * time.Second}, timeout: 5 * time.Second, cancel: 200 * time.Millisecond,
			wantReason: ReasonTimeout, minTook: 200 * time.Millisecond, maxTook: 200 * time.Millisecond, wantErr: "context canceled"},
		{name: "expired context", ip: "10.99.0.10", timeout: -time.Second,
			wantReason: ReasonTimeout, wantErr: "deadline exceeded"},
		{name: "unknown interface", ip: "10.99.0.10", opts: ARPOptions{Interface: "nope0"}, timeout: time.Second,
			wantReason: ReasonError, wantErr: `interface "nope0"`},
		{name: "interface without IPv4", ip: "10.99.0.10", opts: ARPOptions{Interface: "bare"}, timeout: time.Second,
			wantReason: ReasonError, wantErr: `interface "bare" has no IPv4 address`},
		{name: "negative wait", ip: "10.99.0.10", opts: ARPOptions{Wait: -time.Second}, timeout: time.Second,
			wantReason: ReasonError, wantErr: "negative wait"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.opts.Interface == "" {
				tt.opts.Interface = "eth0"
			}
			ctx, cancel := context.WithTimeout(t.Context(), tt.timeout)
			defer cancel()
			if tt.cancel > 0 {
				timer := time.AfterFunc(tt.cancel, cancel)
				defer timer.Stop()
			}
			start := time.Now()
			res := arpIn(t, lab.prober, ctx, netip.MustParseAddr(tt.ip), tt.opts)
			took := time.Since(start)
			checkResult(t, res.Result, tt.wantOK, tt.wantReason)
			if took < tt.minTook {
				t.Errorf("probe returned after %v, want at least %v", took, tt.minTook)
			}
			if tt.maxTook > 0 {
				checkNotLate(t, start, tt.maxTook)
			}
			if res.Interface != tt.opts.Interface {
				t.Errorf("Interface = %q, want %q", res.Interface, tt.opts.Interface)
			}
			if !slices.EqualFunc(res.MACs, tt.wantMACs, func(a, b net.HardwareAddr) bool { return bytes.Equal(a, b) }) {
				t.Errorf("MACs = %v, want %v", res.MACs, tt.wantMACs)
			}
			if tt.wantOK && (len(res.Phases) != 1 || res.Phases[0].Name != "resolve" || res.Phases[0].Duration <= 0 ||
				res.Phases[0].Duration > res.Duration) {
				t.Errorf("Phases = %v, want one resolve phase within %v", res.Phases, res.Duration)
			}
			if tt.wantErr != "" && (res.Err == nil || !strings.Contains(res.Err.Error(), tt.wantErr)) {
				t.Errorf("Err = %v, want it to contain %q", res.Err, tt.wantErr)
			}
		})
	}
}

// TestARPNotApplicable needs no namespace: it returns before looking at
// any interface.
func TestARPNotApplicable(t *testing.T) {
	t.Parallel()
	for _, ip := range []string{"fd00::10", "::1"} {
		res := ARP(t.Context(), netip.MustParseAddr(ip), ARPOptions{Interface: "eth0"}, testLogger(t))
		checkResult(t, res.Result, false, ReasonNotApplicable)
		if res.Err == nil || !strings.Contains(res.Err.Error(), "IPv6") {
			t.Errorf("ARP(%s) Err = %v, want it to name IPv6", ip, res.Err)
		}
	}
	res := ARP(t.Context(), netip.Addr{}, ARPOptions{Interface: "eth0"}, testLogger(t))
	checkResult(t, res.Result, false, ReasonError)
}

// TestARPWithoutPrivileges checks that a process without CAP_NET_RAW gets
// permission_denied. As root it runs itself again as user nobody (see
// runAsNobody). The probe uses loopback, so that even a process that may
// open the socket after all sends nothing off the machine.
func TestARPWithoutPrivileges(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		if os.Getenv(childEnv) != "" {
			t.Fatal("the child still runs as root")
		}
		runAsNobody(t, "^TestARPWithoutPrivileges$")
		return
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, 0)
	if err == nil {
		syscall.Close(fd)
		t.Skip("this unprivileged process may open packet sockets (file capabilities?)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	res := ARP(ctx, netip.MustParseAddr("127.0.0.1"), ARPOptions{Interface: "lo"}, testLogger(t))
	checkResult(t, res.Result, false, ReasonPermission)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "CAP_NET_RAW") {
		t.Errorf("Err = %v, want it to name CAP_NET_RAW", res.Err)
	}
}
