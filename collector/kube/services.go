package kube

import (
	"cmp"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/lbprobe/lbprobe/collector"
	"github.com/lbprobe/lbprobe/probe"
)

// Annotations and labels read on Services.
const (
	// AnnotationIgnore "true": the Service is not probed and gets no DNS
	// check (its state series remain).
	AnnotationIgnore = "lbprobe.io/ignore"
	// AnnotationICMP "true": also ping each ingress IP.
	AnnotationICMP = "lbprobe.io/icmp"
	// The hostname annotations k8s_gateway honours, in its order.
	annotationCoreDNSHostname     = "coredns.io/hostname"
	annotationExternalDNSHostname = "external-dns.alpha.kubernetes.io/hostname"
	// k8s-gateway's own Service carries this label (the Helm chart's).
	k8sGatewayLabel      = "app.kubernetes.io/name"
	k8sGatewayLabelValue = "k8s-gateway"
	// Cilium's L2 announcer class; any other class is not announced.
	l2AnnouncerClass = "io.cilium/l2-announcer"
)

func sortServices(s []*corev1.Service) {
	slices.SortFunc(s, func(a, b *corev1.Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
}

func isLoadBalancer(s *corev1.Service) bool { return s.Spec.Type == corev1.ServiceTypeLoadBalancer }

func annotationTrue(s *corev1.Service, key string) bool {
	v, err := strconv.ParseBool(strings.TrimSpace(s.Annotations[key]))
	return err == nil && v
}

// ingressIPs returns the IPs of status.loadBalancer.ingress, sorted and
// without duplicates; entries with only a hostname (or an unparsable IP)
// are left out.
func ingressIPs(s *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, in := range s.Status.LoadBalancer.Ingress {
		if in.IP == "" {
			continue
		}
		if ip, err := netip.ParseAddr(in.IP); err == nil {
			out = append(out, ip.Unmap())
		}
	}
	return probe.SortAddrs(out)
}

// ingressHostnames returns the hostnames of hostname-only ingress entries.
func ingressHostnames(s *corev1.Service) []string {
	var out []string
	for _, in := range s.Status.LoadBalancer.Ingress {
		if in.IP == "" && in.Hostname != "" && !slices.Contains(out, in.Hostname) {
			out = append(out, in.Hostname)
		}
	}
	return out
}

// externalIPs returns spec.externalIPs that parse, sorted.
func externalIPs(s *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, v := range s.Spec.ExternalIPs {
		if ip, err := netip.ParseAddr(v); err == nil {
			out = append(out, ip.Unmap())
		}
	}
	return probe.SortAddrs(out)
}

// portProbe says how a Service port is probed: TCP by a connect; UDP by a
// DNS query when it is port 53 or its name starts with "dns", else not;
// SCTP not.
func portProbe(p corev1.ServicePort) collector.ProbeKind {
	switch p.Protocol {
	case corev1.ProtocolTCP, "":
		return collector.ProbeTCP
	case corev1.ProtocolUDP:
		if p.Port == 53 || strings.HasPrefix(p.Name, "dns") {
			return collector.ProbeDNS
		}
	}
	return collector.ProbeNone
}

// loadBalancerTarget turns a LoadBalancer Service with ingress IPs into a
// target; ok is false for other Services, ignored ones and those without
// an IP.
func loadBalancerTarget(s *corev1.Service) (lb collector.LoadBalancer, ok bool) {
	if !isLoadBalancer(s) || annotationTrue(s, AnnotationIgnore) {
		return lb, false
	}
	ips := ingressIPs(s)
	if len(ips) == 0 {
		return lb, false
	}
	lb = collector.LoadBalancer{
		Namespace: s.Namespace,
		Service:   s.Name,
		IPs:       ips,
		ICMP:      annotationTrue(s, AnnotationICMP),
		Source:    "kubernetes",
	}
	for _, p := range s.Spec.Ports {
		if p.Port < 1 || p.Port > 65535 {
			continue
		}
		proto := string(p.Protocol)
		if proto == "" {
			proto = string(corev1.ProtocolTCP)
		}
		lb.Ports = append(lb.Ports, collector.Port{Port: uint16(p.Port), Protocol: proto, Probe: portProbe(p)})
	}
	return lb, true
}

// dnsServers returns the k8s-gateway DNS servers: each ingress IP of every
// LoadBalancer Service labelled app.kubernetes.io/name=k8s-gateway, on the
// Service's UDP port whose name starts with "dns", else its port 53, else
// 53. Sorted, without duplicates.
func dnsServers(services []*corev1.Service) []string {
	var out []string
	for _, s := range services {
		if !isLoadBalancer(s) || s.Labels[k8sGatewayLabel] != k8sGatewayLabelValue {
			continue
		}
		port := int32(53)
		for _, p := range s.Spec.Ports {
			if p.Protocol == corev1.ProtocolUDP && strings.HasPrefix(p.Name, "dns") {
				port = p.Port
				break
			}
		}
		for _, ip := range ingressIPs(s) {
			out = append(out, net.JoinHostPort(ip.String(), strconv.Itoa(int(port))))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// validHostnameAnnotation applies k8s_gateway's checkServiceAnnotation: one
// lower-case RFC 1123 name without a trailing dot (k8s_gateway v0.4.0 checks
// the same regular expression on the raw value, and labels of at most 63
// characters).
func validHostnameAnnotation(v string) bool {
	if len(validation.IsDNS1123Subdomain(v)) > 0 {
		return false
	}
	for label := range strings.SplitSeq(v, ".") {
		if len(validation.IsDNS1123Label(label)) > 0 {
			return false
		}
	}
	return true
}

func normalizeDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
}

// serviceDNSName is the name k8s_gateway answers for a LoadBalancer
// Service in zone: a valid coredns.io/hostname annotation, else a valid
// external-dns.alpha.kubernetes.io/hostname, else <name>.<namespace>; a
// name not already ending in the zone gets the zone appended (k8s_gateway
// also looks names up without their zone).
func serviceDNSName(s *corev1.Service, zone string) string {
	name := s.Name + "." + s.Namespace
	for _, key := range []string{annotationCoreDNSHostname, annotationExternalDNSHostname} {
		if v, ok := s.Annotations[key]; ok && validHostnameAnnotation(v) {
			name = v
			break
		}
	}
	if inZone(name, zone) {
		return name
	}
	return name + "." + zone
}

// serviceExpect is what k8s_gateway answers for a Service: spec.externalIPs
// when there are any, else the ingress IPs.
func serviceExpect(s *corev1.Service) []netip.Addr {
	if ips := externalIPs(s); len(ips) > 0 {
		return ips
	}
	return ingressIPs(s)
}

// serviceHostnames returns the DNS checks of LoadBalancer Services in zone
// (not for ignored Services, nor Services without an address: k8s_gateway
// answers NXDOMAIN for those). Services sharing a name expect the union of
// their addresses, as k8s_gateway answers.
func serviceHostnames(services []*corev1.Service, zone string, servers []string) []collector.Hostname {
	if zone == "" {
		return nil
	}
	type entry struct {
		svc  *corev1.Service
		name string
	}
	var entries []entry
	union := map[string][]netip.Addr{}
	for _, s := range services {
		if !isLoadBalancer(s) || annotationTrue(s, AnnotationIgnore) {
			continue
		}
		expect := serviceExpect(s)
		if len(expect) == 0 {
			continue
		}
		name := serviceDNSName(s, zone)
		entries = append(entries, entry{s, name})
		union[name] = append(union[name], expect...)
	}
	out := make([]collector.Hostname, 0, len(entries))
	for _, e := range entries {
		out = append(out, collector.Hostname{
			Hostname:  e.name,
			Expect:    probe.SortAddrs(slices.Clone(union[e.name])),
			Servers:   slices.Clip(servers),
			Source:    "service",
			Namespace: e.svc.Namespace,
			Name:      e.svc.Name,
		})
	}
	return out
}
