// Package config loads the lbprobe configuration file.
//
// The file is one YAML document and it is strict. Parse works in three steps:
//
//  1. The YAML node tree is checked against the Go types below (see
//     strict.go): unknown keys, duplicate keys, a list where a mapping
//     belongs, and scalars that do not fit their field (port: abc,
//     ips: [10.0.0.x]) are errors naming the key path and the line. yaml.v3's
//     KnownFields is not applied inside custom UnmarshalYAML methods and its
//     messages name Go types rather than keys, hence this walk.
//  2. The document is decoded with KnownFields(true). Defaults and
//     normalization are applied by UnmarshalYAML methods with the
//     `type plain T` trick, so they hold wherever a value is decoded.
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
// Validate rejects: a negative probe.timeout; a dns.transport other than
// udp or tcp; a dns.domain or hostname that is not a DNS name (hostnames
// also: wildcards, IP addresses); DNS servers that are not host:port, and
// duplicates; a load balancer without namespace or service, a repeated
// (namespace, service), empty or repeated ips, neither ports nor icmp; port
// 0, a protocol other than TCP or UDP, a probe other than tcp, dns or none,
// tcp on UDP and dns on TCP (the dns probe speaks UDP), a repeated
// port/protocol; a hostname without expect, a repeated (hostname,
// namespace, name), one with no DNS server at all (neither its own servers
// nor dns.servers); tls.port 0, repeated tls.ips, a tls.ca_file that does
// not exist.
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
	"slices"
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
	Namespace string       `yaml:"namespace"`
	Service   string       `yaml:"service"`
	IPs       []netip.Addr `yaml:"ips"`
	Ports     []Port       `yaml:"ports"`
	ICMP      bool         `yaml:"icmp"`
}

// Port is one port of a load balancer.
type Port struct {
	Port uint16 `yaml:"port"`
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
	Expect []netip.Addr `yaml:"expect"`
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
	Port uint16 `yaml:"port"`
	// IPs default to the hostname's Expect.
	IPs                []netip.Addr `yaml:"ips"`
	InsecureSkipVerify bool         `yaml:"insecure_skip_verify"`
	// CAFile is a PEM bundle to verify against instead of the system roots.
	CAFile string `yaml:"ca_file"`
}

// Load reads and parses the config file at path. Its errors name the file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
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
	body, err := document(data)
	if err != nil {
		return nil, err
	}
	cfg := &Config{DNS: DNSConfig{Transport: transportUDP}}
	if body == nil {
		return cfg, nil
	}
	c := newChecker(len(data))
	c.visit(body, configType, "", false)
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}

	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		// The walk above should have caught everything yaml.v3 rejects.
		return nil, fmt.Errorf("decoding: %w", err)
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
	if err := cfg.validate(c.lines); err != nil {
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

// UnmarshalYAML applies the DNS defaults and normalization.
func (d *DNSConfig) UnmarshalYAML(n *yaml.Node) error {
	type plain DNSConfig
	if err := n.Decode((*plain)(d)); err != nil {
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
func (p *Port) UnmarshalYAML(n *yaml.Node) error {
	type plain Port
	if err := n.Decode((*plain)(p)); err != nil {
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
// check without ips the expected addresses.
func (h *Hostname) UnmarshalYAML(n *yaml.Node) error {
	type plain Hostname
	if err := n.Decode((*plain)(h)); err != nil {
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
func (t *TLSCheck) UnmarshalYAML(n *yaml.Node) error {
	*t = TLSCheck{Port: defaultTLSPort}
	type plain TLSCheck
	return n.Decode((*plain)(t))
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
