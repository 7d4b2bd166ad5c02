package main

import (
	"context"
	_ "embed"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/version"

	"github.com/lbprobe/lbprobe/collector"
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
}

type landingData struct {
	Version       string
	ConfigFile    string
	ConfigError   string
	ConfigLoaded  string
	RoundAt       string
	RoundDuration string
	LoadBalancers []landingRow
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
	for _, lb := range round.LoadBalancers() {
		for _, ip := range lb.IPs {
			row := landingRow{
				OK:     ip.Reachable && !lbIPFailing(ip),
				Group:  lb.Namespace + "/" + lb.Service,
				Target: ip.IP.String(),
				Detail: describePorts(ip),
				Link:   "/probe?target=" + ip.IP.String() + "&debug=true",
			}
			data.LoadBalancers = append(data.LoadBalancers, row)
		}
	}
	for _, h := range round.Hostnames() {
		for _, d := range h.DNS {
			data.Hostnames = append(data.Hostnames, landingRow{
				OK:       d.Result.Success,
				Group:    h.Hostname.Hostname,
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
				Group:  h.Hostname.Hostname,
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
	for _, rows := range [][]landingRow{data.LoadBalancers, data.Hostnames} {
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
