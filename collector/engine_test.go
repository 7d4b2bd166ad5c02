package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lbprobe/lbprobe/probe"
	"github.com/lbprobe/lbprobe/test/poll"
)

// gateProber is a TCP probe function whose probes block until the gate opens or
// their context ends, and that records how many ran at once. The other
// kinds succeed at once. It tests the engine's scheduling, not the network
// (the probers and the binary are tested against real peers).
type gateProber struct {
	gate    chan struct{}
	running atomic.Int32
	maxSeen atomic.Int32
	calls   atomic.Int32
	started chan struct{} // receives once per TCP call, when buffered room allows
}

func newGateProber() *gateProber {
	return &gateProber{gate: make(chan struct{}), started: make(chan struct{}, 1024)}
}

func (g *gateProber) TCP(ctx context.Context, _ netip.AddrPort, _ *slog.Logger) probe.Result {
	g.calls.Add(1)
	n := g.running.Add(1)
	defer g.running.Add(-1)
	for {
		m := g.maxSeen.Load()
		if n <= m || g.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case g.started <- struct{}{}:
	default:
	}
	select {
	case <-g.gate:
		return probe.Result{Success: true, Duration: time.Millisecond}
	case <-ctx.Done():
		return probe.Result{Reason: probe.ReasonTimeout, Err: ctx.Err()}
	}
}

// probers returns the engine's probe functions: the gated TCP probe; every
// other kind is left to package probe (the targets here have only TCP ports).
func (g *gateProber) probers() Probers { return Probers{TCP: g.TCP} }

// lbTargets returns n load balancers with one TCP port each on 127.0.0.1.
func lbTargets(n int) Targets {
	var t Targets
	for i := range n {
		t.LoadBalancers = append(t.LoadBalancers, LoadBalancer{
			Namespace: "ns",
			Service:   "svc" + strconv.Itoa(i),
			IPs:       []netip.Addr{netip.MustParseAddr("127.0.0.1")},
			Ports:     []Port{{Port: uint16(10000 + i), Protocol: "TCP", Probe: ProbeTCP}},
		})
	}
	return t
}

func TestEngineConcurrencyBound(t *testing.T) {
	tests := []struct {
		name        string
		concurrency int
		targets     int
	}{
		{"bound below target count", 4, 50},
		{"bound of one", 1, 5},
		{"bound above target count", 64, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newGateProber()
			targets := lbTargets(tc.targets)
			e := NewEngine(Config{Concurrency: tc.concurrency, Probers: p.probers(), Options: Options{ProbeTimeout: time.Minute}}, SourceFunc(func() Targets { return targets }))
			done := make(chan *RoundResult)
			go func() { done <- e.Probe(t.Context(), time.Minute) }()
			want := min(tc.concurrency, tc.targets)
			for range want {
				<-p.started
			}
			close(p.gate)
			r := <-done
			if got := p.maxSeen.Load(); int(got) != want {
				t.Errorf("max concurrent probes = %d, want %d", got, want)
			}
			if got := p.calls.Load(); int(got) != tc.targets {
				t.Errorf("probes run = %d, want %d", got, tc.targets)
			}
			for _, lb := range r.LoadBalancers() {
				if !lb.IPs[0].Reachable {
					t.Errorf("%s not reachable", lb.Service)
				}
			}
		})
	}
}

func TestEngineCoalescesScrapes(t *testing.T) {
	p := newGateProber()
	targets := lbTargets(3)
	e := NewEngine(Config{Concurrency: 8, Probers: p.probers(), Options: Options{ProbeTimeout: time.Minute}}, SourceFunc(func() Targets { return targets }))

	var wg sync.WaitGroup
	results := make([]*RoundResult, 2)
	wg.Go(func() { results[0] = e.Probe(t.Context(), time.Minute) })
	for range 3 { // the first round is in flight
		<-p.started
	}
	wg.Go(func() { results[1] = e.Probe(t.Context(), time.Minute) })
	// The second scrape must join the round in flight, not start one.
	waitFor(t, func() error {
		if n := e.Joins(); n != 1 {
			return fmt.Errorf("Joins() = %d, want 1", n)
		}
		return nil
	})
	close(p.gate)
	wg.Wait()
	if got := e.Rounds(); got != 1 {
		t.Fatalf("rounds after two overlapping scrapes = %d, want 1", got)
	}
	if got := p.calls.Load(); got != 3 {
		t.Errorf("probes = %d, want 3 (one round)", got)
	}
	if results[0].Started != results[1].Started {
		t.Errorf("the scrapes got different rounds: %v and %v", results[0].Started, results[1].Started)
	}

	// A scrape after the round finished gets a new round, never the old results.
	waitFor(t, func() error {
		if e.Last() == nil {
			return errors.New("Last() = nil: no round finished")
		}
		return nil
	})
	r3 := e.Probe(t.Context(), time.Minute)
	if got := e.Rounds(); got != 2 {
		t.Errorf("rounds after a later scrape = %d, want 2", got)
	}
	if !r3.Started.After(results[0].Started) {
		t.Errorf("later scrape got a round started at %v, not after %v", r3.Started, results[0].Started)
	}
}

// At the deadline, the probes that ran time out and those that never got a
// slot are not_started: an overloaded prober is not a dead target.
func TestEngineDeadlineReportsTimeouts(t *testing.T) {
	p := newGateProber() // the gate never opens
	targets := lbTargets(5)
	e := NewEngine(Config{Concurrency: 2, Probers: p.probers(), Options: Options{ProbeTimeout: time.Minute}}, SourceFunc(func() Targets { return targets }))
	start := time.Now()
	r := e.Probe(t.Context(), 200*time.Millisecond)
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("Probe returned after %v, want about 200ms", elapsed)
	}
	counts := r.ProbeCounts()
	if got := counts[[2]string{"tcp", "timeout"}]; got != 2 {
		t.Errorf("timeouts = %d, want 2, the probes that had a slot (counts %v)", got, counts)
	}
	if got := counts[[2]string{"tcp", "not_started"}]; got != 3 {
		t.Errorf("not_started = %d, want 3 (counts %v)", got, counts)
	}
	if got := r.NotStarted(); got != 3 {
		t.Errorf("NotStarted() = %d, want 3", got)
	}
	for _, lb := range r.LoadBalancers() {
		if lb.IPs[0].Reachable {
			t.Errorf("%s reachable after a timeout", lb.Service)
		}
	}
}

func TestEngineScrapeContextEndsFirst(t *testing.T) {
	p := newGateProber()
	targets := lbTargets(2)
	e := NewEngine(Config{Concurrency: 2, Probers: p.probers(), Options: Options{ProbeTimeout: time.Minute}}, SourceFunc(func() Targets { return targets }))
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	r := e.Probe(ctx, time.Minute)
	if got := r.ProbeCounts()[[2]string{"tcp", "timeout"}]; got != 2 {
		t.Errorf("timeouts = %d, want 2", got)
	}
	close(p.gate)
}

func TestTargetsDedupe(t *testing.T) {
	ip := netip.MustParseAddr("127.0.0.1")
	in := Targets{
		LoadBalancers: []LoadBalancer{
			{Namespace: "a", Service: "web", IPs: []netip.Addr{ip, ip}, Ports: []Port{{Port: 80, Protocol: "TCP"}, {Port: 80, Protocol: "TCP"}, {Port: 80, Protocol: "UDP"}}},
			{Namespace: "a", Service: "web", IPs: []netip.Addr{ip}},
			{Namespace: "b", Service: "web", IPs: []netip.Addr{ip}},
		},
		Hostnames: []Hostname{
			{Hostname: "x.test", Source: "static", Servers: []string{"s:53", "s:53"}},
			{Hostname: "x.test", Source: "static"},
			{Hostname: "x.test", Source: "httproute", Namespace: "n", Name: "r"},
		},
	}
	out := in.dedupe()
	if len(out.LoadBalancers) != 2 || len(out.LoadBalancers[0].IPs) != 1 || len(out.LoadBalancers[0].Ports) != 2 {
		t.Errorf("load balancers after dedupe = %+v", out.LoadBalancers)
	}
	if len(out.Hostnames) != 2 || len(out.Hostnames[0].Servers) != 1 {
		t.Errorf("hostnames after dedupe = %+v", out.Hostnames)
	}
}

// waitFor polls check every millisecond until it passes, failing the test
// with check's last error after 5 s.
func waitFor(t *testing.T, check func() error) {
	t.Helper()
	if err := poll.Until(t.Context(), 5*time.Second, time.Millisecond, check); err != nil {
		t.Fatal(err)
	}
}

func TestEngineSetOptionsAppliesToLaterRounds(t *testing.T) {
	// Each TCP probe reports how long its context gives it, then waits
	// for the gate.
	budgets := make(chan time.Duration, 4)
	gate := make(chan struct{})
	tcp := func(ctx context.Context, _ netip.AddrPort, _ *slog.Logger) probe.Result {
		deadline, _ := ctx.Deadline()
		budgets <- time.Until(deadline)
		<-gate
		return probe.Result{Success: true}
	}
	targets := lbTargets(2)
	e := NewEngine(Config{Concurrency: 1, Probers: Probers{TCP: tcp}, Options: Options{ProbeTimeout: time.Minute}},
		SourceFunc(func() Targets { return targets }))
	done := make(chan *RoundResult)
	go func() { done <- e.Probe(t.Context(), time.Hour) }()
	first := <-budgets
	// With a concurrency of 1, the round's second probe starts after this
	// change: it must still get the options the round started with.
	e.SetOptions(Options{ProbeTimeout: time.Second})
	close(gate)
	second := <-budgets
	<-done
	for i, got := range []time.Duration{first, second} {
		if got < 50*time.Second || got > time.Minute {
			t.Errorf("probe %d of the first round got %v, want about the round's 1m probe timeout", i+1, got)
		}
	}
	go func() { done <- e.Probe(t.Context(), time.Hour) }()
	for range 2 {
		if got := <-budgets; got > time.Second {
			t.Errorf("a probe of the next round got %v, want at most the new 1s probe timeout", got)
		}
	}
	<-done
}

func TestAutoConcurrency(t *testing.T) {
	for _, tt := range []struct {
		limit    uint64
		reserved int
		want     int
	}{
		{1024, 512, 224},    // a container's usual 1024: half of what the HTTP connections leave
		{4096, 1024, 1504},  // systemd's default soft limit raised by Go to its hard limit
		{20000, 1024, 4096}, // capped
		{256, 128, 128},     // floored
		{1 << 62, 1024, 4096},
	} {
		if got := AutoConcurrency(tt.limit, tt.reserved); got != tt.want {
			t.Errorf("AutoConcurrency(%d, %d) = %d, want %d", tt.limit, tt.reserved, got, tt.want)
		}
	}
}

// TestEngineStartsSlowJobsFirst: the probes that hung until their timeout
// in the last round start first in the next, so that they wait side by side
// with the fast ones; at most half the slots go to them.
func TestEngineStartsSlowJobsFirst(t *testing.T) {
	const n = 12
	slow := map[uint16]bool{10009: true, 10010: true, 10011: true}
	tcp := func(ctx context.Context, ap netip.AddrPort, _ *slog.Logger) probe.Result {
		if slow[ap.Port()] {
			<-ctx.Done()
			return probe.Result{Reason: probe.ReasonTimeout, Err: ctx.Err()}
		}
		return probe.Result{Success: true}
	}
	for _, c := range []struct {
		concurrency int
		wantFirst   int // how many slow ones start first in the next round
	}{{8, 3}, {4, 2}, {1, 0}} {
		t.Run(fmt.Sprintf("concurrency=%d", c.concurrency), func(t *testing.T) {
			targets := lbTargets(n)
			e := NewEngine(Config{Concurrency: c.concurrency, Probers: Probers{TCP: tcp}, Options: Options{ProbeTimeout: 50 * time.Millisecond}},
				SourceFunc(func() Targets { return targets }))
			order := func() []uint16 {
				r := e.newRound(e.Targets(), time.Second, e.logger)
				r.startFirst(e.slow.Load(), cap(e.sem)/2)
				var ports []uint16
				for _, i := range r.order {
					ports = append(ports, r.jobs[i].port.Port)
				}
				return ports
			}
			if o := order(); o[0] != 10000 || o[n-1] != 10011 {
				t.Fatalf("before any round the order is %v, want the targets' order", o)
			}
			r := e.Probe(t.Context(), 5*time.Second)
			if got := r.ProbeCounts()[[2]string{"tcp", "timeout"}]; got != len(slow) {
				t.Fatalf("%d timeouts, want %d", got, len(slow))
			}
			waitIdle(t, e)
			var want []uint16
			for i := range c.wantFirst {
				want = append(want, uint16(10009+i))
			}
			for i := range n {
				if p := uint16(10000 + i); !slices.Contains(want, p) {
					want = append(want, p)
				}
			}
			if o := order(); !slices.Equal(o, want) {
				t.Errorf("after a round the order is %v, want %v: %d slow ones first, then the rest in order", o, want, c.wantFirst)
			}
		})
	}
}

// waitIdle waits until the engine has no round in flight (the last one has
// handed its slow jobs over).
func waitIdle(t testing.TB, e *Engine) {
	t.Helper()
	if err := poll.Until(t.Context(), 5*time.Second, time.Millisecond, func() error {
		e.mu.Lock()
		defer e.mu.Unlock()
		if len(e.inflight) > 0 {
			return errors.New("a round is in flight")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestEngineWaitingProbesGiveWay: past maxActive, probes that wait on the
// network let the next ones start, up to --probe.concurrency; without that
// the probes after the first maxActive hanging ones would wait for their
// timeouts.
func TestEngineWaitingProbesGiveWay(t *testing.T) {
	const hanging, fast = maxActive + 200, 100
	var calls, done atomic.Int32
	tcp := func(ctx context.Context, ap netip.AddrPort, _ *slog.Logger) probe.Result {
		calls.Add(1)
		if ap.Port() < 10000+hanging {
			<-ctx.Done()
			return probe.Result{Reason: probe.ReasonTimeout, Err: ctx.Err()}
		}
		done.Add(1)
		return probe.Result{Success: true}
	}
	targets := lbTargets(hanging + fast)
	e := NewEngine(Config{Concurrency: 1000, Probers: Probers{TCP: tcp}, Options: Options{ProbeTimeout: 3 * time.Second}},
		SourceFunc(func() Targets { return targets }))
	go e.Probe(t.Context(), 5*time.Second)
	if err := poll.Until(t.Context(), 2*time.Second, 5*time.Millisecond, func() error {
		if c, d := calls.Load(), done.Load(); c != hanging+fast || d != fast {
			return fmt.Errorf("%d probes started, %d fast ones done; want all %d started and %d done before the hanging ones time out", c, d, hanging+fast, fast)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, e)
}
