package remediate

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lbprobe/lbprobe/collector"
)

var (
	descRemediations = prometheus.NewDesc("lbprobe_remediations_total",
		"Lease remediation actions by action (delete_expired_lease, delete_not_ready_lease, delete_silent_lease, delete_orphaned_lease, verify) and result (deleted, dry_run, conflict, not_found, error, cooldown, budget, stopped, not_leader; verify: fixed, not_fixed).",
		[]string{"action", "result"}, nil)
	descLastAction = prometheus.NewDesc("lbprobe_remediation_last_action_timestamp_seconds",
		"When remediation last deleted (or, in dry-run, would have deleted) the lease.",
		[]string{"lease"}, nil)
	descStopped = prometheus.NewDesc("lbprobe_remediation_stopped",
		"1 for a lease remediation stopped acting on: its last delete did not bring a Ready holder and an answering IP (until the Service is healthy again).",
		[]string{"lease"}, nil)
	descLeader = prometheus.NewDesc("lbprobe_remediation_leader",
		"1 when this lbprobe may act (it holds the remediation leader Lease), else 0.",
		nil, nil)
)

// Describe implements prometheus.Collector.
func (r *Remediator) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRemediations
	ch <- descLastAction
	ch <- descStopped
	ch <- descLeader
}

// Collect implements prometheus.Collector.
func (r *Remediator) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, v := range r.counts {
		ch <- prometheus.MustNewConstMetric(descRemediations, prometheus.CounterValue, v, k[0], k[1])
	}
	for name, rec := range r.leases {
		if !rec.lastAction.IsZero() {
			collector.Gauge(ch, descLastAction, float64(rec.lastAction.UnixNano())/1e9, name)
		}
		if rec.stopped {
			collector.Gauge(ch, descStopped, 1, name)
		}
	}
	collector.Gauge(ch, descLeader, collector.BoolValue(r.leading.Load()))
}
