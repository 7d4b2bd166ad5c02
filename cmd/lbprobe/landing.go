package main

import (
	"context"
	_ "embed"
	"html/template"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/version"

	"github.com/lbprobe/lbprobe/collector"
	"github.com/lbprobe/lbprobe/collector/kube"
	"github.com/lbprobe/lbprobe/probe"
)

//go:embed landing.html
var landingHTML string

var landingTemplate = template.Must(template.New("landing").Parse(landingHTML))

// landingMaxAge is how old the last round may be before the landing page
// runs a fresh one (sharing any round in flight).
const landingMaxAge = time.Minute

// landingRow is one line of the landing page's tables.
type landingRow struct {
	OK       bool
	Group    string // namespace/service, or the hostname
	Target   string // the IP, or the DNS server
	Detail   string // ports and their results, or the DNS verdict
	Answer   string
	Expected string
	Link     string // debug view of the target
	// Kubernetes state of a load balancer IP (empty without discovery).
	Announced string // "yes", "NO", or "" when not applicable
	Holder    string
	LeaseAge  string
	DNS       string // DNS verdicts of the Service's own name
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
	Gateways      []landingRow
	Hostnames     []landingRow
	Failing       int
}

func (s *server) handleLanding(w http.ResponseWriter, r *http.Request) {
	round := s.engine.Last()
	if round == nil || time.Since(round.Started) > landingMaxAge {
		budget := s.defaultScrapeTimeout - s.timeoutOffset
		ctx, cancel := context.WithTimeout(r.Context(), budget)
		round = s.engine.Probe(ctx, budget)
		cancel()
	}
	data := landingData{
		Version:       version.Info(),
		ConfigFile:    s.configs.path,
		RoundAt:       round.Started.Format(time.RFC3339),
		RoundDuration: round.Duration.Round(time.Millisecond).String(),
	}
	if st := s.configs.Status(); st.Loaded {
		data.ConfigLoaded = st.At.Format(time.RFC3339)
		if st.LastErr != nil {
			data.ConfigError = st.LastErr.Error()
		}
	}
	hostnames := round.Hostnames()
	states := s.kubeStates()
	data.Kubernetes = s.kube != nil
	seen := make(map[string]bool)
	for _, lb := range round.LoadBalancers() {
		key := lb.Namespace + "/" + lb.Service
		seen[key] = true
		for _, ip := range lb.IPs {
			row := landingRow{
				OK:     ip.Reachable && !lbIPFailing(ip),
				Group:  key,
				Target: ip.IP.String(),
				Detail: describePorts(ip),
				Link:   "/probe?target=" + ip.IP.String() + "&debug=true",
				DNS:    serviceDNSVerdicts(hostnames, lb.Namespace, lb.Service),
			}
			if st, ok := states[key]; ok {
				describeL2(&row, st, ip.IP)
				if strings.HasPrefix(row.Announced, "NO") {
					row.OK = false
				}
			}
			data.LoadBalancers = append(data.LoadBalancers, row)
		}
	}
	// Services the engine does not probe: no IP assigned, or ignored.
	for key, st := range states {
		if seen[key] || st.Ignored {
			continue
		}
		row := landingRow{Group: key, Target: "(none)", Detail: "no IP assigned"}
		if len(st.Hostnames) > 0 {
			row.Target, row.Detail = strings.Join(st.Hostnames, ", "), "hostname ingress: not probed"
		}
		data.LoadBalancers = append(data.LoadBalancers, row)
	}
	for _, l := range round.GatewayListeners() {
		detail := "UDP: not probed"
		if l.Probed {
			detail = "ok"
			if !l.Result.Success {
				detail = string(l.Result.Reason)
			}
		}
		data.Gateways = append(data.Gateways, landingRow{
			OK:     !l.Probed || l.Result.Success,
			Group:  l.Namespace + "/" + l.Gateway,
			Target: l.Address.String() + ":" + strconv.Itoa(int(l.Port)),
			Detail: l.Listener + " (" + l.Protocol + "): " + detail,
		})
	}
	for _, h := range hostnames {
		group := h.Hostname.Hostname
		if h.Source != "static" {
			group += " (" + h.Source + " " + h.Namespace + "/" + h.Name + ")"
		}
		for _, d := range h.DNS {
			data.Hostnames = append(data.Hostnames, landingRow{
				OK:       d.Result.Success,
				Group:    group,
				Target:   "DNS " + d.Server,
				Detail:   string(d.Result.Verdict) + rcodeSuffix(d.Result),
				Answer:   joinAddrList(d.Result.Addresses),
				Expected: joinAddrList(h.Expect),
				Link:     "/probe?target=" + h.Hostname.Hostname + "&debug=true",
			})
		}
		for _, t := range h.TLS {
			detail := "TLS ok"
			if !t.Result.Success {
				detail = "TLS " + string(t.Result.Reason)
			}
			if !t.Result.NotAfter.IsZero() {
				detail += ", certificate valid until " + t.Result.NotAfter.UTC().Format(time.DateOnly)
			}
			data.Hostnames = append(data.Hostnames, landingRow{
				OK:     t.Result.Success,
				Group:  group,
				Target: "TLS " + t.IP.String() + ":" + strconv.Itoa(int(t.Port)),
				Detail: detail,
				Link:   "/probe?target=" + h.Hostname.Hostname + "&debug=true",
			})
		}
	}
	failuresFirst := func(a, b landingRow) int {
		if a.OK != b.OK {
			if !a.OK {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Group+" "+a.Target, b.Group+" "+b.Target)
	}
	slices.SortStableFunc(data.LoadBalancers, failuresFirst)
	slices.SortStableFunc(data.Hostnames, failuresFirst)
	slices.SortStableFunc(data.Gateways, failuresFirst)
	for _, rows := range [][]landingRow{data.LoadBalancers, data.Gateways, data.Hostnames} {
		for _, row := range rows {
			if !row.OK {
				data.Failing++
			}
		}
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

// describeL2 fills the announcement columns of a load balancer IP row.
func describeL2(row *landingRow, st kube.ServiceState, ip netip.Addr) {
	var ipst kube.IPState
	for _, p := range st.PerIP {
		if p.IP == ip {
			ipst = p
		}
	}
	switch {
	case st.Policies < 0: // the policy CRD is not served: unknown
	case st.Policies == 0:
		row.Announced = "NO (no L2 policy selects it)"
	case ipst.Announced:
		row.Announced = "yes"
	default:
		row.Announced = "NO"
	}
	row.Holder = ipst.Holder
	if ipst.Holder != "" && ipst.LeaseAge >= 0 {
		row.LeaseAge = ipst.LeaseAge.Round(time.Second).String() + " (renewed " + ipst.RenewAge.Round(time.Second).String() + " ago)"
		if ipst.Expired {
			row.LeaseAge += ", EXPIRED"
		}
	}
}

// serviceDNSVerdicts summarises the DNS checks of a Service's own name.
func serviceDNSVerdicts(hostnames []collector.HostnameStatus, ns, name string) string {
	var parts []string
	for _, h := range hostnames {
		if h.Source != "service" || h.Namespace != ns || h.Name != name {
			continue
		}
		for _, d := range h.DNS {
			parts = append(parts, h.Hostname.Hostname+": "+string(d.Result.Verdict))
		}
	}
	return strings.Join(parts, ", ")
}

func lbIPFailing(ip collector.IPStatus) bool {
	for _, p := range ip.Ports {
		if !p.Result.Success {
			return true
		}
	}
	return ip.ICMP != nil && !ip.ICMP.Success
}

func describePorts(ip collector.IPStatus) string {
	parts := make([]string, 0, len(ip.Ports)+1)
	for _, p := range ip.Ports {
		state := "ok"
		if !p.Result.Success {
			state = string(p.Result.Reason)
		}
		parts = append(parts, strconv.Itoa(int(p.Port))+"/"+p.Protocol+" "+state+" ("+p.Result.Duration.Round(time.Microsecond).String()+")")
	}
	if ip.ICMP != nil {
		state := "ok " + ip.ICMP.RTT.Round(time.Microsecond).String()
		if !ip.ICMP.Success {
			state = string(ip.ICMP.Reason)
		}
		parts = append(parts, "icmp "+state)
	}
	if len(parts) == 0 {
		return "nothing probed"
	}
	return strings.Join(parts, ", ")
}

func rcodeSuffix(r probe.DNSResult) string {
	if r.Rcode == "" || r.Rcode == "NOERROR" {
		return ""
	}
	return " (" + r.Rcode + ")"
}

func joinAddrList[T interface{ String() string }](addrs []T) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
