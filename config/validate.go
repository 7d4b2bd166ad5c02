package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// fieldError is a problem with the value at a field path, such as
// static.loadbalancers[1].ips[0]. Line is 0 when unknown.
type fieldError struct {
	path string
	line int
	msg  string
}

func (e *fieldError) Error() string {
	path := e.path
	if path == "" {
		path = "top level"
	}
	if e.line > 0 {
		return fmt.Sprintf("%s: %s (line %d)", path, e.msg, e.line)
	}
	return path + ": " + e.msg
}

// joinErrors is errors.Join of errs, of at most MaxErrors of them and then
// one that counts the rest.
func joinErrors(errs []error) error {
	if n := len(errs) - MaxErrors; n > 0 {
		more := fmt.Errorf("... and %d more errors", n)
		if n == 1 {
			more = errors.New("... and 1 more error")
		}
		errs = append(errs[:MaxErrors:MaxErrors], more)
	}
	return errors.Join(errs...)
}

// Validate checks the config and returns every problem found (at most
// MaxErrors, see joinErrors); each names the field path. It reads the file system only to
// check that CA files exist.
func (c *Config) Validate() error {
	return c.validate(nil)
}

// validate is Validate with the lines of the parsed file, by field path, so
// errors can name them.
func (c *Config) validate(lines map[string]int) error {
	v := &validator{lines: lines}
	switch t := c.Probe.Timeout; {
	case t < 0:
		v.addf("probe.timeout", "must not be negative, got %s", t)
	case t > 0 && t < MinProbeTimeout:
		v.addf("probe.timeout", "%s is below the minimum of %s", t, MinProbeTimeout)
	}
	if n := c.targets(); n > MaxTargets {
		v.addf("static", "%d probe targets, more than the limit of %d", n, MaxTargets)
	}
	v.dns(&c.DNS)
	services := make(map[[2]string]int)
	for i, lb := range c.Static.LoadBalancers {
		v.loadBalancer(lb, fmt.Sprintf("static.loadbalancers[%d]", i), services, i)
	}
	if ca := c.Kubernetes.TLS.CAFile; ca != "" {
		v.file("kubernetes.tls.ca_file", ca)
	}
	names := make(map[[3]string]int)
	for i, h := range c.Static.Hostnames {
		v.hostname(c, h, fmt.Sprintf("static.hostnames[%d]", i), names, i)
	}
	return joinErrors(v.errs)
}

// targets counts the probe targets of the config: every port and ICMP echo
// of every load balancer IP, and every DNS check (hostname × server) and TLS
// check (hostname × IP).
func (c *Config) targets() int {
	n := 0
	for _, lb := range c.Static.LoadBalancers {
		probes := len(lb.Ports)
		if lb.ICMP {
			probes++
		}
		n += len(lb.IPs) * probes
	}
	for _, h := range c.Static.Hostnames {
		if len(h.Servers) > 0 {
			n += len(h.Servers)
		} else {
			n += len(c.DNS.Servers)
		}
		if h.TLS != nil {
			n += len(h.TLS.IPs)
		}
	}
	return n
}

type validator struct {
	lines map[string]int
	errs  []error
}

// addf records a problem at path, with the line of path or of its nearest
// parent that has one.
func (v *validator) addf(path, format string, args ...any) {
	line := 0
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := v.lines[p]; ok {
			line = l
			break
		}
	}
	v.errs = append(v.errs, &fieldError{path: path, line: line, msg: fmt.Sprintf(format, args...)})
}

// present reports whether the parsed file had a key at path. Without line
// information (a Config built in code) it reports false.
func (v *validator) present(path string) bool {
	_, ok := v.lines[path]
	return ok
}

// parentPath drops the last element of a field path: a.b[1].c -> a.b[1] ->
// a.b -> a -> "".
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

func (v *validator) dns(d *DNSConfig) {
	switch d.Transport {
	case "", transportUDP, transportTCP:
	default:
		v.addf("dns.transport", "%q must be udp or tcp", d.Transport)
	}
	if d.Domain != "" {
		v.name("dns.domain", d.Domain)
	}
	v.servers("dns.servers", d.Servers)
}

// loadBalancer checks static.loadbalancers[i] at path p; seen maps the
// (namespace, service) pairs before it to their index.
func (v *validator) loadBalancer(lb LoadBalancer, p string, seen map[[2]string]int, i int) {
	v.required(p+".namespace", lb.Namespace)
	v.required(p+".service", lb.Service)
	if key := [2]string{lb.Namespace, lb.Service}; lb.Namespace != "" && lb.Service != "" {
		if first, dup := seen[key]; dup {
			v.addf(p, "duplicate load balancer %s/%s (first at static.loadbalancers[%d])", lb.Namespace, lb.Service, first)
		} else {
			seen[key] = i
		}
	}
	v.addrs(p+".ips", lb.IPs, true)
	if len(lb.Ports) == 0 && !lb.ICMP {
		v.addf(p, "probes nothing: list ports, set icmp: true, or both")
	}
	ports := make(map[Port]int, len(lb.Ports))
	for j, port := range lb.Ports {
		pp := fmt.Sprintf("%s.ports[%d]", p, j)
		v.portNumber(pp+".port", port.Port)
		switch port.Protocol {
		case protocolTCP, protocolUDP:
			v.probe(pp+".probe", port)
		default:
			v.addf(pp+".protocol", "%q must be TCP or UDP", port.Protocol)
		}
		key := Port{Port: port.Port, Protocol: port.Protocol}
		if first, dup := ports[key]; dup && port.Port != 0 {
			v.addf(pp, "duplicate port %d/%s (first at ports[%d])", port.Port, port.Protocol, first)
		} else if !dup {
			ports[key] = j
		}
	}
}

// probe checks a port's probe kind against its (valid) protocol.
func (v *validator) probe(path string, port Port) {
	switch port.Probe {
	case probeNone:
	case probeTCP:
		if port.Protocol == protocolUDP {
			v.addf(path, "tcp cannot probe a UDP port; use dns or none")
		}
	case probeDNS:
		if port.Protocol == protocolTCP {
			v.addf(path, "dns probes a UDP port; use tcp or none on a TCP port")
		}
	default:
		v.addf(path, "%q must be tcp, dns or none", port.Probe)
	}
}

// hostname checks static.hostnames[i] at path p; seen maps the (hostname,
// namespace, name) triples before it to their index.
func (v *validator) hostname(c *Config, h Hostname, p string, seen map[[3]string]int, i int) {
	switch {
	case h.Hostname == "":
		v.required(p+".hostname", h.Hostname)
	case strings.Contains(h.Hostname, "*"):
		v.addf(p+".hostname", "%q: wildcards are not allowed in static hostnames", h.Hostname)
	default:
		v.name(p+".hostname", h.Hostname)
	}
	if key := [3]string{h.Hostname, h.Namespace, h.Name}; h.Hostname != "" {
		if first, dup := seen[key]; dup {
			v.addf(p, "duplicate hostname %q with the same namespace and name (first at static.hostnames[%d])", h.Hostname, first)
		} else {
			seen[key] = i
		}
	}
	v.addrs(p+".expect", h.Expect, true)
	v.servers(p+".servers", h.Servers)
	if len(h.Servers) == 0 && len(c.DNS.Servers) == 0 {
		v.addf(p, "no DNS server to ask: set dns.servers, or servers on this hostname")
	}
	if t := h.TLS; t != nil {
		v.portNumber(p+".tls.port", t.Port)
		// Empty ips mean the expected addresses; don't report their
		// duplicates twice.
		if len(t.IPs) > 0 && !slices.Equal(t.IPs, h.Expect) {
			v.addrs(p+".tls.ips", t.IPs, false)
		}
		if t.CAFile != "" {
			v.file(p+".tls.ca_file", t.CAFile)
		}
	}
}

// required reports an empty value.
func (v *validator) required(path, s string) {
	if strings.TrimSpace(s) == "" {
		if v.present(path) {
			v.addf(path, "must not be empty")
		} else {
			v.addf(path, "required")
		}
	}
}

// portNumber reports a port outside 1-65535 (a uint16 can only be 0).
func (v *validator) portNumber(path string, port PortNumber) {
	if port != 0 {
		return
	}
	if v.present(path) {
		v.addf(path, "0 is out of range 1-65535")
	} else {
		v.addf(path, "required (1-65535)")
	}
}

// addrs reports invalid and duplicate addresses, and an empty list when
// nonEmpty is set.
func (v *validator) addrs(path string, addrs []netip.Addr, nonEmpty bool) {
	if len(addrs) == 0 {
		if nonEmpty {
			v.addf(path, "at least one IP address is required")
		}
		return
	}
	seen := make(map[netip.Addr]int, len(addrs))
	for j, a := range addrs {
		ap := fmt.Sprintf("%s[%d]", path, j)
		if !a.IsValid() {
			v.addf(ap, "not a valid IP address")
			continue
		}
		if a.Zone() != "" {
			v.addf(ap, "%s has an IPv6 zone; a load balancer address has none", a)
			continue
		}
		if first, dup := seen[a]; dup {
			v.addf(ap, "duplicate IP address %s (first at [%d])", a, first)
		} else {
			seen[a] = j
		}
	}
}

// servers reports DNS servers that are not host:port, and duplicates.
func (v *validator) servers(path string, servers []string) {
	seen := make(map[string]int, len(servers))
	for j, s := range servers {
		sp := fmt.Sprintf("%s[%d]", path, j)
		if problem := serverProblem(s); problem != "" {
			v.addf(sp, "%q %s", s, problem)
			continue
		}
		if first, dup := seen[s]; dup {
			v.addf(sp, "duplicate server %q (first at [%d])", s, first)
		} else {
			seen[s] = j
		}
	}
}

// serverProblem says what is wrong with a DNS server address, or "".
func serverProblem(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return "is not host:port (like 10.96.0.10:53) or an IP address"
	}
	// DNS names are case-insensitive; Validate wants them lower case.
	if _, err := netip.ParseAddr(host); err != nil && nameProblem(strings.ToLower(host)) != "" {
		return fmt.Sprintf("has host %q, neither an IP address nor a DNS name", host)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Sprintf("has port %q, not a number 1-65535", port)
	}
	return ""
}

// name reports a value that is not a DNS name.
func (v *validator) name(path, s string) {
	if _, err := netip.ParseAddr(s); err == nil {
		v.addf(path, "%q is an IP address, not a DNS name", s)
		return
	}
	if problem := nameProblem(s); problem != "" {
		v.addf(path, "%q is not a valid DNS name: %s", s, problem)
	}
}

// nameProblem says why s is not an RFC 1123 DNS name, as apimachinery
// decides it, or "". IsDNS1123Subdomain does not limit the length of a
// label: IsDNS1123Label checks each. The label at fault is named.
func nameProblem(s string) string {
	msgs := validation.IsDNS1123Subdomain(s)
	for label := range strings.SplitSeq(s, ".") {
		if label == "" {
			if len(msgs) > 0 {
				return "empty label"
			}
			continue
		}
		if m := validation.IsDNS1123Label(label); len(m) > 0 {
			return fmt.Sprintf("label %q %s", truncate(label), shortReason(m[0]))
		}
	}
	if len(msgs) > 0 {
		return shortReason(msgs[0])
	}
	return ""
}

// shortReason shortens one of apimachinery's messages to its reason:
// "a lowercase RFC 1123 label must consist of ... (e.g. 'my-name', regex
// used ...)" becomes "must consist of ...".
func shortReason(msg string) string {
	if i := strings.Index(msg, " (e.g. "); i >= 0 {
		msg = msg[:i]
	}
	if i := strings.Index(msg, "must "); i > 0 {
		msg = msg[i:]
	}
	return msg
}

// file reports a path that is not an existing regular file.
func (v *validator) file(path, name string) {
	fi, err := os.Stat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		v.addf(path, "no such file %q", name)
	case err != nil:
		v.addf(path, "cannot read %q: %v", name, err)
	case fi.IsDir():
		v.addf(path, "%q is a directory, not a file", name)
	}
}
