package main

import (
	"context"
	_ "embed"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/common/version"

	"github.com/lbprobe/lbprobe/collector"
	"github.com/lbprobe/lbprobe/collector/diagnosis"
	"github.com/lbprobe/lbprobe/collector/kube"
	"github.com/lbprobe/lbprobe/collector/remediate"
)

//go:embed landing.html
var landingHTML string

var landingTemplate = template.Must(template.New("landing").Parse(landingHTML))

// landingMaxAge is how old the last round may be before the landing page
// runs a fresh one (sharing any round in flight).
const landingMaxAge = time.Minute

// landingRow is a load balancer IP's row: the round's overview, and what the
// cluster says of its announcement (empty without Kubernetes discovery).
type landingRow struct {
	collector.LoadBalancerRow
	kube.Announcement
	why
}

// why is a row's verdict: the diagnosis chain's cause and fix (empty when
// the target is healthy).
type why struct {
	Cause, Fix, Runbook string
}

func whyOf(d diagnosis.Diagnosis, ok bool) why {
	if !ok || d.OK() {
		return why{}
	}
	return why{Cause: d.Cause, Fix: d.Fix, Runbook: d.Runbook}
}

// hostnameRow is a hostname check's row and the hostname's verdict.
type hostnameRow struct {
	collector.Row
	why
}

type landingData struct {
	Version       string
	ConfigFile    string
	ConfigError   string
	ConfigLoaded  string
	RoundAt       string
	RoundDuration string
	Kubernetes    bool
	LoadBalancers []landingRow
	Gateways      []collector.Row
	Hostnames     []hostnameRow
	Findings      []kube.Finding
	Failing       int
	// NotStarted: probes of the round that never got a slot.
	NotStarted int
	// Remediation is the --remediate.leases mode, empty when off; Actions
	// what it did, newest first.
	Remediation string
	Leading     bool
	Actions     []remediate.Action
}

func (s *server) handleLanding(w http.ResponseWriter, r *http.Request) {
	round := s.engine.Last()
	if round == nil || time.Since(round.Started) > landingMaxAge {
		budget := s.defaultScrapeTimeout - s.timeoutOffset
		setWriteDeadline(w, budget)
		ctx, cancel := context.WithTimeout(r.Context(), budget)
		round = s.engine.Probe(ctx, budget)
		cancel()
	}
	overview := round.Overview()
	data := landingData{
		Version:       version.Info(),
		ConfigFile:    s.configs.path,
		RoundAt:       round.Started.Format(time.RFC3339),
		RoundDuration: round.Duration.Round(time.Millisecond).String(),
		Kubernetes:    s.kube != nil,
		Gateways:      overview.Listeners,
		NotStarted:    round.NotStarted(),
	}
	verdicts := map[string]diagnosis.Diagnosis{}
	for _, d := range s.diagnoses(round) {
		verdicts[d.Target] = d
	}
	for _, h := range overview.Hostnames {
		d, ok := verdicts[h.Group]
		data.Hostnames = append(data.Hostnames, hostnameRow{Row: h, why: whyOf(d, ok)})
	}
	if st := s.configs.Status(); st.Loaded {
		data.ConfigLoaded = st.At.Format(time.RFC3339)
		if st.LastErr != nil {
			data.ConfigError = st.LastErr.Error()
		}
	}
	if s.kube != nil {
		data.Findings = s.kube.Findings()
	}
	states := s.kubeStates()
	probed := make(map[string]bool)
	for _, lb := range overview.LoadBalancers {
		key := lb.Namespace + "/" + lb.Service
		probed[key] = true
		d, ok := verdicts[key+" "+lb.IP.String()]
		row := landingRow{LoadBalancerRow: lb, why: whyOf(d, ok)}
		if st, ok := states[key]; ok {
			row.Announcement = st.Announcement(lb.IP)
			row.OK = row.OK && !row.Failing
		}
		data.LoadBalancers = append(data.LoadBalancers, row)
	}
	// Services the engine does not probe: no IP assigned, or ignored.
	for key, st := range states {
		if probed[key] || st.Ignored {
			continue
		}
		d, ok := verdicts[key]
		row := landingRow{LoadBalancerRow: collector.LoadBalancerRow{Row: collector.Row{Group: key, Target: "(none)", Detail: "no IP assigned"}}, why: whyOf(d, ok)}
		if len(st.Hostnames) > 0 {
			row.Target, row.Detail = strings.Join(st.Hostnames, ", "), "hostname ingress: not probed"
		}
		data.LoadBalancers = append(data.LoadBalancers, row)
	}
	collector.SortRows(data.LoadBalancers)
	collector.SortRows(data.Gateways)
	collector.SortRows(data.Hostnames)
	for _, row := range data.LoadBalancers {
		if !row.OK {
			data.Failing++
		}
	}
	for _, row := range data.Gateways {
		if !row.OK {
			data.Failing++
		}
	}
	for _, row := range data.Hostnames {
		if !row.OK {
			data.Failing++
		}
	}
	if s.remediator != nil {
		data.Remediation, data.Leading, data.Actions = string(s.remediator.Mode()), s.remediator.Leading(), s.remediator.History()
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := landingTemplate.Execute(w, data); err != nil {
		s.logger.Error("rendering the landing page", "err", err)
	}
}

// kubeStates returns the Kubernetes state of every LoadBalancer Service by
// "namespace/name"; empty without discovery.
func (s *server) kubeStates() map[string]kube.ServiceState {
	out := make(map[string]kube.ServiceState)
	if s.kube == nil {
		return out
	}
	for _, st := range s.kube.ServiceStates() {
		out[st.Namespace+"/"+st.Name] = st
	}
	return out
}
