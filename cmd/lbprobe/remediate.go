package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/alecthomas/kingpin/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/lbprobe/lbprobe/collector"
	"github.com/lbprobe/lbprobe/collector/diagnosis"
	"github.com/lbprobe/lbprobe/collector/kube"
	"github.com/lbprobe/lbprobe/collector/remediate"
	"github.com/lbprobe/lbprobe/collector/shard"
)

// remediateFlags are the --remediate.* flags.
type remediateFlags struct {
	mode            string
	after           time.Duration
	rounds          int
	leaseGrace      time.Duration
	orphanGrace     time.Duration
	cooldown        time.Duration
	budget          int
	verifyWithin    time.Duration
	leaderNamespace string
}

func (r *remediateFlags) add(app *kingpin.Application) {
	app.Flag("remediate.leases", "Delete stuck Cilium L2 leases when the diagnosis is conclusive: off, dry-run (log and count only) or on. Needs delete on leases in --cilium.namespace (deploy/README.md).").
		Default("off").EnumVar(&r.mode, "off", "dry-run", "on")
	app.Flag("remediate.after", "How long a lease's verdict (lease_expired, holder_not_ready, holder_silent) must hold before remediation acts, over at least --remediate.rounds rounds.").
		Default(remediate.DefaultAfter.String()).DurationVar(&r.after)
	app.Flag("remediate.rounds", "How many consecutive probe rounds the verdict must hold.").
		Default(fmt.Sprint(remediate.DefaultRounds)).IntVar(&r.rounds)
	app.Flag("remediate.lease-grace", "An expired lease is acted on only once its renew age exceeds its duration plus this.").
		Default(remediate.DefaultLeaseGrace.String()).DurationVar(&r.leaseGrace)
	app.Flag("remediate.orphan-grace", "How long an L2 lease whose Service is gone is left before it is deleted.").
		Default(remediate.DefaultOrphanGrace.String()).DurationVar(&r.orphanGrace)
	app.Flag("remediate.cooldown", "At most one action per lease per this.").
		Default(remediate.DefaultCooldown.String()).DurationVar(&r.cooldown)
	app.Flag("remediate.budget", "At most this many lease deletes per hour, all leases together.").
		Default(fmt.Sprint(remediate.DefaultBudget)).IntVar(&r.budget)
	app.Flag("remediate.verify-within", "After a delete, a Ready node must hold the lease and the IP answer within this; else remediation stops acting on the lease until its Service is healthy.").
		Default(remediate.DefaultVerifyWithin.String()).DurationVar(&r.verifyWithin)
	app.Flag("remediate.leader-election.namespace", "Namespace of the Lease lbprobe-remediation through which the lbprobe instances elect the one that acts (default: $POD_NAMESPACE, else lbprobe).").
		Default("").StringVar(&r.leaderNamespace)
}

func (r *remediateFlags) validate() error {
	switch {
	case r.rounds < 1:
		return fmt.Errorf("--remediate.rounds must be at least 1, got %d", r.rounds)
	case r.budget < 1:
		return fmt.Errorf("--remediate.budget must be at least 1, got %d", r.budget)
	}
	for name, d := range map[string]time.Duration{
		"after": r.after, "lease-grace": r.leaseGrace, "orphan-grace": r.orphanGrace, "cooldown": r.cooldown, "verify-within": r.verifyWithin,
	} {
		if d <= 0 {
			return fmt.Errorf("--remediate.%s must be positive, got %s", name, d)
		}
	}
	return nil
}

// startRemediation builds the Remediator, its leader election and Events,
// and feeds it every shared round; nil when --remediate.leases=off.
func startRemediation(ctx context.Context, f *flags, p *prober, logger *slog.Logger) (*remediate.Remediator, error) {
	mode, err := remediate.ParseMode(f.remediate.mode)
	if err != nil || mode == remediate.Off {
		return nil, err
	}
	if p.disc == nil || p.restCfg == nil {
		return nil, errors.New("--remediate.leases needs Kubernetes discovery (no Kubernetes config found)")
	}
	client, err := kubernetes.NewForConfig(p.restCfg)
	if err != nil {
		return nil, fmt.Errorf("remediation: %w", err)
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	go func() { <-ctx.Done(); broadcaster.Shutdown() }()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "lbprobe"})

	rem := remediate.New(remediate.Config{
		Mode: mode, After: f.remediate.after, Rounds: f.remediate.rounds, LeaseGrace: f.remediate.leaseGrace,
		OrphanGrace: f.remediate.orphanGrace, Cooldown: f.remediate.cooldown, Budget: f.remediate.budget,
		VerifyWithin: f.remediate.verifyWithin, CiliumNamespace: f.ciliumNamespace,
	}, client, recorder, logger)
	p.self.registry.MustRegister(rem)

	ns := f.remediate.leaderNamespace
	if ns == "" {
		ns = os.Getenv("POD_NAMESPACE")
	}
	if ns == "" {
		ns = "lbprobe"
	}
	host, _ := os.Hostname()
	identity := fmt.Sprintf("%s_%d", host, os.Getpid())
	if f.nodeName != "" {
		identity = f.nodeName + "_" + identity
	}
	leaderLease := f.shard.leaderLease(p.shard)
	remediate.Elect(ctx, rem, client, ns, leaderLease, identity, logger)
	logger.Info("lease remediation on", "mode", string(mode), "after", f.remediate.after, "rounds", f.remediate.rounds,
		"cooldown", f.remediate.cooldown, "budget_per_hour", f.remediate.budget, "leader_lease", ns+"/"+leaderLease)

	// Each finished round is handed over without waiting; a round that
	// arrives while the last one is still judged is dropped.
	rounds := make(chan *collector.RoundResult, 1)
	p.afterRound = append(p.afterRound, func(r *collector.RoundResult) {
		select {
		case rounds <- r:
		default:
		}
	})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case r := <-rounds:
				rem.Observe(ctx, remediationInput(p, r, f.ciliumNamespace))
			}
		}
	}()
	return rem, nil
}

// remediationInput is what a round and the cluster say, for remediation.
func remediationInput(p *prober, r *collector.RoundResult, ciliumNamespace string) remediate.Input {
	services := p.disc.ServiceStates()
	arp := r.Options.ARPInterfaces != nil
	reachable := map[string]bool{}
	for _, lb := range r.LoadBalancers() {
		for _, ip := range lb.IPs {
			if ip.Reachable {
				reachable[lb.Namespace+"/"+lb.Service] = true
			}
		}
	}
	// Each shard acts on its own orphans and on the leases of the Services
	// it owns: one lease covers every IP of a Service, whose IPs may fall in
	// several shards, so a Service belongs to the shard of its first IP (of
	// namespace/service/ without one), and only that shard acts on it.
	sh := p.engine.Shard()
	var orphans []kube.OrphanedLease
	for _, o := range p.disc.OrphanedLeases() {
		if sh.Owns(shard.LeaseKey(o.Name)) {
			orphans = append(orphans, o)
		}
	}
	owned := map[string]bool{}
	for _, st := range services {
		var first netip.Addr
		if len(st.IPs) > 0 {
			first = st.IPs[0]
		}
		owned[st.Namespace+"/"+st.Name] = sh.Owns(shard.LoadBalancerKey(st.Namespace, st.Name, first))
	}
	diags := diagnosis.Round(r, diagnosis.Cluster{Services: services}, diagnosis.Mode{ARP: arp, CiliumNamespace: ciliumNamespace, Shard: sh})
	diags = slices.DeleteFunc(diags, func(d diagnosis.Diagnosis) bool { return d.Service != "" && !owned[d.Namespace+"/"+d.Service] })
	return remediate.Input{
		Reachable:   reachable,
		Synced:      p.disc.Synced(),
		Services:    services,
		Diagnoses:   diags,
		Orphans:     orphans,
		ObservesARP: arp,
	}
}
