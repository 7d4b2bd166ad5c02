package diagnosis

import (
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lbprobe/lbprobe/collector"
	"github.com/lbprobe/lbprobe/collector/kube"
	"github.com/lbprobe/lbprobe/collector/shard"
)

// Cluster is what the cluster says, for the chains; the zero value is a
// run without Kubernetes discovery.
type Cluster struct {
	Services  []kube.ServiceState
	Hostnames map[string]kube.HostnameState
}

// Round diagnoses every load balancer IP and hostname of a round, and every
// LoadBalancer Service without an IP (not ignored), sorted by target.
func Round(r *collector.RoundResult, c Cluster, mode Mode) []Diagnosis {
	states := make(map[string]*kube.ServiceState, len(c.Services))
	for i := range c.Services {
		s := &c.Services[i]
		states[s.Namespace+"/"+s.Name] = s
	}
	var out []Diagnosis
	probed := map[string]bool{}
	for _, lb := range r.LoadBalancers() {
		key := lb.Namespace + "/" + lb.Service
		probed[key] = true
		for i := range lb.IPs {
			out = append(out, LoadBalancer(lb.LoadBalancer, states[key], &lb.IPs[i], mode))
		}
	}
	for key, st := range states {
		if probed[key] || st.Ignored || st.Assigned || len(st.Hostnames) > 0 ||
			!mode.Shard.Owns(shard.LoadBalancerKey(st.Namespace, st.Name, netip.Addr{})) {
			continue
		}
		out = append(out, LoadBalancer(collector.LoadBalancer{Namespace: st.Namespace, Service: st.Name}, st, nil, mode))
	}
	for _, h := range r.Hostnames() {
		var hs *kube.HostnameState
		if s, ok := c.Hostnames[h.Hostname.Hostname]; ok {
			hs = &s
		}
		out = append(out, Hostname(h, hs))
	}
	slices.SortFunc(out, func(a, b Diagnosis) int { return cmp.Compare(a.Target, b.Target) })
	return out
}

// Select returns the diagnoses of target: "namespace/service" (every IP of
// the Service), an IP, or a hostname; ok is false when none matches.
func Select(all []Diagnosis, target string) (out []Diagnosis, ok bool) {
	name := collector.HostnameKey(target)
	for _, d := range all {
		if d.Namespace+"/"+d.Service == target || (d.IP != "" && d.IP == target) || (d.Hostname != "" && d.Hostname == name) {
			out = append(out, d)
		}
	}
	return out, len(out) > 0
}

var (
	descLoadBalancer = prometheus.NewDesc("loadbalancer_diagnosis_info",
		"1 with the verdict of the load balancer IP's diagnosis chain: the cause of the first failed step (ip_pending, ip_not_requested_one, no_policy, policy_no_node, policy_interface_mismatch, not_announced, lease_expired, holder_not_ready, holder_silent, split_brain, route_via_tunnel, no_route, no_ready_backends, port_refused), or ok. ip is empty for a Service without an IP.",
		[]string{"namespace", "service", "ip", "cause"}, nil)
	descHostname = prometheus.NewDesc("gateway_hostname_diagnosis_info",
		"1 with the verdict of the hostname's diagnosis chain: the cause of the first failed step (route_not_accepted, gateway_not_programmed, dns_wrong_address, dns_nxdomain, dns_error, tls_invalid), or ok.",
		[]string{"hostname", "cause"}, nil)
)

// Collector exposes the verdicts of diagnoses as series.
type Collector []Diagnosis

// Describe implements prometheus.Collector.
func (c Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descLoadBalancer
	ch <- descHostname
}

// Collect implements prometheus.Collector. A target listed twice (a
// hostname that two objects claim) is exposed once, with the first failing
// verdict.
func (c Collector) Collect(ch chan<- prometheus.Metric) {
	verdict := make(map[string]int, len(c)) // key → index in c
	var order []string
	for i, d := range c {
		key := d.Hostname + "\x00" + d.Namespace + "/" + d.Service + "\x00" + d.IP
		j, seen := verdict[key]
		switch {
		case !seen:
			verdict[key] = i
			order = append(order, key)
		case c[j].OK() && !d.OK():
			verdict[key] = i
		}
	}
	for _, key := range order {
		d := c[verdict[key]]
		if d.Hostname != "" {
			collector.Gauge(ch, descHostname, 1, d.Hostname, d.Cause)
		} else {
			collector.Gauge(ch, descLoadBalancer, 1, d.Namespace, d.Service, d.IP, d.Cause)
		}
	}
}

// marks are the symbols of the step states in text.
var marks = map[State]string{OK: "✓", Failed: "✗", Unknown: "?"}

// WriteText writes the chain as a short table, then the verdict and the
// fix.
func (d Diagnosis) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", d.Target)
	width := 0
	for _, s := range d.Steps {
		width = max(width, utf8.RuneCountInString(s.Name))
	}
	for _, s := range d.Steps {
		fmt.Fprintf(&b, "  %s %-*s  %s\n", marks[s.State], width, s.Name, s.Evidence)
	}
	if d.OK() {
		b.WriteString("  verdict: ok\n")
	} else {
		fmt.Fprintf(&b, "  verdict: %s\n  fix: %s\n  runbook: %s\n", d.Cause, d.Fix, d.Runbook)
	}
	for _, r := range d.Remediations {
		fmt.Fprintf(&b, "  remediation %s (%s ago) %s: %s\n", r.At.UTC().Format(time.RFC3339), time.Since(r.At).Round(time.Second), r.Reason, r.Message)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
