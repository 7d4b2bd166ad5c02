package kube

import (
	"cmp"
	"log/slog"
	"net/netip"
	"slices"
	"strings"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/lbprobe/lbprobe/collector"
	"github.com/lbprobe/lbprobe/probe"
)

// wildcardCheckLabel is the label put in place of "*" to check a wildcard
// route hostname: `*.example.com` is checked as
// `lbprobe-wildcard-check.example.com`, a name a client could ask for.
// k8s_gateway v0.4.0 indexes `*.example.com` literally and answers only a
// query for the literal name `*.example.com`, so this check reports
// nxdomain there: that is what clients of the wildcard route get.
const wildcardCheckLabel = "lbprobe-wildcard-check"

// checkName is the name asked for a route hostname.
func checkName(hostname string) string {
	if rest, ok := strings.CutPrefix(hostname, "*."); ok {
		return wildcardCheckLabel + "." + rest
	}
	return hostname
}

// gatewayKey names a Gateway.
type gatewayKey struct{ Namespace, Name string }

func (k gatewayKey) less(o gatewayKey) int {
	return cmp.Or(cmp.Compare(k.Namespace, o.Namespace), cmp.Compare(k.Name, o.Name))
}

// gatewayAddrs returns a Gateway's status addresses of type IPAddress (or
// without a type), sorted and without duplicates. Hostname-type addresses
// and values that are not IPs are skipped (debug log).
func gatewayAddrs(gw *gwv1.Gateway, logger *slog.Logger) []netip.Addr {
	var out []netip.Addr
	for _, a := range gw.Status.Addresses {
		if a.Type != nil && *a.Type != gwv1.IPAddressType {
			logger.Debug("gateway status address skipped: not an IP address type",
				"namespace", gw.Namespace, "gateway", gw.Name, "type", string(*a.Type), "value", a.Value)
			continue
		}
		ip, err := netip.ParseAddr(a.Value)
		if err != nil {
			logger.Debug("gateway status address skipped: not an IP", "namespace", gw.Namespace, "gateway", gw.Name, "value", a.Value)
			continue
		}
		out = append(out, ip.Unmap())
	}
	return probe.SortAddrs(out)
}

// isGatewayRef reports whether a parentRef names a Gateway: kind Gateway
// (or unset) in group gateway.networking.k8s.io (or unset).
func isGatewayRef(ref gwv1.ParentReference) bool {
	if ref.Group != nil && string(*ref.Group) != gwv1.GroupName {
		return false
	}
	return ref.Kind == nil || *ref.Kind == "Gateway"
}

// refKey is the Gateway a parentRef names; without a namespace it is the
// route's own namespace, for every parentRef (k8s_gateway v0.4.0 lets an
// explicit namespace leak into the parentRefs after it; this does not).
func refKey(routeNamespace string, ref gwv1.ParentReference) gatewayKey {
	ns := routeNamespace
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	return gatewayKey{Namespace: ns, Name: string(ref.Name)}
}

// parentGateways returns the distinct Gateways a route's parentRefs name.
func parentGateways(r *gwv1.HTTPRoute) []gatewayKey {
	var out []gatewayKey
	for _, ref := range r.Spec.ParentRefs {
		if !isGatewayRef(ref) {
			continue
		}
		if k := refKey(r.Namespace, ref); !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// gatewayView is the Gateways of the cluster with their parsed addresses.
type gatewayView struct {
	list  []*gwv1.Gateway // sorted by namespace, name
	byKey map[gatewayKey]*gwv1.Gateway
	addrs map[gatewayKey][]netip.Addr
}

func newGatewayView(gws []*gwv1.Gateway, logger *slog.Logger) gatewayView {
	v := gatewayView{
		list:  slices.Clone(gws),
		byKey: make(map[gatewayKey]*gwv1.Gateway, len(gws)),
		addrs: make(map[gatewayKey][]netip.Addr, len(gws)),
	}
	slices.SortFunc(v.list, func(a, b *gwv1.Gateway) int {
		return gatewayKey{a.Namespace, a.Name}.less(gatewayKey{b.Namespace, b.Name})
	})
	for _, gw := range v.list {
		k := gatewayKey{gw.Namespace, gw.Name}
		v.byKey[k] = gw
		v.addrs[k] = gatewayAddrs(gw, logger)
	}
	return v
}

// claim is one route's claim on a hostname.
type claim struct {
	route    *gwv1.HTTPRoute
	gateways []gatewayKey // every Gateway its parentRefs name, existing or not
	// refusedBy are the Gateways whose controller did not accept the route.
	refusedBy []gatewayKey
}

// hostClaims is everything known about one route hostname.
type hostClaims struct {
	hostname string  // as in spec.hostnames (lower-cased), wildcards included
	claims   []claim // sorted by route namespace, name
	// expect is what k8s_gateway answers: the union of the status
	// addresses of every existing Gateway any claim names.
	expect []netip.Addr
	// gateways are the distinct existing Gateways behind the claims; more
	// than one is a DNS conflict.
	gateways []gatewayKey
}

// conflict reports whether routes attached to different Gateways claim
// the hostname: k8s_gateway then answers the union of their addresses.
func (h *hostClaims) conflict() bool { return len(h.gateways) > 1 }

// routeIndex groups HTTPRoute hostnames.
type routeIndex struct {
	hosts []*hostClaims // sorted by hostname
}

// sortRoutes returns the routes sorted by namespace and name.
func sortRoutes(routes []*gwv1.HTTPRoute) []*gwv1.HTTPRoute {
	sorted := slices.Clone(routes)
	slices.SortFunc(sorted, func(a, b *gwv1.HTTPRoute) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return sorted
}

// newRouteIndex groups the hostnames of routes (sorted by sortRoutes).
func newRouteIndex(sorted []*gwv1.HTTPRoute, gws gatewayView, classes controllers) routeIndex {
	byHost := map[string]*hostClaims{}
	for _, r := range sorted {
		parents := parentGateways(r)
		refused := refusedBy(routeParents(r, gws, classes))
		var seen []string
		for _, h := range r.Spec.Hostnames {
			name := strings.ToLower(string(h))
			if name == "" || slices.Contains(seen, name) {
				continue
			}
			seen = append(seen, name)
			hc := byHost[name]
			if hc == nil {
				hc = &hostClaims{hostname: name}
				byHost[name] = hc
			}
			hc.claims = append(hc.claims, claim{route: r, gateways: parents, refusedBy: refused})
			for _, k := range parents {
				if _, ok := gws.byKey[k]; !ok || slices.Contains(hc.gateways, k) {
					continue
				}
				hc.gateways = append(hc.gateways, k)
				hc.expect = append(hc.expect, gws.addrs[k]...)
			}
		}
	}
	idx := routeIndex{hosts: make([]*hostClaims, 0, len(byHost))}
	for _, hc := range byHost {
		hc.expect = probe.SortAddrs(hc.expect)
		slices.SortFunc(hc.gateways, gatewayKey.less)
		idx.hosts = append(idx.hosts, hc)
	}
	slices.SortFunc(idx.hosts, func(a, b *hostClaims) int { return cmp.Compare(a.hostname, b.hostname) })
	return idx
}

// inZone reports whether a hostname lies in the DNS zone ("" = any zone).
func inZone(hostname, zone string) bool {
	if zone == "" {
		return true
	}
	return hostname == zone || strings.HasSuffix(hostname, "."+zone)
}

// routeHostnames turns route hostnames into hostname targets. A hostname
// whose Gateways have no IP address is skipped: k8s_gateway has nothing to
// answer (NXDOMAIN), and an empty expectation would make any answer
// correct; gateway_info and gateway_programmed tell about such Gateways.
// With a DNS zone set, a hostname outside it is not asked of the DNS
// servers (they are not authoritative for it) but its TLS checks run.
func routeHostnames(idx routeIndex, gws gatewayView, servers []string, zone string, logger *slog.Logger) []collector.Hostname {
	var out []collector.Hostname
	for _, hc := range idx.hosts {
		if len(hc.expect) == 0 {
			logger.Debug("route hostname skipped: its gateways have no IP address", "hostname", hc.hostname)
			continue
		}
		hostServers := servers
		if !inZone(hc.hostname, zone) {
			logger.Debug("route hostname outside the DNS zone: DNS not checked", "hostname", hc.hostname, "zone", zone)
			hostServers = nil
		}
		for _, c := range hc.claims {
			var refused []netip.Addr
			for _, k := range c.refusedBy {
				refused = append(refused, gws.addrs[k]...)
			}
			out = append(out, collector.Hostname{
				Hostname:      checkName(hc.hostname),
				Expect:        slices.Clone(hc.expect),
				Servers:       slices.Clip(hostServers),
				Source:        "httproute",
				Namespace:     c.route.Namespace,
				Name:          c.route.Name,
				TLS:           tlsChecks(c.route, hc.hostname, gws),
				NotAcceptedBy: probe.SortAddrs(refused),
			})
		}
	}
	return out
}

// tlsChecks returns one TLS check per port for the route hostname: every
// HTTPS listener of the route's parent Gateways that the parentRef selects
// (sectionName, port) and whose hostname (empty, literal or wildcard)
// intersects the route hostname, on that Gateway's addresses.
func tlsChecks(r *gwv1.HTTPRoute, hostname string, gws gatewayView) []collector.TLSCheck {
	byPort := map[uint16][]netip.Addr{}
	for _, ref := range r.Spec.ParentRefs {
		if !isGatewayRef(ref) {
			continue
		}
		k := refKey(r.Namespace, ref)
		gw, ok := gws.byKey[k]
		if !ok || len(gws.addrs[k]) == 0 {
			continue
		}
		for _, l := range gw.Spec.Listeners {
			if l.Protocol != gwv1.HTTPSProtocolType || l.Port < 1 || l.Port > 65535 {
				continue
			}
			if ref.SectionName != nil && *ref.SectionName != "" && *ref.SectionName != l.Name {
				continue
			}
			if ref.Port != nil && *ref.Port != l.Port {
				continue
			}
			lh := ""
			if l.Hostname != nil {
				lh = strings.ToLower(string(*l.Hostname))
			}
			if !hostnamesIntersect(lh, hostname) {
				continue
			}
			p := uint16(l.Port)
			byPort[p] = append(byPort[p], gws.addrs[k]...)
		}
	}
	if len(byPort) == 0 {
		return nil
	}
	ports := make([]uint16, 0, len(byPort))
	for p := range byPort {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	out := make([]collector.TLSCheck, 0, len(ports))
	for _, p := range ports {
		out = append(out, collector.TLSCheck{Port: p, IPs: probe.SortAddrs(byPort[p])})
	}
	return out
}

// hostnamesIntersect reports whether a listener hostname ("" = any) and a
// route hostname can match the same name, as Gateway API attaches routes:
// equal literals; `*.s` matches names with at least one more label than s;
// two wildcards intersect when one suffix contains the other.
func hostnamesIntersect(listener, route string) bool {
	if listener == "" || listener == route {
		return true
	}
	lw, lok := strings.CutPrefix(listener, "*.")
	rw, rok := strings.CutPrefix(route, "*.")
	switch {
	case lok && rok:
		return strings.HasSuffix(lw, "."+rw) || strings.HasSuffix(rw, "."+lw)
	case lok:
		return strings.HasSuffix(route, "."+lw)
	case rok:
		return strings.HasSuffix(listener, "."+rw)
	}
	return false
}

// gatewayListeners returns every listener of every Gateway on every IP
// status address.
func gatewayListeners(gws gatewayView) []collector.GatewayListener {
	var out []collector.GatewayListener
	for _, gw := range gws.list {
		addrs := gws.addrs[gatewayKey{gw.Namespace, gw.Name}]
		for _, l := range gw.Spec.Listeners {
			if l.Port < 1 || l.Port > 65535 {
				continue
			}
			for _, a := range addrs {
				out = append(out, collector.GatewayListener{
					Namespace: gw.Namespace,
					Gateway:   gw.Name,
					Listener:  string(l.Name),
					Address:   a,
					Port:      uint16(l.Port),
					Protocol:  string(l.Protocol),
				})
			}
		}
	}
	return out
}
