package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/common/promslog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/lbprobe/lbprobe/collector"
	"github.com/lbprobe/lbprobe/collector/diagnosis"
)

// Exit codes of `lbprobe diagnose`.
const (
	exitHealthy = 0 // every target's chain has no failed step
	exitFailed  = 1 // a step failed
	exitUsage   = 2 // usage or connection error, or an unknown target
)

// errUnknownTarget is a TARGET lbprobe does not know.
var errUnknownTarget = errors.New("unknown target")

// runDiagnose is `lbprobe diagnose`: it loads the configuration and the
// cluster as the exporter does, probes the targets once and prints their
// diagnosis chains.
func runDiagnose(args []string, f *flags, stdout, stderr io.Writer) int {
	// Only warnings and errors on stderr unless --log.level says otherwise:
	// the chain is the output.
	if !hasFlag(args, "log.level") {
		_ = f.log.Level.Set("warn")
	}
	logger := promslog.New(f.log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Not sharded: it diagnoses every target it is asked about, whatever
	// the sharding flags copied from an exporter's command line say.
	f.shard = shardFlags{total: 1}
	diags, err := diagnose(ctx, f, logger)
	if err != nil {
		fmt.Fprintf(stderr, "lbprobe diagnose: %v\n", err)
		return exitUsage
	}
	if err := writeDiagnoses(stdout, diags, f.output, len(f.targets) == 0); err != nil {
		fmt.Fprintf(stderr, "lbprobe diagnose: writing the output: %v\n", err)
		return exitUsage
	}
	for _, d := range diags {
		if !d.OK() {
			return exitFailed
		}
	}
	return exitHealthy
}

// diagnose returns the chains of f.targets, or of every failing target when
// there is none.
func diagnose(ctx context.Context, f *flags, logger *slog.Logger) ([]diagnosis.Diagnosis, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops discovery's informers
	p, err := newProber(ctx, f, logger)
	if err != nil {
		return nil, err
	}
	var cluster diagnosis.Cluster
	if p.disc != nil {
		if err := p.disc.WaitForSync(ctx); err != nil {
			return nil, fmt.Errorf("the Kubernetes API (raise --kube.sync-timeout, now %s, if it is only slow): %w", f.kubeSyncTimeout, err)
		}
		cluster.Services, cluster.Hostnames = p.disc.ServiceStates(), p.disc.HostnameStates()
	}

	all := p.engine.Targets()
	subset := all
	if len(f.targets) > 0 {
		subset = collector.Targets{}
		var unknown []string
		for _, target := range f.targets {
			t, ok := selectTarget(all, target)
			if !ok && !clusterKnows(cluster, target) {
				unknown = append(unknown, target)
				continue
			}
			subset = subset.Merge(t)
		}
		if len(unknown) > 0 {
			return nil, fmt.Errorf("%w %s: not a namespace/service, load balancer IP or hostname lbprobe knows (%d load balancers, %d hostnames)",
				errUnknownTarget, strings.Join(unknown, ", "), len(all.LoadBalancers), len(all.Hostnames))
		}
	}

	budget := f.defaultScrapeTimeout - f.timeoutOffset
	// The nodes' MACs first: an IPv6 IP's NDP probe solicits its
	// announcer's unicast too.
	p.engine.LearnNodeMACs(ctx, min(budget, f.probeTimeout, 1500*time.Millisecond))
	var round *collector.RoundResult
	if len(f.targets) == 0 {
		round = p.engine.Probe(ctx, budget) // every target: a full round, with --probe.concurrency
	} else {
		round = p.engine.ProbeTargets(ctx, subset, budget, logger.With("component", "engine"))
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	mode := diagnosis.Mode{ARP: round.Options.ARPInterfaces != nil, CiliumNamespace: f.ciliumNamespace}
	diags := diagnosis.Round(round, cluster, mode)
	var out []diagnosis.Diagnosis
	if len(f.targets) == 0 {
		for _, d := range diags {
			if !d.OK() {
				out = append(out, d)
			}
		}
	}
	for _, target := range f.targets {
		d, _ := diagnosis.Select(diags, target)
		out = append(out, d...)
	}
	if p.restCfg != nil {
		addRemediations(ctx, p.restCfg, out, logger)
	}
	return out, nil
}

// addRemediations adds, to each load balancer's chain, what lease
// remediation did about its Service in the last day (its Events); nothing
// when the Events cannot be read (the read-only ClusterRole may not allow
// it).
func addRemediations(ctx context.Context, cfg *rest.Config, diags []diagnosis.Diagnosis, logger *slog.Logger) {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return
	}
	for i := range diags {
		d := &diags[i]
		if d.Service == "" {
			continue
		}
		events, err := client.CoreV1().Events(d.Namespace).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.kind=Service,involvedObject.name=" + d.Service + ",source=lbprobe",
		})
		if err != nil {
			logger.Debug("no remediation Events", "service", d.Namespace+"/"+d.Service, "err", err)
			return
		}
		for _, e := range events.Items {
			at := e.LastTimestamp.Time
			if at.IsZero() {
				at = e.EventTime.Time
			}
			if time.Since(at) < 24*time.Hour {
				d.Remediations = append(d.Remediations, diagnosis.Remediation{At: at, Reason: e.Reason, Message: e.Message})
			}
		}
		slices.SortFunc(d.Remediations, func(a, b diagnosis.Remediation) int { return a.At.Compare(b.At) })
	}
}

// clusterKnows reports whether target is a Service (one without an IP is
// not a probe target, but has a chain) or a route hostname of the cluster.
func clusterKnows(c diagnosis.Cluster, target string) bool {
	for _, s := range c.Services {
		if s.Namespace+"/"+s.Name == target {
			return true
		}
	}
	_, ok := c.Hostnames[collector.HostnameKey(target)]
	return ok
}

// writeDiagnoses prints the chains as text or as a JSON array.
func writeDiagnoses(w io.Writer, diags []diagnosis.Diagnosis, output string, failingOnly bool) error {
	if output == "json" {
		if diags == nil {
			diags = []diagnosis.Diagnosis{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(diags)
	}
	if len(diags) == 0 && failingOnly {
		_, err := fmt.Fprintln(w, "no failing target")
		return err
	}
	for i, d := range diags {
		if i > 0 {
			if _, err := fmt.Fprintln(w); err != nil {
				return err
			}
		}
		if err := d.WriteText(w); err != nil {
			return err
		}
	}
	return nil
}

// hasFlag reports whether args set --name.
func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == "--"+name || strings.HasPrefix(a, "--"+name+"=") {
			return true
		}
	}
	return false
}
