package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/lbprobe/lbprobe/collector"
	"github.com/lbprobe/lbprobe/collector/diagnosis"
	"github.com/lbprobe/lbprobe/collector/kube"
	"github.com/lbprobe/lbprobe/collector/remediate"
)

// scrapeTimeoutHeader is the header Prometheus sets to the scrape timeout.
const scrapeTimeoutHeader = "X-Prometheus-Scrape-Timeout-Seconds"

// server holds the HTTP handlers.
type server struct {
	kube                 *kube.Discovery // nil when Kubernetes discovery is off
	engine               *collector.Engine
	configs              *configManager
	self                 *selfMetrics
	logger               *slog.Logger
	timeoutOffset        time.Duration
	defaultScrapeTimeout time.Duration
	// debugSlots bounds the /probe requests running at once (capacity
	// maxDebugRequests); past it /probe answers 429.
	debugSlots chan struct{}
	// ciliumNamespace holds the L2 leases (named in the fixes).
	ciliumNamespace string
	// remediator is nil when --remediate.leases=off.
	remediator *remediate.Remediator
}

// diagnoses runs the diagnosis chains over a round and what the cluster
// says now.
func (s *server) diagnoses(r *collector.RoundResult) []diagnosis.Diagnosis {
	var c diagnosis.Cluster
	if s.kube != nil {
		c.Services, c.Hostnames = s.kube.ServiceStates(), s.kube.HostnameStates()
	}
	mode := diagnosis.Mode{ARP: r.Options.ARPInterfaces != nil, CiliumNamespace: s.ciliumNamespace, Shard: s.engine.Shard()}
	return diagnosis.Round(r, c, mode)
}

// maxDebugRequests is how many /probe requests may run at once. Their
// probes have the engine's own small bound (DefaultDebugConcurrency), apart
// from the scrapes' slots.
const maxDebugRequests = 4

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", s.handleMetrics)
	mux.HandleFunc("GET /probe", s.handleProbe)
	s.healthRoutes(mux)
	mux.HandleFunc("POST /-/reload", s.handleReload)
	mux.HandleFunc("PUT /-/reload", s.handleReload)
	mux.HandleFunc("GET /{$}", s.handleLanding)
	// HEAD answers with the headers a GET would get, without running a
	// round or a probe.
	for _, path := range []string{"/metrics", "/probe", "/{$}"} {
		mux.HandleFunc("HEAD "+path, handleHead)
	}
	return secureHeaders(mux)
}

// healthRoutes adds /-/healthy and /-/ready to mux; the health listener
// serves only these.
func (s *server) healthRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "Healthy")
	})
	mux.HandleFunc("GET /-/ready", s.handleReady)
}

// healthHandler serves /-/healthy and /-/ready only (--web.health-listen-address).
func (s *server) healthHandler() http.Handler {
	mux := http.NewServeMux()
	s.healthRoutes(mux)
	return secureHeaders(mux)
}

// secureHeaders sets X-Content-Type-Options: nosniff on every response, so
// that a browser never takes the text of the debug view (which quotes
// targets, DNS answers and error text) for HTML.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

// handleHead answers a HEAD request without doing the work of its GET.
func handleHead(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
	case "/metrics":
		w.Header().Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	w.WriteHeader(http.StatusOK)
}

// setWriteDeadline gives a response the time of its round and writeGrace to
// be written; a client that does not read cannot hold the handler longer.
func setWriteDeadline(w http.ResponseWriter, budget time.Duration) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(budget + writeGrace))
}

// roundBudget turns the scrape timeout header into the time the round is
// allowed: the header minus the offset, or the default scrape timeout minus
// the offset when there is no header.
func (s *server) roundBudget(r *http.Request) (time.Duration, error) {
	timeout := s.defaultScrapeTimeout
	if v := r.Header.Get(scrapeTimeoutHeader); v != "" {
		secs, err := strconv.ParseFloat(v, 64)
		// NaN compares false with everything: it must be rejected by name.
		// So is a timeout so small that it rounds to no time at all.
		if err != nil || math.IsNaN(secs) || math.IsInf(secs, 0) || secs < 0.001 || secs > 3600 {
			return 0, fmt.Errorf("header %s: %q is not a number of seconds in [0.001, 3600]", scrapeTimeoutHeader, v)
		}
		timeout = time.Duration(secs * float64(time.Second))
	}
	budget := timeout - s.timeoutOffset
	if budget <= 0 {
		// A scrape timeout shorter than the offset still gets a small, bounded round.
		budget = timeout / 2
	}
	return budget, nil
}

func (s *server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	budget, err := s.roundBudget(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	setWriteDeadline(w, budget)
	ctx, cancel := context.WithTimeout(r.Context(), budget)
	defer cancel()
	round := s.engine.Probe(ctx, budget)

	reg := prometheus.NewRegistry()
	reg.MustRegister(round, diagnosis.Collector(s.diagnoses(round)))
	promhttp.HandlerFor(prometheus.Gatherers{s.self.registry, reg}, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(s.logger.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	}).ServeHTTP(w, r)
}

func (s *server) handleReady(w http.ResponseWriter, _ *http.Request) {
	if !s.configs.Status().Loaded {
		http.Error(w, "Not ready: no configuration loaded yet", http.StatusServiceUnavailable)
		return
	}
	if s.kube != nil && !s.kube.Ready() {
		http.Error(w, "Not ready: the Kubernetes caches have not synced yet", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "Ready")
}

func (s *server) handleReload(w http.ResponseWriter, _ *http.Request) {
	if err := s.configs.Reload(); err != nil {
		http.Error(w, fmt.Sprintf("configuration rejected, the previous one keeps serving:\n%v", err), http.StatusBadRequest)
		return
	}
	fmt.Fprintln(w, "configuration reloaded")
}

// handleProbe probes one known target now: /probe?target=<ip|hostname>. With
// debug=true it answers with the probe's log lines and the series it
// produced, as text. Unknown targets get 404: lbprobe is not an open proxy.
func (s *server) handleProbe(w http.ResponseWriter, r *http.Request) {
	target := strings.TrimSpace(r.URL.Query().Get("target"))
	if target == "" {
		http.Error(w, `missing query parameter "target" (a load balancer IP or a hostname that lbprobe knows; see /)`, http.StatusBadRequest)
		return
	}
	debug := false
	if v := r.URL.Query().Get("debug"); v != "" {
		var err error
		if debug, err = strconv.ParseBool(v); err != nil {
			http.Error(w, fmt.Sprintf("query parameter \"debug\": %q is not true or false", v), http.StatusBadRequest)
			return
		}
	}
	subset, ok := selectTarget(s.engine.Targets(), target)
	if !ok && s.engine.Shard().Sharded() {
		if _, elsewhere := selectTarget(s.engine.AllTargets(), target); elsewhere {
			http.Error(w, fmt.Sprintf("target %q belongs to another shard: this lbprobe serves shard %s (--shard/--total-shards); ask the instance whose shard owns it", target, s.engine.Shard()), http.StatusNotFound)
			return
		}
	}
	if !ok {
		http.Error(w, fmt.Sprintf("target %q is not a load balancer IP or hostname that lbprobe knows; it only probes its own targets (see /)", target), http.StatusNotFound)
		return
	}
	budget, err := s.roundBudget(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	select {
	case s.debugSlots <- struct{}{}:
		defer func() { <-s.debugSlots }()
	default:
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("%d /probe requests are running already: retry in a moment", cap(s.debugSlots)), http.StatusTooManyRequests)
		return
	}
	setWriteDeadline(w, budget)
	ctx, cancel := context.WithTimeout(r.Context(), budget)
	defer cancel()

	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	logger.Info("probing", "target", target, "budget", budget)
	round := s.engine.ProbeTargets(ctx, subset, budget, logger)
	logger.Info("done", "duration", round.Duration)

	reg := prometheus.NewRegistry()
	reg.MustRegister(round)
	if !debug {
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
		return
	}
	families, err := reg.Gather()
	if err != nil {
		http.Error(w, fmt.Sprintf("gathering the probe's series: %v", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "Logs for the probe of %s:\n%s\n", target, logs.String())
	if diags, ok := diagnosis.Select(s.diagnoses(round), target); ok {
		fmt.Fprintln(w, "Diagnosis (✓ ok, ✗ failed, ? not observed here):")
		for _, d := range diags {
			if err := d.WriteText(w); err != nil {
				return
			}
		}
		fmt.Fprintln(w)
	}
	if s.kube != nil {
		if findings := findingsFor(s.kube.Findings(), target); len(findings) > 0 {
			fmt.Fprintf(w, "What the cluster says is wrong (for %s, or cluster-wide):\n", target)
			for _, f := range findings {
				fmt.Fprintf(w, "  %s  %s: %s\n", f.Check, f.Object, f.Detail)
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintln(w, "Series it produced:")
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range families {
		if err := enc.Encode(mf); err != nil {
			return
		}
	}
}

// findingsFor returns the findings about target (an IP or a hostname) and
// those about the whole cluster.
func findingsFor(all []kube.Finding, target string) []kube.Finding {
	name := collector.HostnameKey(target)
	var out []kube.Finding
	for _, f := range all {
		if len(f.Targets) == 0 || slices.Contains(f.Targets, name) {
			out = append(out, f)
		}
	}
	return out
}

// selectTarget returns the targets that concern one IP, Service or
// hostname: every load balancer holding the IP (only that IP), the
// "namespace/service" load balancer, or every hostname target; with the
// nodes, for a load balancer (see Targets.Nodes).
func selectTarget(all collector.Targets, target string) (collector.Targets, bool) {
	var out collector.Targets
	if ip, err := netip.ParseAddr(target); err == nil {
		for _, lb := range all.LoadBalancers {
			for _, a := range lb.IPs {
				if a == ip {
					lb.IPs = []netip.Addr{ip}
					out.LoadBalancers = append(out.LoadBalancers, lb)
					break
				}
			}
		}
	} else if ns, name, ok := strings.Cut(target, "/"); ok {
		for _, lb := range all.LoadBalancers {
			if lb.Namespace == ns && lb.Service == name {
				out.LoadBalancers = append(out.LoadBalancers, lb)
			}
		}
	} else {
		name := collector.HostnameKey(target)
		for _, h := range all.Hostnames {
			if h.Hostname == name {
				out.Hostnames = append(out.Hostnames, h)
			}
		}
	}
	if len(out.LoadBalancers) > 0 {
		// ARP of the nodes names the MACs that answer, and the holder's.
		out.Nodes = all.Nodes
	}
	return out, len(out.LoadBalancers)+len(out.Hostnames) > 0
}
