// Package remediate deletes stuck Cilium L2 announcement leases when, and
// only when, lbprobe's diagnosis is conclusive: the safe replacement for the
// seed's blind cleanup CronJob. It is off by default; dry-run logs and
// counts what it would do.
//
// It acts on a lease only when the diagnosis chain of its Service fails at
// the lease (lease_expired, past the lease's duration plus a grace), at its
// holder (holder_not_ready, while another Ready node may take over), or at
// ARP (holder_silent, only where ARP is observed, while another Ready node
// may take over); with that verdict for Config.Rounds consecutive rounds
// and at least Config.After; never while the Kubernetes caches are out of
// sync, never on a TCP failure alone. Orphaned leases (no Service) go after
// Config.OrphanGrace. One action per lease per Config.Cooldown, at most
// Config.Budget per hour, each a delete conditional on the resourceVersion
// that was judged; then it checks that a holder took over and the IP
// answers, and stops acting on a lease where that did not happen.
package remediate

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"

	"github.com/lbprobe/lbprobe/collector/diagnosis"
	"github.com/lbprobe/lbprobe/collector/kube"
)

// Mode is --remediate.leases.
type Mode string

// The modes.
const (
	Off    Mode = "off"
	DryRun Mode = "dry-run"
	On     Mode = "on"
)

// Actions: what was (or would have been) done, the action label of
// lbprobe_remediations_total.
const (
	ActionDeleteExpired  = "delete_expired_lease"
	ActionDeleteNotReady = "delete_not_ready_lease"
	ActionDeleteSilent   = "delete_silent_lease"
	ActionDeleteOrphaned = "delete_orphaned_lease"
	// ActionVerify is the check after a delete: result fixed or not_fixed.
	ActionVerify = "verify"
)

// Results, the result label of lbprobe_remediations_total.
const (
	ResultDeleted   = "deleted"   // the lease was deleted
	ResultDryRun    = "dry_run"   // it would have been deleted
	ResultConflict  = "conflict"  // the lease changed since it was judged: not deleted
	ResultNotFound  = "not_found" // gone already
	ResultError     = "error"     // the API refused or failed
	ResultCooldown  = "cooldown"  // not deleted: acted on this lease less than Cooldown ago
	ResultBudget    = "budget"    // not deleted: the hourly budget is spent
	ResultStopped   = "stopped"   // not deleted: an earlier delete did not fix it
	ResultFixed     = "fixed"     // verify: a holder took over and the IP answers
	ResultNotFixed  = "not_fixed" // verify: not within VerifyWithin; it stops acting on the lease
	ResultNotLeader = "not_leader"
)

// Config says when and how often to act. Zero durations and counts take
// the defaults below.
type Config struct {
	Mode Mode
	// After: how long the verdict must have held (default 2m), over at
	// least Rounds consecutive rounds (default 3).
	After  time.Duration
	Rounds int
	// LeaseGrace: an expired lease is acted on only once its renew age
	// exceeds its duration plus this (default 30s).
	LeaseGrace time.Duration
	// OrphanGrace: how long a lease without a Service is left alone
	// (default 10m).
	OrphanGrace time.Duration
	// Cooldown: at most one action per lease per Cooldown (default 15m).
	Cooldown time.Duration
	// Budget: at most this many deletes per hour, all leases together
	// (default 6).
	Budget int
	// VerifyWithin: after a delete, a holder must take over and the IP
	// answer within this (default 2m), else remediation stops acting on
	// the lease until its Service is healthy again.
	VerifyWithin time.Duration
	// CiliumNamespace holds the leases.
	CiliumNamespace string
	// Now returns the current time (tests); default time.Now.
	Now func() time.Time
}

// The defaults.
const (
	DefaultAfter        = 2 * time.Minute
	DefaultRounds       = 3
	DefaultLeaseGrace   = 30 * time.Second
	DefaultOrphanGrace  = 10 * time.Minute
	DefaultCooldown     = 15 * time.Minute
	DefaultBudget       = 6
	DefaultVerifyWithin = 2 * time.Minute
)

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.After, DefaultAfter)
	def(&c.LeaseGrace, DefaultLeaseGrace)
	def(&c.OrphanGrace, DefaultOrphanGrace)
	def(&c.Cooldown, DefaultCooldown)
	def(&c.VerifyWithin, DefaultVerifyWithin)
	if c.Rounds <= 0 {
		c.Rounds = DefaultRounds
	}
	if c.Budget <= 0 {
		c.Budget = DefaultBudget
	}
	if c.CiliumNamespace == "" {
		c.CiliumNamespace = "kube-system"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// ParseMode checks a --remediate.leases value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Off, DryRun, On:
		return m, nil
	}
	return "", fmt.Errorf("%q is not off, dry-run or on", s)
}

// Input is what one probe round and the cluster say.
type Input struct {
	// Synced: every Kubernetes informer is in sync (lbprobe_kubernetes_synced).
	Synced    bool
	Services  []kube.ServiceState
	Diagnoses []diagnosis.Diagnosis
	Orphans   []kube.OrphanedLease
	// ObservesARP: this instance probes ARP (holder_silent is evidence).
	ObservesARP bool
	// Reachable: whether an IP of the Service ("namespace/name") answered
	// this round's probes.
	Reachable map[string]bool
}

// Action is one thing remediation did or decided, for the landing page.
type Action struct {
	At                 time.Time
	Lease              string
	Namespace, Service string // empty for an orphaned lease
	Action, Result     string
	Evidence           string
}

// Remediator keeps the streaks and guard rails between rounds.
type Remediator struct {
	cfg    Config
	client kubernetes.Interface
	events record.EventRecorder
	logger *slog.Logger
	// leading: this instance holds the coordination lease (or there is
	// no election).
	leading atomic.Bool

	mu      sync.Mutex
	leases  map[string]*leaseRecord // by lease name
	deletes []time.Time             // deletes within the last hour
	history []Action                // the latest, newest last
	counts  map[[2]string]float64   // {action, result}
}

// leaseRecord is what remediation remembers of one lease.
type leaseRecord struct {
	action      string // the action the current streak calls for; "" when none
	since       time.Time
	rounds      int
	skipped     string // the result of the last skipped attempt, to count it once
	lastAction  time.Time
	verifyBy    time.Time // set while a delete awaits its check
	stopped     bool      // a delete did not fix it: no more actions
	orphanSince time.Time
}

// maxHistory bounds Remediator.History.
const maxHistory = 50

// New returns a Remediator that deletes with client and records Events
// with events (either may be nil in dry-run). It is the leader until
// SetLeading(false).
func New(cfg Config, client kubernetes.Interface, events record.EventRecorder, logger *slog.Logger) *Remediator {
	r := &Remediator{
		cfg: cfg.withDefaults(), client: client, events: events, logger: logger,
		leases: map[string]*leaseRecord{}, counts: map[[2]string]float64{},
	}
	r.leading.Store(true)
	// The counters alerts take increase() of exist from the start, at 0.
	if r.cfg.Mode != Off {
		done := ResultDeleted
		if r.cfg.Mode == DryRun {
			done = ResultDryRun
		}
		for _, a := range []string{ActionDeleteExpired, ActionDeleteNotReady, ActionDeleteSilent, ActionDeleteOrphaned} {
			r.counts[[2]string{a, done}] = 0
		}
		r.counts[[2]string{ActionVerify, ResultFixed}] = 0
		r.counts[[2]string{ActionVerify, ResultNotFixed}] = 0
	}
	return r
}

// Mode returns the configured mode.
func (r *Remediator) Mode() Mode { return r.cfg.Mode }

// SetLeading says whether this instance may act (leader election).
func (r *Remediator) SetLeading(v bool) { r.leading.Store(v) }

// Leading reports whether this instance may act.
func (r *Remediator) Leading() bool { return r.leading.Load() }

// History returns the latest actions, newest first.
func (r *Remediator) History() []Action {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.history)
	slices.Reverse(out)
	return out
}

// Observe takes one round's evidence, and acts where it is conclusive. Call
// it from one goroutine at a time.
func (r *Remediator) Observe(ctx context.Context, in Input) {
	if r.cfg.Mode == Off {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now()
	if !in.Synced {
		r.logger.Debug("lease remediation: the Kubernetes caches are not in sync; no action")
		// The caches may be stale: no evidence, and streaks start over.
		for _, rec := range r.leases {
			rec.action, rec.rounds, rec.orphanSince = "", 0, time.Time{}
		}
		return
	}
	verdicts := map[string]diagnosis.Diagnosis{}
	for _, d := range in.Diagnoses {
		if d.Hostname != "" {
			continue
		}
		key := d.Namespace + "/" + d.Service
		if prev, ok := verdicts[key]; !ok || (prev.OK() && !d.OK()) {
			verdicts[key] = d
		}
	}
	judged := map[string]bool{}
	for i := range in.Services {
		st := &in.Services[i]
		if !st.Assigned {
			continue
		}
		name := kube.LeaseName(st.Namespace, st.Name)
		judged[name] = true
		rec := r.record(name)
		d, known := verdicts[st.Namespace+"/"+st.Name]
		if !known {
			rec.action, rec.rounds = "", 0
			continue
		}
		r.verify(now, rec, st, d, in.Reachable[st.Namespace+"/"+st.Name])
		action, evidence := r.eligible(st, d, in.ObservesARP)
		if action == "" {
			rec.action, rec.rounds, rec.skipped = "", 0, ""
			continue
		}
		if rec.action != action {
			rec.action, rec.since, rec.rounds, rec.skipped = action, now, 0, ""
		}
		rec.rounds++
		if rec.rounds < r.cfg.Rounds || now.Sub(rec.since) < r.cfg.After {
			continue
		}
		evidence = fmt.Sprintf("%s, for %d rounds over %s", evidence, rec.rounds, now.Sub(rec.since).Round(time.Second))
		r.act(ctx, now, rec, target{lease: name, rv: st.Lease.ResourceVersion, namespace: st.Namespace, service: st.Name}, action, evidence)
	}
	orphans := map[string]bool{}
	for _, o := range in.Orphans {
		if judged[o.Name] {
			continue
		}
		orphans[o.Name] = true
		rec := r.record(o.Name)
		if rec.orphanSince.IsZero() {
			rec.orphanSince = now
		}
		if age := now.Sub(rec.orphanSince); age >= r.cfg.OrphanGrace {
			r.act(ctx, now, rec, target{lease: o.Name, rv: o.ResourceVersion}, ActionDeleteOrphaned,
				fmt.Sprintf("no Service owns lease %s (for %s)", o.Name, age.Round(time.Second)))
		}
	}
	for name, rec := range r.leases {
		if !orphans[name] {
			rec.orphanSince = time.Time{}
		}
		// Forget what no longer matters.
		if !judged[name] && !orphans[name] && rec.verifyBy.IsZero() && now.Sub(rec.lastAction) > r.cfg.Cooldown {
			delete(r.leases, name)
		}
	}
}

func (r *Remediator) record(name string) *leaseRecord {
	rec, ok := r.leases[name]
	if !ok {
		rec = &leaseRecord{}
		r.leases[name] = rec
	}
	return rec
}

// eligible returns the action the Service's verdict calls for, and its
// evidence; "" when none: the verdict is not one remediation acts on, or
// its evidence is not conclusive.
func (r *Remediator) eligible(st *kube.ServiceState, d diagnosis.Diagnosis, observesARP bool) (action, evidence string) {
	l := st.Lease
	if l == nil || l.ResourceVersion == "" {
		return "", ""
	}
	switch d.Cause {
	case diagnosis.CauseLeaseExpired:
		if l.RenewAge < 0 || l.Duration < 0 || l.RenewAge <= l.Duration+r.cfg.LeaseGrace {
			return "", ""
		}
		return ActionDeleteExpired, fmt.Sprintf("lease %s held by %s was last renewed %s ago (duration %s)", l.Name, l.Holder, l.RenewAge.Round(time.Second), l.Duration)
	case diagnosis.CauseHolderNotReady:
		if l.HolderReady || st.PolicyReadyNodes < 1 {
			return "", ""
		}
		return ActionDeleteNotReady, fmt.Sprintf("lease %s is held by %s, which is not a Ready node; %d Ready node(s) may take over", l.Name, l.Holder, st.PolicyReadyNodes)
	case diagnosis.CauseHolderSilent:
		others := st.PolicyReadyNodes
		if l.HolderReady {
			others--
		}
		if !observesARP || others < 1 {
			return "", ""
		}
		return ActionDeleteSilent, fmt.Sprintf("lease %s is held by %s, which does not answer ARP (%s); %d other Ready node(s) may take over", l.Name, l.Holder, stepEvidence(d, diagnosis.StepARP), others)
	}
	return "", ""
}

// verify checks a delete: a live lease, a Ready holder and an answering IP.
func (r *Remediator) verify(now time.Time, rec *leaseRecord, st *kube.ServiceState, d diagnosis.Diagnosis, reachable bool) {
	l := st.Lease
	fixed := l != nil && l.Live && l.HolderReady && reachable
	if d.OK() || fixed {
		rec.stopped = false
	}
	if rec.verifyBy.IsZero() {
		return
	}
	lease := kube.LeaseName(st.Namespace, st.Name)
	if fixed {
		rec.verifyBy = time.Time{}
		r.note(Action{At: now, Lease: lease, Namespace: st.Namespace, Service: st.Name, Action: ActionVerify, Result: ResultFixed,
			Evidence: fmt.Sprintf("%s now holds the lease and the IP answers", l.Holder)})
		return
	}
	if now.Before(rec.verifyBy) {
		return
	}
	rec.verifyBy, rec.stopped = time.Time{}, true
	msg := fmt.Sprintf("after deleting lease %s, no Ready node took over with an answering IP within %s (verdict now: %s): remediation stops acting on it until the Service is healthy; the cause is elsewhere (`lbprobe diagnose %s/%s`)",
		lease, r.cfg.VerifyWithin, d.Cause, st.Namespace, st.Name)
	r.note(Action{At: now, Lease: lease, Namespace: st.Namespace, Service: st.Name, Action: ActionVerify, Result: ResultNotFixed, Evidence: msg})
	r.event(serviceRef(st.Namespace, st.Name), corev1.EventTypeWarning, "L2LeaseRemediationNotFixing", msg)
}

// target is the lease to act on and the Service it belongs to (none for
// an orphan).
type target struct {
	lease, rv          string
	namespace, service string
}

// act deletes the lease unless a guard rail says no.
func (r *Remediator) act(ctx context.Context, now time.Time, rec *leaseRecord, t target, action, evidence string) {
	skip := func(result string) {
		if rec.skipped != result {
			rec.skipped = result
			r.note(Action{At: now, Lease: t.lease, Namespace: t.namespace, Service: t.service, Action: action, Result: result, Evidence: evidence})
		}
	}
	r.deletes = slices.DeleteFunc(r.deletes, func(at time.Time) bool { return now.Sub(at) >= time.Hour })
	switch {
	case !rec.verifyBy.IsZero():
		return // the last delete awaits its check
	case rec.stopped:
		skip(ResultStopped)
		return
	case !rec.lastAction.IsZero() && now.Sub(rec.lastAction) < r.cfg.Cooldown:
		skip(ResultCooldown)
		return
	case len(r.deletes) >= r.cfg.Budget:
		skip(ResultBudget)
		return
	case !r.leading.Load():
		skip(ResultNotLeader)
		return
	}
	rec.skipped, rec.rounds = "", 0
	rec.lastAction = now
	r.deletes = append(r.deletes, now)
	if r.cfg.Mode == DryRun {
		r.note(Action{At: now, Lease: t.lease, Namespace: t.namespace, Service: t.service, Action: action, Result: ResultDryRun, Evidence: evidence})
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// Scrapes (Collect, History) need not wait for the API server. Only
	// Observe changes the records, and it is not re-entered.
	r.mu.Unlock()
	err := r.client.CoordinationV1().Leases(r.cfg.CiliumNamespace).Delete(ctx, t.lease, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{ResourceVersion: &t.rv},
	})
	r.mu.Lock()
	result := ResultDeleted
	switch {
	case err == nil:
		rec.verifyBy = now.Add(r.cfg.VerifyWithin)
	case apierrors.IsConflict(err):
		result = ResultConflict
	case apierrors.IsNotFound(err):
		result = ResultNotFound
	default:
		result = ResultError
	}
	if err != nil {
		// Nothing was done: neither the cool-down nor the budget is spent.
		rec.lastAction = time.Time{}
		r.deletes = r.deletes[:len(r.deletes)-1]
		evidence += ": " + err.Error()
	}
	r.note(Action{At: now, Lease: t.lease, Namespace: t.namespace, Service: t.service, Action: action, Result: result, Evidence: evidence})
	if result == ResultDeleted {
		ref := serviceRef(t.namespace, t.service)
		if t.service == "" {
			ref = &corev1.ObjectReference{Kind: "Lease", APIVersion: "coordination.k8s.io/v1", Namespace: r.cfg.CiliumNamespace, Name: t.lease}
		}
		r.event(ref, corev1.EventTypeNormal, "L2LeaseDeleted", fmt.Sprintf("lbprobe deleted lease %s/%s (%s): %s", r.cfg.CiliumNamespace, t.lease, action, evidence))
	}
}

// note counts, logs and remembers an action.
func (r *Remediator) note(a Action) {
	r.counts[[2]string{a.Action, a.Result}]++
	r.history = append(r.history, a)
	if len(r.history) > maxHistory {
		r.history = slices.Delete(r.history, 0, len(r.history)-maxHistory)
	}
	level := slog.LevelInfo
	if a.Result == ResultError || a.Result == ResultNotFixed {
		level = slog.LevelError
	}
	r.logger.Log(context.Background(), level, "lease remediation", "mode", string(r.cfg.Mode), "action", a.Action, "result", a.Result,
		"lease", r.cfg.CiliumNamespace+"/"+a.Lease, "service", a.Namespace+"/"+a.Service, "evidence", a.Evidence)
}

func (r *Remediator) event(ref *corev1.ObjectReference, typ, reason, msg string) {
	if r.events != nil && ref != nil {
		r.events.Event(ref, typ, reason, msg)
	}
}

func serviceRef(namespace, name string) *corev1.ObjectReference {
	if name == "" {
		return nil
	}
	return &corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: namespace, Name: name}
}

func stepEvidence(d diagnosis.Diagnosis, step string) string {
	for _, s := range d.Steps {
		if s.Name == step {
			return s.Evidence
		}
	}
	return ""
}
