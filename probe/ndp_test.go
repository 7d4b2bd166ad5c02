package probe

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lbprobe/lbprobe/test/netlab"
)

// ndpLab is a LAN of namespaces on one bridge whose kernels answer
// Neighbor Solicitations, multicast and unicast: the prober (fd99::1) and
// two nodes; node1 has fd99::10, both have fd99::30.
type ndpLab struct {
	prober       *netlab.Namespace
	node1, node2 net.HardwareAddr
}

func newNDPLab(t *testing.T) ndpLab {
	t.Helper()
	lab := netlab.New(t) // skips unless root
	sw := lab.Namespace("sw")
	prober := lab.Namespace("prober")
	node1 := lab.Namespace("node1")
	node2 := lab.Namespace("node2")
	sw.Bridge("br0")
	sw.Connect("br0", "p0", prober, "eth0", "10.99.0.1/24", "fd99::1/64")
	sw.Connect("br0", "p1", node1, "eth0", "10.99.0.2/24", "fd99::2/64", "fd99::10/64", "fd99::30/64")
	sw.Connect("br0", "p2", node2, "eth0", "10.99.0.3/24", "fd99::3/64", "fd99::30/64")
	for _, ns := range []*netlab.Namespace{prober, node1, node2} {
		ns.WaitUp("eth0")
	}
	sw.WaitUp("br0", "p0", "p1", "p2")
	return ndpLab{prober: prober, node1: node1.MAC("eth0"), node2: node2.MAC("eth0")}
}

func TestNDP(t *testing.T) {
	t.Parallel()
	lab := newNDPLab(t)
	sorted := func(macs ...net.HardwareAddr) []net.HardwareAddr {
		return slices.SortedFunc(slices.Values(macs), func(a, b net.HardwareAddr) int { return bytes.Compare(a, b) })
	}
	tests := []struct {
		name       string
		ip         string
		opts       NDPOptions
		wantOK     bool
		wantReason Reason
		multicast  []net.HardwareAddr
		asked      []net.HardwareAddr
		unicast    []net.HardwareAddr
		wantErr    string
		noModes    bool // an early failure: no solicitation could go out
	}{
		{name: "the holder answers both", ip: "fd99::10", wantOK: true,
			multicast: []net.HardwareAddr{lab.node1}, asked: []net.HardwareAddr{lab.node1}, unicast: []net.HardwareAddr{lab.node1}},
		{name: "two answer", ip: "fd99::30", wantOK: true,
			multicast: sorted(lab.node1, lab.node2), asked: sorted(lab.node1, lab.node2), unicast: sorted(lab.node1, lab.node2)},
		{name: "a unicast solicitation to a MAC that does not hold it", ip: "fd99::10", opts: NDPOptions{Unicast: []net.HardwareAddr{lab.node2}}, wantOK: true,
			multicast: []net.HardwareAddr{lab.node1}, asked: sorted(lab.node1, lab.node2), unicast: []net.HardwareAddr{lab.node1}},
		{name: "nobody", ip: "fd99::99", wantReason: ReasonTimeout, wantErr: `no advertisement for fd99::99 on "eth0"`},
		{name: "an IPv4 target", ip: "10.99.0.2", wantReason: ReasonNotApplicable, wantErr: "NDP is for IPv6", noModes: true},
		{name: "unknown interface", ip: "fd99::10", opts: NDPOptions{Interface: "nope0"}, wantReason: ReasonError, wantErr: `interface "nope0"`, noModes: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.opts.Interface == "" {
				tt.opts.Interface = "eth0"
			}
			tt.opts.Wait = 600 * time.Millisecond
			var res ARPResult
			if err := lab.prober.Run(func() error {
				ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
				defer cancel()
				res = NDP(ctx, netip.MustParseAddr(tt.ip), tt.opts, testLogger(t))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if res.Success != tt.wantOK || res.Reason != tt.wantReason {
				t.Fatalf("NDP(%s): success %v reason %q (%v), want %v %q", tt.ip, res.Success, res.Reason, res.Err, tt.wantOK, tt.wantReason)
			}
			if tt.wantErr != "" && (res.Err == nil || !strings.Contains(res.Err.Error(), tt.wantErr)) {
				t.Errorf("error %v, want one containing %q", res.Err, tt.wantErr)
			}
			switch {
			case tt.noModes && res.NDP != nil:
				t.Fatalf("NDP modes %+v after an early failure, want none", res.NDP)
			case tt.noModes:
				return
			case res.NDP == nil:
				t.Fatal("no NDP modes in the result")
			}
			eq := func(what string, got, want []net.HardwareAddr) {
				if !slices.EqualFunc(got, want, func(a, b net.HardwareAddr) bool { return bytes.Equal(a, b) }) {
					t.Errorf("%s: %v, want %v", what, got, want)
				}
			}
			eq("multicast", res.NDP.Multicast, tt.multicast)
			eq("unicast asked", res.NDP.UnicastAsked, tt.asked)
			eq("unicast", res.NDP.Unicast, tt.unicast)
			if tt.wantOK {
				eq("MACs", res.MACs, tt.multicast) // every MAC that answered a unicast one answered the multicast one here
			}
		})
	}
}
