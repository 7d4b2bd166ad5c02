package probe

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"

	"github.com/lbprobe/lbprobe/test/netlab"
)

// ndpLab is a LAN of namespaces on one bridge whose kernels answer
// Neighbor Solicitations, multicast and unicast: the prober (fd99::1) and
// two nodes; node1 has fd99::10 and fd99::11, both have fd99::30. The
// parallel cases probe distinct IPs: probes of one IP share one run.
type ndpLab struct {
	prober, node2NS *netlab.Namespace
	node1, node2    net.HardwareAddr
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
	sw.Connect("br0", "p1", node1, "eth0", "10.99.0.2/24", "fd99::2/64", "fd99::10/64", "fd99::11/64", "fd99::30/64")
	sw.Connect("br0", "p2", node2, "eth0", "10.99.0.3/24", "fd99::3/64", "fd99::30/64")
	for _, ns := range []*netlab.Namespace{prober, node1, node2} {
		ns.WaitUp("eth0")
	}
	sw.WaitUp("br0", "p0", "p1", "p2")
	return ndpLab{prober: prober, node2NS: node2, node1: node1.MAC("eth0"), node2: node2.MAC("eth0")}
}

// sortedMACs returns macs in the order NDP reports them.
func sortedMACs(macs ...net.HardwareAddr) []net.HardwareAddr {
	return slices.SortedFunc(slices.Values(macs), func(a, b net.HardwareAddr) int { return bytes.Compare(a, b) })
}

// equalMACs says whether a and b hold the same MACs in the same order.
func equalMACs(a, b []net.HardwareAddr) bool {
	return slices.EqualFunc(a, b, func(x, y net.HardwareAddr) bool { return bytes.Equal(x, y) })
}

func TestNDP(t *testing.T) {
	t.Parallel()
	lab := newNDPLab(t)
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
			multicast: sortedMACs(lab.node1, lab.node2), asked: sortedMACs(lab.node1, lab.node2), unicast: sortedMACs(lab.node1, lab.node2)},
		{name: "a unicast solicitation to a MAC that does not hold it", ip: "fd99::11", opts: NDPOptions{Unicast: []net.HardwareAddr{lab.node2}}, wantOK: true,
			multicast: []net.HardwareAddr{lab.node1}, asked: sortedMACs(lab.node1, lab.node2), unicast: []net.HardwareAddr{lab.node1}},
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
				if !equalMACs(got, want) {
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

// answerMulticastOnly answers, from ns's eth0, the Neighbor Solicitations
// for target sent to its solicited-node multicast address and drops the
// unicast ones, as Cilium's responder did (cilium#44311), until the test
// ends. solicited counts the multicast solicitations it saw.
func answerMulticastOnly(t *testing.T, ns *netlab.Namespace, target netip.Addr) (solicited func() int64) {
	t.Helper()
	var (
		conn *packet.Conn
		mac  net.HardwareAddr
		seen atomic.Int64
	)
	if err := ns.Run(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		conn, err = packet.Listen(ifi, packet.Raw, int(etherTypeIPv6), nil)
		return err
	}); err != nil {
		t.Fatalf("responder socket: %v", err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { conn.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			f, ok := ParseNDPFrame(buf[:n])
			if !ok || !f.Dst.IsMulticast() {
				continue
			}
			if sol, ok := f.Message.(*ndp.NeighborSolicitation); !ok || sol.TargetAddress != target {
				continue
			}
			seen.Add(1)
			frame, err := AdvertisementFrame(mac, f.SrcMAC, target, f.Src, target)
			if err == nil {
				_, err = conn.WriteTo(frame, &packet.Addr{HardwareAddr: f.SrcMAC})
			}
			if err != nil {
				t.Errorf("responder: %v", err)
			}
		}
	}()
	return seen.Load
}

// TestNDPProbesOfOneIPShareOneRun: two probes of one IP at once (Services
// sharing it, /probe during a round) make one run and get its result. Were
// they two runs, one's multicast answers would count as unicast answers in
// the other's and hide an announcer that drops unicast solicitations; were
// they queued, the second would wait out the first's window (the engine's
// window is the probe timeout) and time out.
func TestNDPProbesOfOneIPShareOneRun(t *testing.T) {
	t.Parallel()
	lab := newNDPLab(t)
	tests := []struct {
		name    string
		target  string
		wait    time.Duration // NDPOptions.Wait; 0: the context's deadline, as the engine probes
		timeout [2]time.Duration
		start   [2]time.Duration // when each probe starts
		unicast [2][]net.HardwareAddr
		asked   []net.HardwareAddr // the run's unicast solicitations
		second  Reason             // the second probe's reason: ReasonNone when it gets an answer
		runs    int64              // how many runs solicit: 1 when the second joins the first's
	}{
		{name: "the engine's case: two jobs, one deadline, no wait", target: "fd99::54",
			timeout: [2]time.Duration{time.Second, time.Second}, asked: []net.HardwareAddr{lab.node2}},
		{name: "the first's window is under half the second's: the second runs its own after it", target: "fd99::55",
			timeout: [2]time.Duration{150 * time.Millisecond, 1500 * time.Millisecond}, start: [2]time.Duration{0, 20 * time.Millisecond},
			asked: []net.HardwareAddr{lab.node2}, runs: 2},
		{name: "the second starts at the first's unicast phase", target: "fd99::50", wait: 600 * time.Millisecond,
			timeout: [2]time.Duration{3 * time.Second, 3 * time.Second}, start: [2]time.Duration{0, 300 * time.Millisecond},
			asked: []net.HardwareAddr{lab.node2}},
		{name: "the engine's window: both until the probe timeout", target: "fd99::51",
			timeout: [2]time.Duration{time.Second, time.Second}, start: [2]time.Duration{0, 20 * time.Millisecond},
			asked: []net.HardwareAddr{lab.node2}},
		{name: "the second's announcer MAC is asked too", target: "fd99::52", wait: 600 * time.Millisecond,
			timeout: [2]time.Duration{3 * time.Second, 3 * time.Second}, start: [2]time.Duration{0, 50 * time.Millisecond},
			unicast: [2][]net.HardwareAddr{nil, {lab.node1}}, asked: sortedMACs(lab.node1, lab.node2)},
		{name: "the second gives up first: not_started, no evidence", target: "fd99::53", wait: 600 * time.Millisecond,
			timeout: [2]time.Duration{3 * time.Second, 100 * time.Millisecond}, start: [2]time.Duration{0, 50 * time.Millisecond},
			asked: []net.HardwareAddr{lab.node2}, second: ReasonNotStarted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := netip.MustParseAddr(tt.target) // no kernel has it: only the responder answers
			solicited := answerMulticastOnly(t, lab.node2NS, target)
			results := make([]ARPResult, 2)
			var wg sync.WaitGroup
			base := time.Now()
			for i := range results {
				wg.Go(func() {
					time.Sleep(tt.start[i])
					if err := lab.prober.Run(func() error {
						// Deadlines from one base: equal when the starts and timeouts are.
						ctx, cancel := context.WithDeadline(t.Context(), base.Add(tt.start[i]+tt.timeout[i]))
						defer cancel()
						results[i] = NDP(ctx, target, NDPOptions{Interface: "eth0", Wait: tt.wait, Unicast: tt.unicast[i]}, testLogger(t))
						return nil
					}); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			runs := max(tt.runs, 1)
			if n := solicited(); n < runs || n > runs*arpRequests {
				t.Errorf("the responder saw %d multicast solicitations, want %d to %d: %d run(s)", n, runs, runs*arpRequests, runs)
			}
			for i, res := range results {
				if i == 1 && tt.second != ReasonNone {
					if res.Reason != tt.second || res.NDP != nil {
						t.Errorf("second probe: reason %q (%v), modes %+v; want %q and no modes", res.Reason, res.Err, res.NDP, tt.second)
					}
					continue
				}
				switch {
				case !res.Success || res.NDP == nil:
					t.Errorf("probe %d: success %v (%v), modes %+v; want an answer", i, res.Success, res.Err, res.NDP)
				case !equalMACs(res.NDP.Multicast, []net.HardwareAddr{lab.node2}):
					t.Errorf("probe %d: multicast answers %v, want %v", i, res.NDP.Multicast, lab.node2)
				case !equalMACs(res.NDP.UnicastAsked, tt.asked):
					t.Errorf("probe %d: unicast solicitations to %v, want %v", i, res.NDP.UnicastAsked, tt.asked)
				case len(res.NDP.Unicast) != 0:
					t.Errorf("probe %d: unicast answers %v, want none: another run's multicast answers counted", i, res.NDP.Unicast)
				}
			}
			ndpFlights.Lock()
			_, left := ndpFlights.m[ndpKey{"eth0", target}]
			ndpFlights.Unlock()
			if left {
				t.Errorf("the run of %s is still in flight after both probes returned", target)
			}
		})
	}
}
