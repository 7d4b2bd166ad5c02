package collector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
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
	active   chan struct{} // bounds the rounds' probes that are not yet waiting (see waitingAfter)
	debugSem chan struct{} // bounds concurrent probes of ProbeTargets

	mu       sync.Mutex
	inflight []*round // rounds running, oldest first
	last     *RoundResult

	// slow are the jobs that took half the probe timeout or more in the
	// last finished round, or had not finished: the next round starts them
	// first, so that they wait side by side from its start instead of
	// holding the round past one probe timeout when they come last.
	slow atomic.Pointer[map[jobKey]bool]
	// nodeMACs are the nodes' MACs the last finished round learned (see
	// RoundResult.nodeMACs): an NDP probe also solicits the announcer's
	// MAC unicast.
	nodeMACs atomic.Pointer[map[string]map[string]string]

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
		active:   make(chan struct{}, min(max(cfg.Concurrency, 1), maxActive)),
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
	r.setHolderMACs(e.nodeMACs.Load())
	go r.run(e.probers, e.debugSem, nil)
	select {
	case <-r.done:
	case <-ctx.Done():
	}
	return r.snapshot(time.Now())
}

// LearnNodeMACs ARP-probes the nodes' InternalIPs now (when ARP probes are
// on), so that the next round's NDP probes also solicit the announcers'
// MACs unicast: a one-shot `lbprobe diagnose` has no last round to learn
// them from.
func (e *Engine) LearnNodeMACs(ctx context.Context, budget time.Duration) {
	if e.Options().ARPInterfaces == nil {
		return
	}
	all := e.AllTargets()
	if !slices.ContainsFunc(all.LoadBalancers, func(lb LoadBalancer) bool { return slices.ContainsFunc(lb.IPs, netip.Addr.Is6) }) {
		return // no IPv6 IP: no NDP probe to help
	}
	e.learnNodeMACs(e.ProbeTargets(ctx, Targets{Nodes: all.Nodes}, budget, e.logger))
}

// learnNodeMACs merges the nodes' MACs a round learned into those known:
// a round whose node ARP did not run (overloaded, cut short) forgets
// nothing.
func (e *Engine) learnNodeMACs(res *RoundResult) {
	merged := map[string]map[string]string{}
	if old := e.nodeMACs.Load(); old != nil {
		for iface, m := range *old {
			merged[iface] = maps.Clone(m)
		}
	}
	for iface, m := range res.nodeMACs() {
		if merged[iface] == nil {
			merged[iface] = map[string]string{}
		}
		maps.Copy(merged[iface], m)
	}
	e.nodeMACs.Store(&merged)
}

func (e *Engine) startRound(budget time.Duration) *round {
	e.rounds.Add(1)
	r := e.newRound(e.Targets(), budget, e.logger)
	r.startFirst(e.slow.Load(), cap(e.sem)/2)
	r.setHolderMACs(e.nodeMACs.Load())
	go func() {
		r.run(e.probers, e.sem, e.active)
		e.slow.Store(r.slowJobs())
		res := r.snapshot(time.Now())
		e.learnNodeMACs(res)
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

	// order is the order in which the jobs start (indices into jobs); its
	// first expectSlow were slow in the last round: they start as waiting,
	// without an active slot.
	order      []int
	expectSlow int

	mu       sync.Mutex
	outcomes []outcome
	took     []time.Duration // of each finished job
}

// jobKey names a job across rounds.
type jobKey struct {
	kind   jobKind
	target string // namespace/service, hostname or node
	ip     netip.Addr
	port   uint16
	server string
	iface  string
}

func (r *round) key(j job) jobKey {
	k := jobKey{kind: j.kind, ip: j.ip, port: j.port.Port, server: j.server, iface: j.iface}
	switch {
	case j.lb >= 0:
		lb := r.targets.LoadBalancers[j.lb]
		k.target = lb.Namespace + "/" + lb.Service
	case j.host >= 0:
		k.target = r.targets.Hostnames[j.host].Hostname
	case j.node >= 0:
		k.target = r.targets.Nodes[j.node].Name
	case j.listener >= 0:
		l := r.targets.GatewayListeners[j.listener]
		k.target = l.Namespace + "/" + l.Gateway + "/" + l.Listener
	}
	return k
}

// setHolderMACs gives each NDP job of an IPv6 load balancer IP the MAC of
// its holder on the job's interface, from macs (nil: none known).
func (r *round) setHolderMACs(macs *map[string]map[string]string) {
	if macs == nil {
		macs = &map[string]map[string]string{}
	}
	for i, j := range r.jobs {
		if j.kind != kindARP || !j.ip.Is6() || j.lb < 0 {
			continue
		}
		lb := r.targets.LoadBalancers[j.lb]
		if lb.HolderMAC != nil {
			r.jobs[i].holderMAC = lb.HolderMAC // the MAC the implementation names
			continue
		}
		if m, err := net.ParseMAC((*macs)[j.iface]["node "+lb.Holder]); lb.Holder != "" && err == nil {
			r.jobs[i].holderMAC = m
		}
	}
}

// startFirst moves up to max of the jobs that were slow in the last round
// to the front of the order, keeping the order otherwise. The bound (half
// the slots) keeps slow jobs from taking every slot of an overloaded
// prober at the start of each round, which would starve the fast ones.
func (r *round) startFirst(slow *map[jobKey]bool, max int) {
	if slow == nil || len(*slow) == 0 || max <= 0 {
		return
	}
	first := make([]int, 0, min(len(*slow), max))
	rest := make([]int, 0, len(r.jobs))
	for _, i := range r.order {
		if len(first) < max && (*slow)[r.key(r.jobs[i])] {
			first = append(first, i)
		} else {
			rest = append(rest, i)
		}
	}
	r.order = append(first, rest...)
	r.expectSlow = len(first)
}

// slowJobs are the jobs of a finished round that took half the probe
// timeout or more, or that timed out (also when the round's deadline cut
// them short). ARP and NDP probes are left out: they listen for every
// reply until their window ends by design, so they are always slow and
// would take the places meant for the targets that hang.
func (r *round) slowJobs() *map[jobKey]bool {
	limit := cmp.Or(r.opts.ProbeTimeout, defaultProbeTimeout) / 2
	slow := map[jobKey]bool{}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, o := range r.outcomes {
		if k := r.jobs[i].kind; k == kindARP || k == kindNodeARP || !o.done {
			continue
		}
		if r.took[i] >= limit || o.res.Reason == probe.ReasonTimeout {
			slow[r.key(r.jobs[i])] = true
		}
	}
	return &slow
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
		order:    identity(len(jobs)),
		outcomes: make([]outcome, len(jobs)),
		took:     make([]time.Duration, len(jobs)),
	}
}

// identity returns 0, 1, ..., n-1.
func identity(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// maxActive bounds the probes of the rounds that have run for less than
// waitingAfter; waitingAfter is when a probe that has not answered counts as
// waiting on the network. A waiting probe keeps its --probe.concurrency slot
// (its socket) but gives its active slot to the next probe: a thousand
// black-holed targets wait side by side while the answering ones pass
// through a few hundred goroutines, not through thousands.
const (
	maxActive    = 256
	waitingAfter = 50 * time.Millisecond
)

// run starts every job in r.order, one goroutine each, bounded by the
// semaphore sem and, when active is not nil, by active for the probes that
// are not waiting yet. It returns when all jobs are done or the deadline
// has passed.
func (r *round) run(p Probers, sem, active chan struct{}) {
	defer close(r.done)
	ctx, cancel := context.WithDeadline(context.Background(), r.deadline)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	for n, i := range r.order {
		if !acquire(ctx, sem) {
			return
		}
		// A job that was slow in the last round is expected to wait: it
		// takes no active slot.
		act := active
		if n < r.expectSlow {
			act = nil
		}
		if act != nil && !acquire(ctx, act) {
			<-sem
			return
		}
		if time.Until(r.deadline) < minProbeTime {
			// Too late to probe anything: not_started, not a timeout.
			if act != nil {
				<-act
			}
			<-sem
			return
		}
		r.mu.Lock()
		r.outcomes[i].started = true
		r.mu.Unlock()
		wg.Go(func() {
			var waiting *time.Timer
			var released atomic.Bool
			release := func() {
				if released.CompareAndSwap(false, true) {
					<-act
				}
			}
			if act != nil {
				waiting = time.AfterFunc(waitingAfter, release)
			}
			begin := time.Now()
			o := r.runJob(ctx, p, r.jobs[i])
			took := time.Since(begin)
			if act != nil {
				waiting.Stop()
				release()
			}
			<-sem
			r.mu.Lock()
			r.outcomes[i] = o
			r.took[i] = took
			r.mu.Unlock()
		})
	}
}

// acquire takes a slot of sem, or gives up when ctx ends.
func acquire(ctx context.Context, sem chan struct{}) bool {
	if ctx.Err() != nil {
		return false
	}
	select {
	case sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (r *round) runJob(ctx context.Context, p Probers, j job) outcome {
	timeout := r.opts.ProbeTimeout
	if timeout <= 0 {
		timeout = defaultProbeTimeout
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The probers log at debug level only: a logger with the job's
	// attributes is built only when that level is on (the debug view, or
	// --log.level=debug), not for every probe of every round.
	logger := r.logger
	if logger.Enabled(ctx, slog.LevelDebug) {
		logger = logger.With(j.logAttrs()...)
	}
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
		var ar probe.ARPResult
		if j.ip.Is6() && j.kind == kindARP {
			// IPv6 has no ARP: a Neighbor Solicitation, multicast then
			// unicast, also to the announcer's MAC when the last round
			// learned it.
			opts := probe.NDPOptions{Interface: j.iface}
			if j.holderMAC != nil {
				opts.Unicast = []net.HardwareAddr{j.holderMAC}
			}
			ar = p.NDP(pctx, j.ip, opts, logger)
		} else {
			ar = p.ARP(pctx, j.ip, probe.ARPOptions{Interface: j.iface}, logger)
		}
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
