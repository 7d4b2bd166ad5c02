package shard

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// SeriesKey is the key of a series from its labels, so that every series
// of a target lands in the target's shard: a load balancer's by
// namespace/service/ip (ip empty on the Service's own series), a hostname's
// by the hostname, the rest by the object they describe (HTTPRoute, Gateway,
// L2 policy, pool, lease, shared IP, node). ok is false for the series of
// the instance itself (lbprobe_*, which every shard exposes with its own
// instance label).
func SeriesKey(label func(name string) (string, bool)) (key string, ok bool) {
	get := func(name string) string { v, _ := label(name); return v }
	has := func(name string) bool { _, ok := label(name); return ok }
	switch {
	case has("service"):
		return get("namespace") + "/" + get("service") + "/" + get("ip"), true
	case has("hostname"):
		return HostnameKey(get("hostname")), true
	case has("route"):
		return "route:" + get("namespace") + "/" + get("route"), true
	case has("gateway"):
		return GatewayKey(get("namespace"), get("gateway")), true
	case has("policy"):
		return "policy:" + get("policy"), true
	case has("pool"):
		return "pool:" + get("pool"), true
	case has("lease"):
		return LeaseKey(get("lease")), true
	case has("ip"):
		return "ip:" + get("ip"), true
	case has("node"):
		return "node:" + get("node"), true
	}
	return "", false
}

// LeaseKey is the key of a lease that no Service owns (an orphan).
func LeaseKey(name string) string { return "lease:" + name }

// Collector returns c with only the series that sel's shard owns (and
// every series without a target key); unsharded it is c itself.
func Collector(c prometheus.Collector, sel *Selector) prometheus.Collector {
	return &filtered{inner: c, sel: sel}
}

type filtered struct {
	inner prometheus.Collector
	sel   *Selector
}

func (f *filtered) Describe(ch chan<- *prometheus.Desc) { f.inner.Describe(ch) }

func (f *filtered) Collect(ch chan<- prometheus.Metric) {
	s := f.sel.Get()
	if s.OwnsAll() {
		f.inner.Collect(ch)
		return
	}
	in := make(chan prometheus.Metric, 64)
	go func() {
		defer close(in)
		f.inner.Collect(in)
	}()
	var m dto.Metric
	for metric := range in {
		m.Reset()
		if err := metric.Write(&m); err != nil {
			ch <- metric // the registry reports the error
			continue
		}
		key, ok := SeriesKey(func(name string) (string, bool) {
			for _, l := range m.GetLabel() {
				if l.GetName() == name {
					return l.GetValue(), true
				}
			}
			return "", false
		})
		if !ok || s.Owns(key) {
			ch <- metric
		}
	}
}
