package collector

import (
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"github.com/lbprobe/lbprobe/config"
	"github.com/lbprobe/lbprobe/probe"
)

// StaticSource serves the targets of the config file. Set swaps them in one
// step, so a scrape sees either the old or the new config, never a mix.
type StaticSource struct {
	targets atomic.Pointer[Targets]
}

var _ Source = (*StaticSource)(nil)

// Targets implements Source.
func (s *StaticSource) Targets() Targets {
	if t := s.targets.Load(); t != nil {
		return *t
	}
	return Targets{}
}

// Set replaces the targets.
func (s *StaticSource) Set(t Targets) { s.targets.Store(&t) }

// StaticTargets turns the static section of a validated config into targets.
// It reads the CA files that TLS checks name, so it can fail; the error names
// the field.
func StaticTargets(cfg *config.Config) (Targets, error) {
	var t Targets
	for _, lb := range cfg.Static.LoadBalancers {
		target := LoadBalancer{
			Namespace: lb.Namespace,
			Service:   lb.Service,
			IPs:       lb.IPs,
			ICMP:      lb.ICMP,
			Source:    "static",
		}
		for _, p := range lb.Ports {
			target.Ports = append(target.Ports, Port{Port: uint16(p.Port), Protocol: strings.ToUpper(p.Protocol), Probe: ProbeKind(p.Probe)})
		}
		t.LoadBalancers = append(t.LoadBalancers, target)
	}
	for i, h := range cfg.Static.Hostnames {
		target := Hostname{
			Hostname:  h.Hostname,
			Expect:    h.Expect,
			Servers:   h.Servers,
			Source:    "static",
			Namespace: h.Namespace,
			Name:      h.Name,
		}
		if len(target.Servers) == 0 {
			target.Servers = cfg.DNS.Servers
		}
		if h.TLS != nil {
			check := TLSCheck{Port: uint16(h.TLS.Port), IPs: h.TLS.IPs, Options: probe.TLSOptions{InsecureSkipVerify: h.TLS.InsecureSkipVerify}}
			if len(check.IPs) == 0 {
				check.IPs = h.Expect
			}
			if h.TLS.CAFile != "" {
				pool, err := LoadCAFile(h.TLS.CAFile)
				if err != nil {
					return Targets{}, fmt.Errorf("static.hostnames[%d].tls.ca_file: %w", i, err)
				}
				check.Options.RootCAs = pool
			}
			target.TLS = []TLSCheck{check}
		}
		t.Hostnames = append(t.Hostnames, target)
	}
	return t, nil
}

// LoadCAFile reads a PEM bundle of CA certificates.
func LoadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
