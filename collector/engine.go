package collector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lbprobe/lbprobe/collector/shard"
	"github.com/lbprobe/lbprobe/probe"
)

// Config is what an engine is built with; it does not change while the
// engine runs.
type Config struct {
	// Concurrency bounds how many probes of the rounds run at once; at
	// least 1.
	Concurrency int
	// DebugConcurrency bounds how many probes of ProbeTargets (the debug
	// view) run at once, apart from the rounds' so that a flood of debug
	// requests cannot take the slots scrapes need; 0 means
	// DefaultDebugConcurrency.
	DebugConcurrency int
	// Probers are the probe functions; the zero value probes the network.
	Probers Probers
	// Logger receives the engine's log lines; nil discards them.
	Logger *slog.Logger
	// Options are the round options in force until the first SetOptions.
	Options Options
	// Shard picks the targets this instance probes (--shard,
	// --total-shards); nil probes every target.
	Shard *shard.Selector
}

// Options tune the rounds. An engine holds one immutable Options value and
// SetOptions replaces it whole (a config reload), so that every round runs
// with one consistent set: a round reads it once, when it starts.
type Options struct {
	// ProbeTimeout bounds each probe; 0 means 5 s.
	ProbeTimeout time.Duration
	// DNSTransport is "udp" (TCP fallback on truncation) or "tcp".
	DNSTransport string
	// ARPInterfaces selects the interfaces (up, with an IPv4 address) on
	// which every load balancer IP is ARP-probed; nil turns ARP probes off.
	ARPInterfaces *regexp.Regexp
	// RouteCheck turns on the lookup of the route to every load balancer IP;
	// RouteExpect, when set, is the interface pattern that route must use.
	RouteCheck  bool
	RouteExpect *regexp.Regexp
	// NodeName is the node lbprobe runs on (DaemonSet mode): a node cannot
	// ARP a VIP that it holds itself, so those probes are skipped.
	NodeName string
}

// defaultProbeTimeout applies when Options.ProbeTimeout is 0.
const defaultProbeTimeout = 5 * time.Second

// AutoConcurrency is the probe bound --probe.concurrency=0 picks from the
// open-file limit: half of what the limit leaves after the HTTP
// connections (reserved), so that each probe may hold two sockets (a DNS
// check's A and AAAA), between 128 and 4096. A probe that waits on a target
// that does not answer holds its slot until its timeout: the bound, not
// the CPU, is what makes a round of many such targets slow.
func AutoConcurrency(openFileLimit uint64, reserved int) int {
	free := int(min(openFileLimit, 1<<20)) - reserved - 64
	return min(max(free/2, 128), 4096)
}

// DefaultDebugConcurrency is the bound of debug probes when
// Config.DebugConcurrency is 0.
const DefaultDebugConcurrency = 8

// maxRoundsInFlight bounds the rounds running at once: a scrape that may
// not join any (their deadlines are too early for it) starts another, up to
// this many; past it, it joins the one that ends last.
const maxRoundsInFlight = 4

// shareTolerance is how much earlier than a scrape's own deadline the
// deadline of a round in flight may be for the scrape to join it: a quarter
// of its budget, at least 250 ms. Two Prometheus replicas with the same
// scrape timeout share a round when they ask within that of each other,
// while a scrape with a short budget never cuts a long one's round short.
func shareTolerance(budget time.Duration) time.Duration {
	return max(250*time.Millisecond, budget/4)
}

// Engine runs rounds of probes over the targets of its sources.
type Engine struct {
	sources  []Source
	probers  Probers
	logger   *slog.Logger
	opts     atomic.Pointer[Options]
	shard    *shard.Selector
	sem      chan struct{} // bounds concurrent probes of the rounds
	debugSem chan struct{} // bounds concurrent probes of ProbeTargets

	mu       sync.Mutex
	inflight []*round // rounds running, oldest first
	last     *RoundResult

	rounds atomic.Uint64 // rounds started
	joins  atomic.Uint64 // Probe calls that joined a round in flight
	// onRoundDone is called with every finished round (self-metrics).
	onRoundDone func(*RoundResult)
}

// NewEngine returns an engine over sources.
func NewEngine(cfg Config, sources ...Source) *Engine {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{
		sources:  sources,
		probers:  cfg.Probers.withDefaults(),
		logger:   cfg.Logger,
		shard:    cfg.Shard,
		sem:      make(chan struct{}, max(cfg.Concurrency, 1)),
		debugSem: make(chan struct{}, cmp.Or(max(cfg.DebugConcurrency, 0), DefaultDebugConcurrency)),
	}
	e.SetOptions(cfg.Options)
	return e
}

// SetOptions replaces the round options for rounds that start later; a
// round in flight keeps the options it started with.
func (e *Engine) SetOptions(o Options) { e.opts.Store(&o) }

// Options returns the options in force.
func (e *Engine) Options() Options { return *e.opts.Load() }

// OnRoundDone registers f to be called once with every finished round. Call
// it before the first round.
func (e *Engine) OnRoundDone(f func(*RoundResult)) { e.onRoundDone = f }

// Rounds returns how many rounds have been started.
func (e *Engine) Rounds() uint64 { return e.rounds.Load() }

// Joins returns how many Probe calls joined a round already in flight.
func (e *Engine) Joins() uint64 { return e.joins.Load() }

// Last returns the last finished round, or nil before the first one.
func (e *Engine) Last() *RoundResult {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last
}

// Targets returns the merged targets of all sources, as they are now, that
// the engine's shard owns.
func (e *Engine) Targets() Targets {
	return e.AllTargets().Shard(e.shard.Get())
}

// AllTargets returns the merged targets of all sources, every shard's.
func (e *Engine) AllTargets() Targets {
	var t Targets
	for _, s := range e.sources {
		t = t.Merge(s.Targets())
	}
	return t.dedupe()
}

// Shard returns the shard the engine probes.
func (e *Engine) Shard() shard.Shard { return e.shard.Get() }

// Probe returns the results of a round that is in flight or that it starts
// now, the round bounded by budget from its start. A scrape that arrives
// while a round is in flight joins it (two Prometheus replicas scraping
// together cost one round) when that round's deadline is not earlier than
// its own by more than shareTolerance; otherwise it starts its own round. A
// finished round is never handed out again. When ctx ends before the
// round, Probe returns at once with the unfinished probes reported as
// timeouts.
func (e *Engine) Probe(ctx context.Context, budget time.Duration) *RoundResult {
	e.mu.Lock()
	r := e.joinable(time.Now().Add(budget - shareTolerance(budget)))
	if r == nil {
		r = e.startRound(budget)
		e.inflight = append(e.inflight, r)
	} else {
		e.joins.Add(1)
	}
	e.mu.Unlock()

	select {
	case <-r.done:
	case <-ctx.Done():
	}
	return r.snapshot(time.Now())
}

// joinable returns the round in flight that ends last if it ends at
// notBefore or later, or if maxRoundsInFlight run already; else nil. e.mu
// is held.
func (e *Engine) joinable(notBefore time.Time) *round {
	var latest *round
	for _, r := range e.inflight {
		if latest == nil || r.deadline.After(latest.deadline) {
			latest = r
		}
	}
	if latest == nil || (latest.deadline.Before(notBefore) && len(e.inflight) < maxRoundsInFlight) {
		return nil
	}
	return latest
}

// ProbeTargets probes t now, outside the shared rounds (the debug view),
// logging to logger, with the debug probes' own concurrency bound.
func (e *Engine) ProbeTargets(ctx context.Context, t Targets, budget time.Duration, logger *slog.Logger) *RoundResult {
	r := e.newRound(t, budget, logger)
	go r.run(e.probers, e.debugSem)
	select {
	case <-r.done:
	case <-ctx.Done():
	}
	return r.snapshot(time.Now())
}

func (e *Engine) startRound(budget time.Duration) *round {
	e.rounds.Add(1)
	r := e.newRound(e.Targets(), budget, e.logger)
	go func() {
		r.run(e.probers, e.sem)
		res := r.snapshot(time.Now())
		e.mu.Lock()
		e.inflight = slices.DeleteFunc(e.inflight, func(o *round) bool { return o == r })
		if e.last == nil || !res.Started.Before(e.last.Started) {
			e.last = res
		}
		e.mu.Unlock()
		if e.onRoundDone != nil {
			e.onRoundDone(res)
		}
	}()
	return r
}

// round is one pass over all probe jobs.
type round struct {
	targets  Targets
	jobs     []job
	opts     Options
	logger   *slog.Logger
	started  time.Time
	budget   time.Duration
	deadline time.Time
	done     chan struct{}

	mu       sync.Mutex
	outcomes []outcome
}

func (e *Engine) newRound(t Targets, budget time.Duration, logger *slog.Logger) *round {
	opts := e.Options()
	var arpIfaces []string
	if opts.ARPInterfaces != nil {
		all, err := e.probers.Interfaces()
		if err != nil {
			e.logger.Warn("ARP probes skipped", "err", err)
		}
		for _, name := range all {
			if opts.ARPInterfaces.MatchString(name) {
				arpIfaces = append(arpIfaces, name)
			}
		}
		if len(arpIfaces) == 0 {
			e.logger.Warn("ARP probes skipped: no interface that is up with an IPv4 address matches", "pattern", opts.ARPInterfaces.String())
		}
	}
	jobs := buildJobs(t, arpIfaces, opts.RouteCheck, opts.NodeName)
	started := time.Now()
	return &round{
		targets:  t,
		jobs:     jobs,
		opts:     opts,
		logger:   logger,
		started:  started,
		budget:   budget,
		deadline: started.Add(budget),
		done:     make(chan struct{}),
		outcomes: make([]outcome, len(jobs)),
	}
}

// run probes every job with a pool of workers bounded by the semaphore sem;
// it returns when all jobs are done or the deadline has passed.
func (r *round) run(p Probers, sem chan struct{}) {
	defer close(r.done)
	ctx, cancel := context.WithDeadline(context.Background(), r.deadline)
	defer cancel()

	var next atomic.Int64
	workers := min(cap(sem), len(r.jobs))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(r.jobs) || ctx.Err() != nil {
					return
				}
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				if time.Until(r.deadline) < minProbeTime {
					// Too late to probe anything: not_started, not a timeout.
					<-sem
					return
				}
				r.mu.Lock()
				r.outcomes[i].started = true
				r.mu.Unlock()
				o := r.runJob(ctx, p, r.jobs[i])
				<-sem
				r.mu.Lock()
				r.outcomes[i] = o
				r.mu.Unlock()
			}
		})
	}
	wg.Wait()
}

func (r *round) runJob(ctx context.Context, p Probers, j job) outcome {
	timeout := r.opts.ProbeTimeout
	if timeout <= 0 {
		timeout = defaultProbeTimeout
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	logger := r.logger.With(j.logAttrs()...)
	o := outcome{done: true}
	switch j.kind {
	case kindTCP:
		o.res = p.TCP(pctx, netip.AddrPortFrom(j.ip, j.port.Port), logger)
	case kindUDPDNS:
		o.res = p.UDPDNS(pctx, netip.AddrPortFrom(j.ip, j.port.Port), logger)
	case kindICMP:
		ir := p.ICMP(pctx, j.ip, probe.ICMPOptions{}, logger)
		o.res, o.icmp = ir.Result, &ir
	case kindDNS:
		h := r.targets.Hostnames[j.host]
		dr := p.DNS(pctx, j.server, h.Hostname, h.Expect, probe.DNSOptions{Transport: r.opts.DNSTransport}, logger)
		o.res, o.dns = dr.Result, &dr
	case kindTLS:
		h := r.targets.Hostnames[j.host]
		tr := p.TLS(pctx, netip.AddrPortFrom(j.ip, j.port.Port), h.Hostname, j.tls.Options, logger)
		o.res, o.tls = tr.Result, &tr
	case kindListener:
		o.res = p.TCP(pctx, netip.AddrPortFrom(j.ip, j.port.Port), logger)
	case kindARP, kindNodeARP:
		if j.skipSelf {
			o.res = probe.Result{Reason: probe.ReasonHolderIsSelf}
			break
		}
		ar := p.ARP(pctx, j.ip, probe.ARPOptions{Interface: j.iface}, logger)
		o.res, o.arp = ar.Result, &ar
	case kindRoute:
		start := time.Now()
		rr, err := p.Route(j.ip)
		o.route = &rr
		o.res = probe.Result{Success: err == nil, Duration: time.Since(start), Err: err}
		if err != nil {
			o.res.Reason = probe.ReasonUnreachable
		} else if re := r.opts.RouteExpect; re != nil && !re.MatchString(rr.Interface) {
			o.res.Success, o.res.Reason = false, probe.ReasonWrongRoute
			o.res.Err = fmt.Errorf("route to %s uses %s, expected an interface matching %q", j.ip, rr.Interface, re)
		}
	}
	if o.res.Success {
		logger.Debug("probe succeeded", "duration", o.res.Duration)
	} else {
		logger.Debug("probe failed", "reason", o.res.Reason, "err", o.res.Err, "duration", o.res.Duration)
	}
	return o
}

// minProbeTime: a probe is not started with less than this left before the
// round's deadline (a probe whose slot frees at the deadline would
// otherwise start the next one, which can only time out).
const minProbeTime = 10 * time.Millisecond

// errNotStarted is the error of a probe that never got a slot.
var errNotStarted = errors.New("not started: every probe slot (--probe.concurrency) was busy until the round's deadline")

// snapshot copies the outcomes; jobs running but not finished by now are
// reported as timeouts that lasted from the start of the round until now,
// jobs that never got a slot as not_started.
func (r *round) snapshot(now time.Time) *RoundResult {
	r.mu.Lock()
	outcomes := make([]outcome, len(r.outcomes))
	copy(outcomes, r.outcomes)
	r.mu.Unlock()
	for i := range outcomes {
		switch {
		case outcomes[i].done:
		case outcomes[i].started:
			outcomes[i] = outcome{started: true, res: probe.Result{
				Duration: now.Sub(r.started),
				Reason:   probe.ReasonTimeout,
				Err:      context.DeadlineExceeded,
			}}
		default:
			outcomes[i] = outcome{res: probe.Result{
				Reason: probe.ReasonNotStarted,
				Err:    errNotStarted,
			}}
		}
	}
	return &RoundResult{
		Targets:  r.targets,
		Jobs:     r.jobs,
		Outcomes: outcomes,
		Started:  r.started,
		Budget:   r.budget,
		Options:  r.opts,
		Duration: now.Sub(r.started),
	}
}
