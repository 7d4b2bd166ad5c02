// Package config loads the lbprobe configuration file.
//
// The file is one YAML document and it is strict. Parse works in three steps:
//
//  1. A walk of the node tree (lines.go) records the line of every key and
//     list item by field path (static.loadbalancers[0].ips[1]) for Validate,
//     and rejects the two things yaml.v3 lets through silently: a null list
//     item (it drops the item, shifting the indices after it) and a key that
//     is not a plain string (it skips a null key and decodes a !!binary one).
//  2. yaml.v3 decodes the document with KnownFields(true). The UnmarshalYAML
//     methods use the callback form, so that the same decoder runs inside
//     them: unknown keys, duplicate keys, values of the wrong kind and
//     excessive aliasing are yaml.v3's own checks, reported with their line
//     (the messages are reworded to name keys instead of Go types). Port and
//     IPList read their values themselves, because yaml.v3 takes port: 80.5
//     and 0x50 as 80, and stops the whole decoding at the first address that
//     does not parse, with a message naming no line.
//  3. Validate checks the decoded values. Parse hands it the line of every
//     key, so its errors point into the file.
//
// All problems of a step are reported together (errors.Join); a step runs
// only when the previous one found nothing.
//
// Defaults (for an absent or null key; for the string keys also an empty
// value):
//
//	probe.timeout                            0: the caller uses its --probe.timeout flag
//	dns.transport                            udp
//	static.loadbalancers[].ports[].protocol  TCP
//	static.loadbalancers[].ports[].probe     tcp for TCP, dns for UDP
//	static.hostnames[].tls.port              443 (an explicit 0 is an error)
//	static.hostnames[].tls.ips               a copy of the hostname's expect
//
// static.hostnames[].servers stays empty when absent: consumers fall back to
// dns.servers.
//
// A port is a decimal integer 1-65535 (no 0x50, 0o120, 0120 or 80.5).
//
// Validate rejects: a negative probe.timeout, or one below MinProbeTimeout;
// a dns.transport other than
// udp or tcp; a dns.domain or hostname that is not a DNS name (hostnames
// also: wildcards, IP addresses); DNS servers that are not host:port, and
// duplicates; a load balancer without namespace or service, a repeated
// (namespace, service), empty or repeated ips, neither ports nor icmp; an
// address with an IPv6 zone (fe80::1%eth0) in ips, expect or tls.ips; port
// 0, a protocol other than TCP or UDP, a probe other than tcp, dns or none,
// tcp on UDP and dns on TCP (the dns probe speaks UDP), a repeated
// port/protocol; a hostname without expect, a repeated (hostname,
// namespace, name), one with no DNS server at all (neither its own servers
// nor dns.servers); tls.port 0, repeated tls.ips, a tls.ca_file that does
// not exist; more than MaxTargets probe targets in all.
//
// Bounds, so that a config file cannot make lbprobe use unbounded memory,
// time or output: Parse and Load reject a file over MaxFileSize before
// parsing it; yaml.v3 rejects aliases that expand to far more values than
// the file holds ("excessive aliasing"); Validate rejects more than
// MaxTargets probe targets; an error lists at most MaxErrors problems, then
// how many more there are.
//
// A DNS name is an RFC 1123 subdomain, as Kubernetes checks it
// (k8s.io/apimachinery's IsDNS1123Subdomain and IsDNS1123Label): lower-case
// letters, digits and hyphens in dot-separated labels of 1-63 characters,
// at most 253 in all. Upper case is accepted and made lower case first; an
// underscore is not allowed (since issue 10; it was before).
//
// Normalization: protocol is upper case, probe and transport lower case
// (all case-insensitive in the file); hostnames and dns.domain are lower case
// without a trailing dot; a DNS server given as a bare IP address gets port
// 53 ("10.0.0.10" becomes "10.0.0.10:53", "::1" becomes "[::1]:53").
//
// Load resolves a relative tls.ca_file against the directory of the config
// file; Parse leaves it relative to the working directory. Validate checks
// that the file exists.
//
// A Config built in Go code should hold the canonical values that Parse
// produces; Validate checks them as consumers will see them (except an empty
// dns.transport, which means udp, so that the zero Config is valid).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Canonical values and defaults.
const (
	protocolTCP = "TCP"
	protocolUDP = "UDP"

	probeTCP  = "tcp"
	probeDNS  = "dns"
	probeNone = "none"

	transportUDP = "udp"
	transportTCP = "tcp"

	defaultTLSPort = 443
	defaultDNSPort = 53
)

// Bounds on a config file.
const (
	// MaxFileSize is the largest config file read: 8 MiB. A config of 10,000
	// ports on 10 IPs takes 0.2 MiB, 87,000 load balancers with one IP and
	// port each 8 MiB; checking that takes 4 s and 760 MiB of memory on a
	// small machine (yaml.v3's node trees are large), so far more would be a
	// mistake, or an attack on a process that reloads its config.
	MaxFileSize = 8 << 20
	// MaxTargets is the most probe targets a config may define: ports and
	// ICMP echoes of each load balancer IP, plus DNS and TLS checks of the
	// hostnames. 100,000 is ten times the 10,000 ports lbprobe is built to
	// probe in one round.
	MaxTargets = 100_000
	// MaxErrors is the most problems an error of Parse or Validate lists;
	// one line then says how many more there are.
	MaxErrors = 20
	// MinProbeTimeout is the shortest probe.timeout: below 10ms even a
	// healthy LAN target misses it (a first packet waits for ARP, a busy host
	// for the scheduler), so every probe would fail with timeout; such a
	// value is a typo of its unit.
	MinProbeTimeout = 10 * time.Millisecond
)

// Config is the whole configuration file.
type Config struct {
	Probe      ProbeConfig      `yaml:"probe"`
	DNS        DNSConfig        `yaml:"dns"`
	Static     StaticConfig     `yaml:"static"`
	Kubernetes KubernetesConfig `yaml:"kubernetes"`
}

// KubernetesConfig tunes what Kubernetes discovery derives from the cluster.
// Whether discovery runs at all is set by flags (--kube.enabled,
// --kubeconfig).
type KubernetesConfig struct {
	// TLS verifies the TLS checks of HTTPS Gateway listeners.
	TLS KubernetesTLS `yaml:"tls"`
}

// KubernetesTLS says how Gateway certificates are verified.
type KubernetesTLS struct {
	// CAFile is a PEM bundle to verify against instead of the system roots.
	CAFile string `yaml:"ca_file"`
	// InsecureSkipVerify reports the certificate without failing the check
	// on verification errors.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// ProbeConfig holds settings shared by all probes.
type ProbeConfig struct {
	// Timeout of one probe; 0 means the --probe.timeout flag.
	Timeout time.Duration `yaml:"timeout"`
}

// DNSConfig says which DNS servers hostname checks ask, and how.
type DNSConfig struct {
	// Servers as host:port; a bare IP address gets port 53.
	Servers []string `yaml:"servers"`
	// Domain is the zone Kubernetes discovery works in; optional.
	Domain string `yaml:"domain"`
	// Transport is udp (the default) or tcp.
	Transport string `yaml:"transport"`
}

// StaticConfig lists targets written in the file.
type StaticConfig struct {
	LoadBalancers []LoadBalancer `yaml:"loadbalancers"`
	Hostnames     []Hostname     `yaml:"hostnames"`
}

// LoadBalancer is a static stand-in for a LoadBalancer Service: every port
// is probed on every IP, and ICMP echo too when ICMP is set.
type LoadBalancer struct {
	// Namespace and Service are required: they are the label values the
	// series and the mixin group by.
	Namespace string `yaml:"namespace"`
	Service   string `yaml:"service"`
	IPs       IPList `yaml:"ips"`
	Ports     []Port `yaml:"ports"`
	ICMP      bool   `yaml:"icmp"`
}

// Port is one port of a load balancer.
type Port struct {
	Port PortNumber `yaml:"port"`
	// Protocol is TCP (the default) or UDP.
	Protocol string `yaml:"protocol"`
	// Probe is tcp (TCP connect; the default for TCP), dns (a DNS query,
	// any reply counts; the default for UDP, allowed only on UDP) or none
	// (listed, not probed).
	Probe string `yaml:"probe"`
}

// Hostname is a DNS name whose answers are checked, and optionally the TLS
// certificate served for it.
type Hostname struct {
	// Hostname is lower case, without a trailing dot; wildcards are not
	// allowed.
	Hostname string `yaml:"hostname"`
	// Expect is the exact set of addresses the name must resolve to.
	Expect IPList `yaml:"expect"`
	// Servers overrides dns.servers for this name.
	Servers []string `yaml:"servers"`
	// Namespace and Name are optional label values.
	Namespace string    `yaml:"namespace"`
	Name      string    `yaml:"name"`
	TLS       *TLSCheck `yaml:"tls"`
}

// TLSCheck asks for a TLS handshake with SNI = the hostname on each IP.
type TLSCheck struct {
	// Port defaults to 443.
	Port PortNumber `yaml:"port"`
	// IPs default to the hostname's Expect.
	IPs                IPList `yaml:"ips"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	// CAFile is a PEM bundle to verify against instead of the system roots.
	CAFile string `yaml:"ca_file"`
}

// Load reads and parses the config file at path. Its errors name the file.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	// One byte more than the limit is enough to tell that it is over.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cfg, err := parse(data, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Parse parses a config file's content strictly, applies the defaults and
// validates the result. An empty document is a valid, empty config.
func Parse(data []byte) (*Config, error) {
	return parse(data, "")
}

// parse is Parse with relative CA files resolved against dir ("" leaves them
// as they are).
func parse(data []byte, dir string) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("the config is larger than %d MiB, the most lbprobe reads", MaxFileSize>>20)
	}
	body, err := document(data)
	if err != nil {
		return nil, err
	}
	cfg := &Config{DNS: DNSConfig{Transport: transportUDP}}
	if body == nil {
		return cfg, nil
	}
	file, errs := walkLines(body)
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}

	// yaml.v3 has no KnownFields for decoding a node tree: parse again.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		return nil, joinErrors(file.decodeErrors(err))
	}
	if dir != "" {
		if ca := cfg.Kubernetes.TLS.CAFile; ca != "" && !filepath.IsAbs(ca) {
			cfg.Kubernetes.TLS.CAFile = filepath.Join(dir, ca)
		}
		for _, h := range cfg.Static.Hostnames {
			if h.TLS != nil && h.TLS.CAFile != "" && !filepath.IsAbs(h.TLS.CAFile) {
				h.TLS.CAFile = filepath.Join(dir, h.TLS.CAFile)
			}
		}
	}
	if err := cfg.validate(file.lines); err != nil {
		return nil, err
	}
	return cfg, nil
}

// document returns the body of the single YAML document in data, or nil when
// data holds no document or an empty one. A second document that is not
// empty is an error.
func document(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("invalid YAML: %w", err)
		}
		if b := body(&next); b != nil {
			return nil, fmt.Errorf("line %d: a second YAML document; the config file holds only one", b.Line)
		}
	}
	return body(&root), nil
}

// body returns a document's content, or nil when it is empty or null.
func body(doc *yaml.Node) *yaml.Node {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	if n := doc.Content[0]; !isNull(n) {
		return n
	}
	return nil
}

// The UnmarshalYAML methods use the callback form: unmarshal runs the
// caller's decoder, KnownFields included. Each decodes into a copy of its
// type declared here, whose name yaml.v3's messages give (see keysOf), so as
// not to call itself.
type (
	dnsKeys      DNSConfig
	portKeys     Port
	hostnameKeys Hostname
	tlsKeys      TLSCheck
)

// UnmarshalYAML applies the DNS defaults and normalization.
func (d *DNSConfig) UnmarshalYAML(unmarshal func(any) error) error {
	if err := unmarshal((*dnsKeys)(d)); err != nil {
		return err
	}
	d.Transport = strings.ToLower(d.Transport)
	if d.Transport == "" {
		d.Transport = transportUDP
	}
	d.Domain = normalizeName(d.Domain)
	normalizeServers(d.Servers)
	return nil
}

// UnmarshalYAML applies the port defaults and normalization.
func (p *Port) UnmarshalYAML(unmarshal func(any) error) error {
	if err := unmarshal((*portKeys)(p)); err != nil {
		return err
	}
	p.Protocol = strings.ToUpper(p.Protocol)
	if p.Protocol == "" {
		p.Protocol = protocolTCP
	}
	p.Probe = strings.ToLower(p.Probe)
	if p.Probe == "" {
		switch p.Protocol {
		case protocolTCP:
			p.Probe = probeTCP
		case protocolUDP:
			p.Probe = probeDNS
		}
	}
	return nil
}

// UnmarshalYAML normalizes the hostname and its servers, and gives a TLS
// check without ips the expected addresses. A null tls is an error: yaml.v3
// would leave the check out without a word.
func (h *Hostname) UnmarshalYAML(unmarshal func(any) error) error {
	var keys map[string]yaml.Node
	if err := unmarshal(&keys); err == nil {
		if n, ok := keys["tls"]; ok && isNull(&n) {
			return lineError(&n, "empty value: remove the key, or write {} for the defaults")
		}
	}
	if err := unmarshal((*hostnameKeys)(h)); err != nil {
		return err
	}
	h.Hostname = normalizeName(h.Hostname)
	normalizeServers(h.Servers)
	if h.TLS != nil && len(h.TLS.IPs) == 0 {
		h.TLS.IPs = slices.Clone(h.Expect)
	}
	return nil
}

// UnmarshalYAML applies the TLS check defaults.
func (t *TLSCheck) UnmarshalYAML(unmarshal func(any) error) error {
	*t = TLSCheck{Port: defaultTLSPort}
	return unmarshal((*tlsKeys)(t))
}

// PortNumber is a port number: in the file, a decimal integer (yaml.v3 alone
// takes 80.5, 0x50, 0o120 and 0120 for 80). 0 passes the decoding; Validate
// rejects it with the key's line.
type PortNumber uint16

// decimal is a decimal integer as a port is written.
var decimal = regexp.MustCompile(`^-?[0-9]+$`)

// UnmarshalYAML reads a decimal port number. A scalar has no keys, so this
// node form loses nothing of the decoder's strictness.
func (p *PortNumber) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch {
	case n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int":
		return lineError(n, "expected a port number, got %s", describe(n))
	case !decimal.MatchString(n.Value) || len(n.Value) > 1 && n.Value[0] == '0':
		return lineError(n, "%s is not a decimal port number", truncate(n.Value))
	}
	v, err := strconv.ParseInt(n.Value, 10, 32)
	if err != nil || v < 0 || v > 65535 {
		return lineError(n, "%s is out of range 1-65535", truncate(n.Value))
	}
	*p = PortNumber(v)
	return nil
}

// IPList is a list of IP addresses. An address that does not parse is
// reported with its line, and the others are still read (yaml.v3 alone stops
// the whole decoding there, naming no line).
type IPList []netip.Addr

// UnmarshalYAML reads the addresses. A list of scalars has no keys, so this
// node form loses nothing of the decoder's strictness.
func (l *IPList) UnmarshalYAML(list *yaml.Node) error {
	if list.Kind == yaml.AliasNode && list.Alias != nil {
		list = list.Alias
	}
	if list.Kind != yaml.SequenceNode {
		return lineError(list, "expected a list, got %s", describe(list))
	}
	*l = make(IPList, 0, len(list.Content))
	var problems []string
	for _, n := range list.Content {
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			problems = append(problems, lineMessage(n, "expected an IP address, got %s", describe(n)))
			continue
		}
		a, err := netip.ParseAddr(n.Value)
		if err != nil {
			problems = append(problems, lineMessage(n, "%q is not an IP address", truncate(n.Value)))
			continue
		}
		*l = append(*l, a)
	}
	if len(problems) > 0 {
		return &yaml.TypeError{Errors: problems}
	}
	return nil
}

// lineError is a problem with the value at node n, as a *yaml.TypeError:
// yaml.v3 collects those from UnmarshalYAML methods and decodes on, where any
// other error would stop it.
func lineError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{lineMessage(n, format, args...)}}
}

// lineMessage is a problem in yaml.v3's form, "line N: ...", with the
// value's column, so that reword can find its path.
func lineMessage(n *yaml.Node, format string, args ...any) string {
	return fmt.Sprintf("line %d: column %d: %s", n.Line, n.Column, fmt.Sprintf(format, args...))
}

// normalizeName lower-cases a DNS name and drops one trailing dot.
func normalizeName(s string) string {
	if len(s) > 1 {
		s = strings.TrimSuffix(s, ".")
	}
	return strings.ToLower(s)
}

// normalizeServers gives servers that are bare IP addresses (also "[::1]")
// port 53, in place. Anything else is left for Validate to judge.
func normalizeServers(servers []string) {
	for i, s := range servers {
		if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
			s = s[1 : len(s)-1]
		}
		if a, err := netip.ParseAddr(s); err == nil {
			servers[i] = netip.AddrPortFrom(a, defaultDNSPort).String()
		}
	}
}
