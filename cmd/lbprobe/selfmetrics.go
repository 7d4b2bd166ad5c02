package main

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"

	"github.com/lbprobe/lbprobe/collector"
)

// selfMetrics are lbprobe's own series that outlive a scrape: build info,
// config reloads, probe counters, go_* and process_*.
type selfMetrics struct {
	registry            *prometheus.Registry
	configReloadSuccess prometheus.Gauge
	configReloadTime    prometheus.Gauge
	probes              *prometheus.CounterVec
	rounds              prometheus.Counter
}

func newSelfMetrics() *selfMetrics {
	s := &selfMetrics{
		registry: prometheus.NewRegistry(),
		configReloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lbprobe_config_last_reload_successful",
			Help: "1 when the last configuration reload succeeded, else 0.",
		}),
		configReloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lbprobe_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration reload.",
		}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lbprobe_probes_total",
			Help: "Probes run by finished rounds, by kind (" + strings.Join(collector.ProbeKinds(), ", ") + ") and result (success or the failure reason).",
		}, []string{"kind", "result"}),
		rounds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lbprobe_rounds_total",
			Help: "Rounds of probes finished. Scrapes that arrive while a round is in flight share it, so this can be lower than the scrape count.",
		}),
	}
	s.registry.MustRegister(
		versioncollector.NewCollector("lbprobe"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		s.configReloadSuccess, s.configReloadTime, s.probes, s.rounds,
	)
	return s
}

// observeRound counts the probes of a finished round.
func (s *selfMetrics) observeRound(r *collector.RoundResult) {
	s.rounds.Inc()
	for key, n := range r.ProbeCounts() {
		s.probes.WithLabelValues(key[0], key[1]).Add(float64(n))
	}
}
