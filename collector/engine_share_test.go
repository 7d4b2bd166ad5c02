package collector

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/lbprobe/lbprobe/probe"
)

// A scrape with a long budget does not join a round started by a scrape with
// a short one: it would report the other's timeouts as its own.
func TestEngineShortRoundNotShared(t *testing.T) {
	p := newGateProber()
	targets := lbTargets(3)
	e := NewEngine(Config{Concurrency: 8, Probers: p.probers(), Options: Options{ProbeTimeout: time.Minute}}, SourceFunc(func() Targets { return targets }))

	short := make(chan *RoundResult)
	go func() { short <- e.Probe(t.Context(), 300*time.Millisecond) }()
	for range 3 { // the short round is in flight
		<-p.started
	}
	long := make(chan *RoundResult)
	go func() { long <- e.Probe(t.Context(), time.Minute) }()
	for range 3 { // the long scrape started its own round
		<-p.started
	}
	rs := <-short
	close(p.gate)
	rl := <-long
	if got := e.Rounds(); got != 2 {
		t.Errorf("rounds = %d, want 2", got)
	}
	if got := e.Joins(); got != 0 {
		t.Errorf("joins = %d, want 0", got)
	}
	if got := rs.ProbeCounts()[[2]string{"tcp", "timeout"}]; got != 3 {
		t.Errorf("short round: %d timeouts, want 3", got)
	}
	for _, lb := range rl.LoadBalancers() {
		if !lb.IPs[0].Reachable {
			t.Errorf("long round: %s not reachable (it got the short round's results?)", lb.Service)
		}
	}
	if rl.Budget != time.Minute {
		t.Errorf("long round's budget = %v, want 1m", rl.Budget)
	}
}

// Scrapes with the same budget share a round; a scrape with a shorter
// budget joins a longer round.
func TestEngineShareTolerance(t *testing.T) {
	tests := []struct {
		name          string
		first, second time.Duration
		wantJoins     uint64
	}{
		{"same budget", 10 * time.Second, 10 * time.Second, 1},
		{"second shorter", 10 * time.Second, time.Second, 1},
		{"second a little longer", 10 * time.Second, 12 * time.Second, 1},
		{"second much longer", time.Second, 10 * time.Second, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newGateProber()
			targets := lbTargets(1)
			e := NewEngine(Config{Concurrency: 8, Probers: p.probers(), Options: Options{ProbeTimeout: time.Minute}}, SourceFunc(func() Targets { return targets }))
			var wg sync.WaitGroup
			wg.Go(func() { e.Probe(t.Context(), tc.first) })
			<-p.started
			wg.Go(func() { e.Probe(t.Context(), tc.second) })
			deadline := time.Now().Add(5 * time.Second)
			for e.Joins()+e.Rounds() < 2 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			close(p.gate)
			wg.Wait()
			if got := e.Joins(); got != tc.wantJoins {
				t.Errorf("joins = %d, want %d (rounds %d)", got, tc.wantJoins, e.Rounds())
			}
		})
	}
}

// However the budgets differ, no more than maxRoundsInFlight rounds run at
// once.
func TestEngineRoundsInFlightBounded(t *testing.T) {
	p := newGateProber()
	targets := lbTargets(1)
	e := NewEngine(Config{Concurrency: 64, Probers: p.probers(), Options: Options{ProbeTimeout: time.Minute}}, SourceFunc(func() Targets { return targets }))
	var wg sync.WaitGroup
	for i := range 10 {
		// Each budget is far longer than the one before: none may join.
		budget := time.Duration(1<<i) * time.Second
		wg.Go(func() { e.Probe(t.Context(), budget) })
		if i < maxRoundsInFlight {
			<-p.started
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.Joins()+e.Rounds() < 10 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(p.gate)
	wg.Wait()
	if got := e.Rounds(); got != maxRoundsInFlight {
		t.Errorf("rounds = %d, want %d", got, maxRoundsInFlight)
	}
}

// Debug probes of a black-holed port hold only the debug slots: a round
// still gets every one of its own.
func TestEngineDebugProbesOwnSlots(t *testing.T) {
	blackHole := uint16(9)
	tcp := func(ctx context.Context, ap netip.AddrPort, _ *slog.Logger) probe.Result {
		if ap.Port() == blackHole {
			<-ctx.Done()
			return probe.Result{Reason: probe.ReasonTimeout, Err: ctx.Err()}
		}
		return probe.Result{Success: true, Duration: time.Millisecond}
	}
	targets := lbTargets(4)
	e := NewEngine(Config{Concurrency: 2, DebugConcurrency: 2, Probers: Probers{TCP: tcp}, Options: Options{ProbeTimeout: time.Minute}},
		SourceFunc(func() Targets { return targets }))
	hole := lbTargets(1)
	hole.LoadBalancers[0].Ports[0].Port = blackHole
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() { e.ProbeTargets(ctx, hole, time.Minute, slog.New(slog.DiscardHandler)) })
	}
	defer func() { cancel(); wg.Wait() }()
	deadline := time.Now().Add(5 * time.Second)
	for len(e.debugSem) < cap(e.debugSem) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	r := e.Probe(t.Context(), 2*time.Second)
	for _, lb := range r.LoadBalancers() {
		if !lb.IPs[0].Reachable {
			t.Errorf("%s not reachable while debug probes are stuck", lb.Service)
		}
	}
}
