package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLoadInvalid loads every testdata/invalid-*.yml: the error must name
// the file and contain the one line of its .err sibling, which the
// --config.check test of the binary reads too.
func TestLoadInvalid(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid-*.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/invalid-*.yml")
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			errFile, err := os.ReadFile(path + ".err")
			if err != nil {
				t.Fatal(err)
			}
			want := strings.TrimSuffix(string(errFile), "\n")
			if want == "" || strings.Contains(want, "\n") {
				t.Fatalf("%s.err must hold one non-empty line, holds %q", path, want)
			}
			cfg, err := Load(path)
			if err == nil {
				t.Fatalf("Load(%s) = %+v, want an error containing %q", path, cfg, want)
			}
			if !strings.HasPrefix(err.Error(), path+": ") {
				t.Errorf("error does not start with the file name:\n%v", err)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error\n%v\ndoes not contain\n%s", err, want)
			}
		})
	}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = addr(s)
	}
	return out
}

func TestLoadValidFull(t *testing.T) {
	got, err := Load("testdata/valid-full.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Probe: ProbeConfig{Timeout: 2 * time.Second},
		DNS: DNSConfig{
			Servers:   []string{"127.0.0.1:5353", "10.96.0.10:53", "[::1]:53"},
			Domain:    "sbbh.cloud",
			Transport: "tcp",
		},
		Static: StaticConfig{
			LoadBalancers: []LoadBalancer{
				{
					Namespace: "lab",
					Service:   "web",
					IPs:       addrs("127.0.0.1", "::1"),
					Ports: []Port{
						{Port: 8080, Protocol: "TCP", Probe: "tcp"},
						{Port: 5353, Protocol: "UDP", Probe: "dns"},
						{Port: 9090, Protocol: "TCP", Probe: "none"},
						{Port: 5354, Protocol: "UDP", Probe: "dns"},
						{Port: 443, Protocol: "TCP", Probe: "tcp"},
					},
					ICMP: true,
				},
				{Namespace: "lab", Service: "ping-only", IPs: addrs("10.0.0.1"), ICMP: true},
			},
			Hostnames: []Hostname{
				{
					Hostname:  "app.example.test",
					Expect:    addrs("127.0.0.2"),
					Servers:   []string{"127.0.0.1:5353"},
					Namespace: "lab",
					Name:      "app-route",
					TLS: &TLSCheck{
						Port:               8443,
						IPs:                addrs("127.0.0.3"),
						InsecureSkipVerify: true,
						CAFile:             filepath.Join("testdata", "ca.pem"),
					},
				},
				{
					Hostname: "other.example.test",
					Expect:   addrs("127.0.0.4", "::2"),
					TLS:      &TLSCheck{Port: 443, IPs: addrs("127.0.0.4", "::2")},
				},
			},
		},
		Kubernetes: KubernetesConfig{TLS: KubernetesTLS{CAFile: filepath.Join("testdata", "ca.pem")}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load(valid-full.yml) =\n%+v\nwant\n%+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Validate() of a loaded config: %v", err)
	}
}

func TestLoadValidMerge(t *testing.T) {
	got, err := Load("testdata/valid-merge.yml")
	if err != nil {
		t.Fatal(err)
	}
	ports := []Port{{Port: 80, Protocol: "TCP", Probe: "tcp"}, {Port: 443, Protocol: "TCP", Probe: "tcp"}}
	ips := addrs("10.0.0.1", "10.0.0.2")
	want := []LoadBalancer{
		{Namespace: "lab", Service: "web", IPs: ips, Ports: ports},
		{Namespace: "lab", Service: "web-canary", IPs: ips, Ports: ports},
		{Namespace: "lab", Service: "api", IPs: ips, Ports: ports},
	}
	if !reflect.DeepEqual(got.Static.LoadBalancers, want) {
		t.Errorf("load balancers =\n%+v\nwant\n%+v", got.Static.LoadBalancers, want)
	}
}

func TestLoadValidFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/valid-*.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/valid-*.yml")
	}
	for _, path := range files {
		if _, err := Load(path); err != nil {
			t.Errorf("Load(%s): %v", path, err)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yml")
	_, err := Load(path)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("Load(missing) = %v, want a not-exist error naming %s", err, path)
	}
}

func TestLoadCAFileRelativeToConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(dir, "abs.pem")
	if err := os.WriteFile(abs, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "lbprobe.yml")
	data := "dns: {servers: [127.0.0.1]}\nstatic:\n  hostnames:\n" +
		"    - {hostname: a.test, expect: [10.0.0.1], tls: {ca_file: ca.pem}}\n" +
		"    - {hostname: b.test, expect: [10.0.0.1], tls: {ca_file: " + abs + "}}\n"
	if err := os.WriteFile(cfgPath, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Static.Hostnames[0].TLS.CAFile, filepath.Join(dir, "ca.pem"); got != want {
		t.Errorf("relative ca_file = %q, want %q", got, want)
	}
	if got := cfg.Static.Hostnames[1].TLS.CAFile; got != abs {
		t.Errorf("absolute ca_file = %q, want %q", got, abs)
	}
	// Parse has no directory: the path stays relative to the working
	// directory, where no ca.pem exists.
	if _, err := Parse([]byte(data)); err == nil || !strings.Contains(err.Error(), `static.hostnames[0].tls.ca_file: no such file "ca.pem" (line 4)`) {
		t.Errorf("Parse with a relative ca_file: %v", err)
	}
}

func TestParseEmpty(t *testing.T) {
	want := &Config{DNS: DNSConfig{Transport: "udp"}}
	for _, in := range []string{"", "\n", "# only a comment\n", "---\n", "~\n", "null\n", "---\n...\n", "probe: {}\n---\n", "static:\n  hostnames: ~\n", "static: {loadbalancers: ~, hostnames: null}\n"} {
		got, err := Parse([]byte(in))
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Parse(%q) = %+v, want %+v", in, got, want)
		}
	}
}

func TestParseDefaultsAndNormalization(t *testing.T) {
	in := `
dns:
  servers: ["10.0.0.10", "[fd00::10]", "fd00::11", "dns.example.test:5353"]
  domain: Example.TEST.
static:
  loadbalancers:
    - namespace: ns
      service: svc
      ips: [10.0.0.1]
      ports:
        - port: 80
        - {port: 53, protocol: udp}
        - {port: 54, protocol: Udp, probe: NONE}
        - {port: 81, protocol: "", probe: ""}
  hostnames:
    - hostname: WWW.Example.Test.
      expect: [10.0.0.2, 10.0.0.3]
      servers: [10.0.0.53]
      tls: {insecure_skip_verify: false}
`
	cfg, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		DNS: DNSConfig{
			Servers:   []string{"10.0.0.10:53", "[fd00::10]:53", "[fd00::11]:53", "dns.example.test:5353"},
			Domain:    "example.test",
			Transport: "udp",
		},
		Static: StaticConfig{
			LoadBalancers: []LoadBalancer{{
				Namespace: "ns", Service: "svc", IPs: addrs("10.0.0.1"),
				Ports: []Port{
					{Port: 80, Protocol: "TCP", Probe: "tcp"},
					{Port: 53, Protocol: "UDP", Probe: "dns"},
					{Port: 54, Protocol: "UDP", Probe: "none"},
					{Port: 81, Protocol: "TCP", Probe: "tcp"},
				},
			}},
			Hostnames: []Hostname{{
				Hostname: "www.example.test",
				Expect:   addrs("10.0.0.2", "10.0.0.3"),
				Servers:  []string{"10.0.0.53:53"},
				TLS:      &TLSCheck{Port: 443, IPs: addrs("10.0.0.2", "10.0.0.3")},
			}},
		},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", cfg, want)
	}
	// The default TLS IPs are a copy, not the expect slice itself.
	cfg.Static.Hostnames[0].TLS.IPs[0] = addr("10.9.9.9")
	if cfg.Static.Hostnames[0].Expect[0] != addr("10.0.0.2") {
		t.Error("tls.ips shares its backing array with expect")
	}
}

func TestParseErrors(t *testing.T) {
	const lb = "static:\n  loadbalancers:\n    - namespace: lab\n      service: web\n"
	const host = "dns: {servers: [127.0.0.1]}\nstatic:\n  hostnames:\n    - hostname: a.test\n"
	tests := []struct {
		name string
		in   string
		want []string // substrings, each on its own line of the error
	}{
		{"kind mapping for list", lb + "      ips: {a: 1}\n      icmp: true\n",
			[]string{`static.loadbalancers[0].ips: expected a list, got a mapping (line 5)`}},
		{"kind list for string", lb + "      ips: [10.0.0.1]\n      icmp: true\n      namespace: [a]\n",
			[]string{`line 7: duplicate key "namespace" in static.loadbalancers[0] (first at line 3)`}},
		{"string expected", "dns:\n  domain: [a]\n",
			[]string{`dns.domain: expected a string, got a list (line 2)`}},
		{"bool expected", lb + "      ips: [10.0.0.1]\n      icmp: maybe\n",
			[]string{`static.loadbalancers[0].icmp: expected true or false, got string "maybe" (line 6)`}},
		{"bool yes is fine, null item is not", lb + "      ips: [10.0.0.1, ~]\n      icmp: yes\n",
			[]string{`static.loadbalancers[0].ips[1]: a list item is empty (null) (line 5)`}},
		{"ip as integer", lb + "      ips: [5]\n      icmp: true\n",
			[]string{`static.loadbalancers[0].ips[0]: expected an IP address, got integer 5 (line 5)`}},
		{"empty ip string", lb + "      ips: [\"\"]\n      icmp: true\n",
			[]string{`static.loadbalancers[0].ips[0]: "" is not an IP address (line 5)`}},
		{"port as float", lb + "      ips: [10.0.0.1]\n      ports: [{port: 80.5}]\n",
			[]string{`static.loadbalancers[0].ports[0].port: expected a port number, got number 80.5 (line 6)`}},
		// yaml.v3 reads these as 80; issue 14.
		{"port not decimal", lb + "      ips: [10.0.0.1]\n      ports: [{port: 0x50}, {port: 0o120}, {port: 0120}, {port: 8_0}, {port: !!float 80}]\n",
			[]string{
				`static.loadbalancers[0].ports[0].port: 0x50 is not a decimal port number (line 6)`,
				`static.loadbalancers[0].ports[1].port: 0o120 is not a decimal port number (line 6)`,
				`static.loadbalancers[0].ports[2].port: 0120 is not a decimal port number (line 6)`,
				`static.loadbalancers[0].ports[3].port: 8_0 is not a decimal port number (line 6)`,
				`static.loadbalancers[0].ports[4].port: expected a port number, got number 80 (line 6)`,
			}},
		{"port of an alias", "x: &p 0x50\n" + lb + "      ips: [10.0.0.1]\n      ports: [{port: *p}]\n",
			[]string{`x: 0x50 is not a decimal port number (line 1)`}},
		{"errors in an anchored value come once", lb + "      ips: [10.0.0.1]\n      ports: [&p {port: abc}, *p, *p]\n",
			[]string{`static.loadbalancers[0].ports[0].port: expected a port number, got string "abc" (line 6)`}},
		{"problems from yaml.v3 and from the methods together", lb + "      ips: [10.0.0.1, 10.0.0.x, 5]\n      icmp: maybe\n      ports: [{port: abc, protocol: [x]}]\n      prots: 1\n",
			[]string{
				`static.loadbalancers[0].ips[1]: "10.0.0.x" is not an IP address (line 5)`,
				`static.loadbalancers[0].ips[2]: expected an IP address, got integer 5 (line 5)`,
				`static.loadbalancers[0].icmp: expected true or false, got string "maybe" (line 6)`,
				// Two lists on line 7: the line, but no path.
				`line 7: expected a string, got a list`,
				`static.loadbalancers[0].ports[0].port: expected a port number, got string "abc" (line 7)`,
				`line 8: unknown key "prots" in static.loadbalancers[0] (known: namespace, service, ips, ports, icmp)`,
			}},
		{"lines of merged keys", "dns: {servers: [127.0.0.1]}\nstatic:\n  hostnames:\n    - hostname: a.test\n      expect: [10.0.0.1]\n      <<:\n        servers: [nope]\n",
			[]string{`static.hostnames[0].servers[0]: "nope" is not host:port (like 10.96.0.10:53) or an IP address (line 7)`}},
		{"negative port", lb + "      ips: [10.0.0.1]\n      ports: [{port: -1}]\n",
			[]string{`static.loadbalancers[0].ports[0].port: -1 is out of range 1-65535 (line 6)`}},
		{"huge port", lb + "      ips: [10.0.0.1]\n      ports: [{port: 99999999999999999999}]\n",
			[]string{`static.loadbalancers[0].ports[0].port: expected a port number, got number 99999999999999999999 (line 6)`}},
		{"missing port", lb + "      ips: [10.0.0.1]\n      ports: [{protocol: TCP}]\n",
			[]string{`static.loadbalancers[0].ports[0].port: required (1-65535) (line 6)`}},
		{"null port item", lb + "      ips: [10.0.0.1]\n      ports: [~]\n",
			[]string{`static.loadbalancers[0].ports[0]: a list item is empty (null) (line 6)`}},
		{"port shorthand", lb + "      ips: [10.0.0.1]\n      ports: [80]\n",
			[]string{`static.loadbalancers[0].ports[0]: expected a mapping, got integer 80 (line 6)`}},
		{"dns probe on tcp", lb + "      ips: [10.0.0.1]\n      ports: [{port: 53, probe: dns}]\n",
			[]string{`static.loadbalancers[0].ports[0].probe: dns probes a UDP port; use tcp or none on a TCP port (line 6)`}},
		{"duplicate port", lb + "      ips: [10.0.0.1]\n      ports: [{port: 53}, {port: 53, protocol: udp}, {port: 53, protocol: tcp}]\n",
			[]string{`static.loadbalancers[0].ports[2]: duplicate port 53/TCP (first at ports[0]) (line 6)`}},
		{"duplicate ip", lb + "      ips: [10.0.0.1, 10.0.0.2, 10.0.0.1]\n      icmp: true\n",
			[]string{`static.loadbalancers[0].ips[2]: duplicate IP address 10.0.0.1 (first at [0]) (line 5)`}},
		{"empty namespace", "static:\n  loadbalancers:\n    - namespace: ''\n      service: web\n      ips: [10.0.0.1]\n      icmp: true\n",
			[]string{`static.loadbalancers[0].namespace: must not be empty (line 3)`}},
		{"every problem at once", "probe: {timeout: -2s}\ndns: {transport: x, servers: [':53']}\n" + lb + "      ips: []\n",
			[]string{
				`probe.timeout: must not be negative, got -2s (line 1)`,
				`dns.transport: "x" must be udp or tcp (line 2)`,
				`dns.servers[0]: ":53" is not host:port (like 10.96.0.10:53) or an IP address (line 2)`,
				`static.loadbalancers[0].ips: at least one IP address is required (line 7)`,
				`static.loadbalancers[0]: probes nothing: list ports, set icmp: true, or both (line 5)`,
			}},
		// yaml.v3 decodes nothing more of a mapping with a duplicate key.
		{"every key problem at once", "probe: {timeout: 1s, timout: 2s}\ndns: {domain: a.test, domain: b.test, x: 1}\nfoo: 1\n",
			[]string{
				`line 1: unknown key "timout" in probe (known: timeout)`,
				`line 2: duplicate key "domain" in dns (first at line 2)`,
				`line 3: unknown key "foo" at the top level (known: probe, dns, static, kubernetes)`,
			}},
		{"duplicate key at the top level", "probe: {timeout: 1s}\nprobe: {}\n",
			[]string{`line 2: duplicate key "probe" at the top level (first at line 1)`}},
		{"server port", "dns: {servers: ['10.0.0.1:0', '10.0.0.1:dns', 'bad_host!:53', '10.0.0.1', '10.0.0.1:53']}\n",
			[]string{
				`dns.servers[0]: "10.0.0.1:0" has port "0", not a number 1-65535 (line 1)`,
				`dns.servers[1]: "10.0.0.1:dns" has port "dns", not a number 1-65535 (line 1)`,
				`dns.servers[2]: "bad_host!:53" has host "bad_host!", neither an IP address nor a DNS name (line 1)`,
				`dns.servers[4]: duplicate server "10.0.0.1:53" (first at [3]) (line 1)`,
			}},
		{"bad domain", "dns: {domain: '-a.test'}\n",
			[]string{`dns.domain: "-a.test" is not a valid DNS name: label "-a" must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (line 1)`}},
		{"hostname is an IP", host + "      expect: [10.0.0.1]\n    - hostname: 10.0.0.1\n      expect: [10.0.0.1]\n",
			[]string{`static.hostnames[1].hostname: "10.0.0.1" is an IP address, not a DNS name (line 6)`}},
		{"hostname too long", "dns: {servers: [127.0.0.1]}\nstatic: {hostnames: [{hostname: " + strings.Repeat("a", 64) + ".test, expect: [10.0.0.1]}]}\n",
			[]string{`is not a valid DNS name: label "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…" must be no more than 63 characters (line 2)`}},
		{"name too long", "dns: {domain: " + strings.Repeat("a.", 127) + "test}\n",
			[]string{`is not a valid DNS name: must be no more than 253 characters (line 1)`}},
		{"underscore in a name", "dns: {domain: _dns.a.test, servers: ['my_dns.test:53']}\n",
			[]string{
				`dns.domain: "_dns.a.test" is not a valid DNS name: label "_dns" must consist of lower case alphanumeric characters or '-'`,
				`dns.servers[0]: "my_dns.test:53" has host "my_dns.test", neither an IP address nor a DNS name (line 1)`,
			}},
		{"upper case is fine", "dns: {domain: A.Test, servers: ['DNS.Example.Test:53']}\n",
			[]string{}},
		{"hostname bad character", "dns: {servers: [127.0.0.1]}\nstatic: {hostnames: [{hostname: 'a b.test', expect: [10.0.0.1]}]}\n",
			[]string{`static.hostnames[0].hostname: "a b.test" is not a valid DNS name: label "a b" must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (line 2)`}},
		{"duplicate hostname", host + "      expect: [10.0.0.1]\n    - hostname: A.test.\n      expect: [10.0.0.2]\n    - {hostname: a.test, name: other, expect: [10.0.0.2]}\n",
			[]string{`static.hostnames[1]: duplicate hostname "a.test" with the same namespace and name (first at static.hostnames[0]) (line 6)`}},
		{"hostname server", host + "      expect: [10.0.0.1]\n      servers: [nope]\n",
			[]string{`static.hostnames[0].servers[0]: "nope" is not host:port (like 10.96.0.10:53) or an IP address (line 6)`}},
		{"tls ips", host + "      expect: [10.0.0.1]\n      tls: {ips: [10.0.0.1, 10.0.0.1]}\n",
			[]string{`static.hostnames[0].tls.ips[1]: duplicate IP address 10.0.0.1 (first at [0]) (line 6)`}},
		{"tls not a mapping", host + "      expect: [10.0.0.1]\n      tls: true\n",
			[]string{`static.hostnames[0].tls: expected a mapping, got boolean true (line 6)`}},
		{"ca_file is a directory", host + "      expect: [10.0.0.1]\n      tls: {ca_file: testdata}\n",
			[]string{`static.hostnames[0].tls.ca_file: "testdata" is a directory, not a file (line 6)`}},
		{"key not a string", "[a]: 1\n",
			[]string{`line 1: a key at the top level is a list, not a string`}},
		{"key an integer", "probe: {1: 2}\n",
			[]string{`line 1: a key in probe is integer 1, not a string`}},
		{"key null", "~: 2\n",
			[]string{`line 1: a key at the top level is null, not a string`}},
		{"key binary", "!!binary cHJvYmU=: {}\n",
			[]string{`line 1: a key at the top level is !!binary "cHJvYmU=", not a string`}},
		{"null string item", "dns: {servers: [~, 10.0.0.1]}\n",
			[]string{`dns.servers[0]: a list item is empty (null) (line 1)`}},
		{"port with a lying tag", "static: {loadbalancers: [{namespace: a, service: b, ips: [10.0.0.1], ports: [{port: !!int 80.5}]}]}\n",
			[]string{`static.loadbalancers[0].ports[0].port: 80.5 is not a decimal port number (line 1)`}},
		{"quoted merge key is an ordinary key", "'<<': {}\n",
			[]string{`line 1: unknown key "<<" at the top level`}},
		{"merge of a scalar", "probe:\n  <<: 5\n",
			[]string{`invalid YAML: yaml: map merge requires map or sequence of maps as the value`}},
		{"merge of a list alias", "x: &l [a]\nprobe:\n  <<: *l\n",
			[]string{`invalid YAML: yaml: map merge requires map or sequence of maps as the value`}},
		{"merged unknown key", "probe:\n  <<: {timeout: 1s, retries: 3}\n",
			[]string{`line 2: unknown key "retries" in probe (known: timeout)`}},
		{"merged bad value", "probe:\n  <<: [{timeout: 1s}, {timeout: x}]\n",
			[]string{}}, // the first merged mapping wins: no error
		{"merged value overridden", "probe:\n  timeout: 3s\n  <<: {timeout: nope}\n",
			[]string{}},
		// yaml.v3 stops at the unknown key before it would loop; the mapping
		// is merged into a load balancer, not where it is written.
		{"alias inside its anchor", "static: &s\n  loadbalancers:\n    - namespace: a\n      <<: *s\n",
			[]string{`line 2: unknown key "loadbalancers" in static (known: namespace, service, ips, ports, icmp)`}},
		{"alias inside its anchor, in a list", "dns: &d {servers: [*d]}\n",
			[]string{`line 1: expected a string, got a mapping`}},
		{"alias inside its anchor, merged", "static: {loadbalancers: [&l {namespace: a, <<: *l}]}\n",
			[]string{`invalid YAML: yaml: anchor 'l' value contains itself`}},
		{"merge of itself", "probe: &p\n  <<: *p\n",
			[]string{`invalid YAML: yaml: anchor 'p' value contains itself`}},
		// Issue 14.
		{"timeout at the minimum", "probe: {timeout: 10ms}\n", []string{}},
		{"timeout below the minimum", "probe: {timeout: 9ms}\n",
			[]string{`probe.timeout: 9ms is below the minimum of 10ms (line 1)`}},
		{"IPv6 zones", host + "      expect: ['fe80::1%eth0']\n      tls: {ips: ['fe80::2%2']}\n",
			[]string{
				`static.hostnames[0].expect[0]: fe80::1%eth0 has an IPv6 zone; a load balancer address has none (line 5)`,
				`static.hostnames[0].tls.ips[0]: fe80::2%2 has an IPv6 zone; a load balancer address has none (line 6)`,
			}},
		{"second document not YAML", "probe: {}\n---\n: :\n  - [\n",
			[]string{`invalid YAML: yaml: `}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.in))
			if len(tt.want) == 0 {
				if err != nil {
					t.Errorf("Parse: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse = %+v, want errors %q", cfg, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain\n%s", err, w)
				}
			}
			if n := len(splitErrors(err)); len(tt.want) > 1 && n != len(tt.want) {
				t.Errorf("%d errors, want %d:\n%v", n, len(tt.want), err)
			}
		})
	}
}

// laughs returns a small document whose aliases expand to millions of
// values the strict walk has to visit: 2000 load balancers, each an alias of
// one with 1000 ports.
func laughs() string {
	var b strings.Builder
	b.WriteString("static:\n  loadbalancers:\n    - &lb\n      namespace: a\n      service: b\n      ips: [10.0.0.1]\n      ports:\n")
	for i := range 1000 {
		fmt.Fprintf(&b, "        - {port: %d}\n", i+1)
	}
	for range 2000 {
		b.WriteString("    - *lb\n")
	}
	return b.String()
}

// splitErrors returns the errors joined in err.
func splitErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestValidateBuiltInCode(t *testing.T) {
	if err := (&Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
	cfg := &Config{
		DNS: DNSConfig{Servers: []string{"10.0.0.10:53"}},
		Static: StaticConfig{
			LoadBalancers: []LoadBalancer{{Service: "web", IPs: []netip.Addr{{}}, Ports: []Port{{Protocol: "tcp", Probe: "tcp"}}}},
			Hostnames:     []Hostname{{Hostname: "a.test", Expect: addrs("10.0.0.1"), TLS: &TLSCheck{}}},
		},
	}
	err := cfg.Validate()
	want := []string{
		"static.loadbalancers[0].namespace: required",
		"static.loadbalancers[0].ips[0]: not a valid IP address",
		"static.loadbalancers[0].ports[0].port: required (1-65535)",
		`static.loadbalancers[0].ports[0].protocol: "tcp" must be TCP or UDP`,
		"static.hostnames[0].tls.port: required (1-65535)",
	}
	got := splitErrors(err)
	if len(got) != len(want) {
		t.Fatalf("Validate() = %d errors, want %d:\n%v", len(got), len(want), err)
	}
	for i := range want {
		// Without a parsed file there is no line to name.
		if got[i].Error() != want[i] {
			t.Errorf("error %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestParentPath(t *testing.T) {
	for in, want := range map[string]string{
		"static.loadbalancers[1].ports[0].port": "static.loadbalancers[1].ports[0]",
		"static.loadbalancers[1].ports[0]":      "static.loadbalancers[1].ports",
		"static.loadbalancers[1]":               "static.loadbalancers",
		"static":                                "",
		"":                                      "",
	} {
		if got := parentPath(in); got != want {
			t.Errorf("parentPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yml")
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"probe: &p\n  <<: *p\n",
		"x: &l [a]\nprobe:\n  <<: [*l, {timeout: 1s}]\n",
		"dns: {servers: ['[::1]', '::1', 'a:1:2'], transport: !!str TCP}\n",
		"probe: !!map {timeout: !!str 1s}\n",
		"static: {loadbalancers: [&a {namespace: a, service: b, ips: [!!str 10.0.0.1], ports: [{port: 0x50}], icmp: !!bool true}, *a]}\n",
		"static: {hostnames: [{hostname: a., expect: [10.0.0.1], servers: ['10.0.0.1'], tls: {ips: [], port: !!int 443}}]}\n",
		// Inputs that made yaml.v3 panic before v3.0.0.
		"#\n-\n-\n0", "0: [:!00 \xef", "! !00 \xf6", "\"\\0\\\r\n", " \ufeff\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			for _, e := range splitErrors(err) {
				if e.Error() == "" {
					t.Errorf("empty error message in\n%v", err)
				}
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("Validate() of a parsed config: %v", err)
		}
	})
}

// TestOddDocuments puts odd values (tags, kinds, nulls, aliases, merges) at
// every position of a config: Parse must not panic, and every error must
// name a line. Only the walk and yaml.v3's own TypeErrors are expected, never
// an error that stopped yaml.v3 ("decoding: ...").
func TestOddDocuments(t *testing.T) {
	templates := []string{
		"probe: $",
		"probe: {timeout: $}",
		"dns: $",
		"dns: {servers: $, domain: x.test, transport: udp}",
		"dns: {servers: [10.0.0.1], domain: $, transport: udp}",
		"dns: {servers: [10.0.0.1], domain: x.test, transport: $}",
		"dns: {servers: [$]}",
		"static: $",
		"static: {loadbalancers: $}",
		"static: {hostnames: $}",
		"static: {loadbalancers: [$]}",
		"static: {hostnames: [$]}",
		"static: {loadbalancers: [{namespace: $, service: b, ips: [10.0.0.1], ports: [{port: 80}], icmp: true}]}",
		"static: {loadbalancers: [{namespace: a, service: $, ips: [10.0.0.1], ports: [{port: 80}], icmp: true}]}",
		"static: {loadbalancers: [{namespace: a, service: b, ips: $, ports: [{port: 80}], icmp: true}]}",
		"static: {loadbalancers: [{namespace: a, service: b, ips: [10.0.0.1], ports: $, icmp: true}]}",
		"static: {loadbalancers: [{namespace: a, service: b, ips: [10.0.0.1], ports: [{port: 80}], icmp: $}]}",
		"static: {loadbalancers: [{namespace: a, service: b, ips: [$]}]}",
		"static: {loadbalancers: [{namespace: a, service: b, ips: [10.0.0.1], ports: [$]}]}",
		"static: {loadbalancers: [{namespace: a, service: b, ips: [10.0.0.1], ports: [{port: $, protocol: tcp, probe: tcp}]}]}",
		"static: {loadbalancers: [{namespace: a, service: b, ips: [10.0.0.1], ports: [{port: 80, protocol: $, probe: tcp}]}]}",
		"static: {loadbalancers: [{namespace: a, service: b, ips: [10.0.0.1], ports: [{port: 80, protocol: tcp, probe: $}]}]}",
		"static: {loadbalancers: [{namespace: a, service: b, ips: [10.0.0.1], icmp: true, <<: $}]}",
		"dns: {servers: [10.0.0.1]}\nstatic: {hostnames: [{hostname: $, expect: [10.0.0.1], servers: [10.0.0.2], namespace: n, name: m, tls: {}}]}",
		"dns: {servers: [10.0.0.1]}\nstatic: {hostnames: [{hostname: a.test, expect: $, servers: [10.0.0.2], namespace: n, name: m, tls: {}}]}",
		"dns: {servers: [10.0.0.1]}\nstatic: {hostnames: [{hostname: a.test, expect: [10.0.0.1], servers: $, namespace: n, name: m, tls: {}}]}",
		"dns: {servers: [10.0.0.1]}\nstatic: {hostnames: [{hostname: a.test, expect: [10.0.0.1], servers: [10.0.0.2], namespace: $, name: m, tls: {}}]}",
		"dns: {servers: [10.0.0.1]}\nstatic: {hostnames: [{hostname: a.test, expect: [10.0.0.1], servers: [10.0.0.2], namespace: n, name: $, tls: {}}]}",
		"dns: {servers: [10.0.0.1]}\nstatic: {hostnames: [{hostname: a.test, expect: [10.0.0.1], servers: [10.0.0.2], namespace: n, name: m, tls: $}]}",
		"dns: {servers: [10.0.0.1]}\nstatic: {hostnames: [{hostname: a.test, expect: [$]}]}",
		"dns: {servers: [10.0.0.1]}\nstatic: {hostnames: [{hostname: a.test, expect: [10.0.0.1], servers: [$]}]}",
		"dns: {servers: [10.0.0.1]}\nstatic: {hostnames: [{hostname: a.test, expect: [10.0.0.1], tls: {port: $, ips: [10.0.0.1], insecure_skip_verify: true, ca_file: testdata/ca.pem}}]}",
		"dns: {servers: [10.0.0.1]}\nstatic: {hostnames: [{hostname: a.test, expect: [10.0.0.1], tls: {port: 443, ips: $, insecure_skip_verify: true, ca_file: testdata/ca.pem}}]}",
		"dns: {servers: [10.0.0.1]}\nstatic: {hostnames: [{hostname: a.test, expect: [10.0.0.1], tls: {port: 443, ips: [10.0.0.1], insecure_skip_verify: $, ca_file: testdata/ca.pem}}]}",
		"dns: {servers: [10.0.0.1]}\nstatic: {hostnames: [{hostname: a.test, expect: [10.0.0.1], tls: {port: 443, ips: [10.0.0.1], insecure_skip_verify: true, ca_file: $}}]}",
		"dns: {servers: [10.0.0.1]}\nstatic: {hostnames: [{hostname: a.test, expect: [10.0.0.1], tls: {<<: $}}]}",
		"probe: {<<: $}",
		"dns: {<<: $}",
		"static: {<<: $}",
		"static: {loadbalancers: [{namespace: a, service: b, ips: [10.0.0.1], ports: [{<<: $}]}]}",
		"dns: {servers: [10.0.0.1]}\nstatic: {hostnames: [{<<: $, hostname: a.test}]}",
		"kubernetes: $",
		"kubernetes: {tls: $}",
		"kubernetes: {tls: {<<: $}}",
		"kubernetes: {tls: {ca_file: $, insecure_skip_verify: $}}",
		"<<: $",
		"$",
		"$: 1",
		"probe: {$: 1}",
	}
	values := []string{
		"", "~", "null", "!!null", "!!null x", "!!null {}", "!!null []", "x", "'x'", "\"\"", "1", "-1", "0", "80",
		"80.5", "0x50", "0o17", "1e3", ".inf", "true", "yes", "off", "!!str 80", "!!int 80", "!!int x", "!!float 80",
		"!!bool true", "!!bool x", "!!binary aGk=", "!!binary ###", "!foo x", "! x", "!!map {}", "!!seq []",
		"!!str {}", "!!str []", "!!set {a}", "!!omap [{a: 1}]", "!!merge x", "!!timestamp 2001-01-01", "2001-01-01",
		"{}", "[]", "[x]", "[1]", "[~]", "[[]]", "[{}]", "{a: 1}", "{port: 80}", "[{port: 80}]", "[{port: 80}, ~]",
		"2s", "-1s", "127.0.0.1", "::1", "'[::1]'", "!!str 127.0.0.1", "[127.0.0.1]", "[10.0.0.1, 10.0.0.1]",
		"&a {timeout: 1s}", "&a [10.0.0.1]", "&a 80", "[&a {port: 80}, *a]", "[&a 10.0.0.1, *a]", "[&a 10.0.0.1, 10.0.0.2, *a]",
		"[&a ~, *a]", "{<<: &a {timeout: 1s}}", "{<<: [&a {timeout: 1s}, *a]}", "{<<: &a [10.0.0.1]}", "{<<: ~}",
		"&a {<<: *a}", "&a [*a]", "{port: &a 80, protocol: *a}", "{port: 80, <<: {port: x}}", "{<<: {port: x}}",
		"!!binary '###'", "!!float 80.5", "0120", "8_0", "+80", "99999999999999999999", "10.0.0.x", "[10.0.0.x, ~]",
		"fe80::1%eth0", "[fe80::1%eth0]", "*a", "{a: 1, a: 2}", "[{port: abc}, {port: abc}]", "{<<: [{}, 5]}",
	}
	named := regexp.MustCompile(`^line [1-9][0-9]*: |\(line [1-9][0-9]*\)$`)
	var valid, invalid, syntax int
	for _, tmpl := range templates {
		for _, v := range values {
			doc := strings.ReplaceAll(tmpl, "$", v)
			cfg, err := Parse([]byte(doc))
			if err == nil {
				valid++
				if err := cfg.Validate(); err != nil {
					t.Errorf("Validate() of the config parsed from\n%s\n%v", doc, err)
				}
				continue
			}
			if strings.HasPrefix(err.Error(), "invalid YAML: ") {
				// yaml.v3's own syntax errors: not this package's to word.
				syntax++
				continue
			}
			invalid++
			for _, e := range splitErrors(err) {
				if !named.MatchString(e.Error()) || strings.Contains(e.Error(), "decoding: ") {
					t.Errorf("document\n%s\ngave an error naming no line, or from a stopped decoder:\n%v", doc, e)
				}
			}
		}
	}
	t.Logf("%d documents parsed, %d were rejected, %d are not YAML", valid, invalid, syntax)
	if valid < 100 || invalid < 1000 {
		t.Errorf("%d documents parsed and %d were rejected: the test hardly reaches both sides", valid, invalid)
	}
}

// TestErrorsBounded: an error lists at most MaxErrors problems, then counts
// the rest (issue 14: 200,000 aliases of one bad port made 200,003 lines).
func TestErrorsBounded(t *testing.T) {
	const lb = "static:\n  loadbalancers:\n    - namespace: a\n      service: b\n      ips: [10.0.0.1]\n      ports:\n"
	bad := func(n int) string {
		var b strings.Builder
		b.WriteString(lb)
		for i := range n {
			fmt.Fprintf(&b, "        - {port: x%d}\n", i)
		}
		return b.String()
	}
	var aliases strings.Builder
	aliases.WriteString(lb + "        - &p {port: abc}\n")
	for range 20_000 {
		aliases.WriteString("        - *p\n")
	}
	for _, tt := range []struct {
		name string
		doc  string
		want []string // in the first line, and ending the last
	}{
		{"at the limit", bad(20), []string{`ports[0].port: expected a port number, got string "x0" (line 7)`, `ports[19].port: expected a port number, got string "x19" (line 26)`}},
		{"one more", bad(21), []string{`ports[0].port:`, `... and 1 more error`}},
		{"many more", bad(1000), []string{`ports[0].port:`, `... and 980 more errors`}},
		{"aliases of one bad port", aliases.String(), []string{`ports[0].port: expected a port number, got string "abc" (line 7)`, `ports[0].port: expected a port number, got string "abc" (line 7)`}},
		{"walk", "dns: {servers: [" + strings.Repeat("~, ", 30) + "]}\n", []string{`dns.servers[0]: a list item is empty (null) (line 1)`, `... and 10 more errors`}},
		{"Validate", "static: {loadbalancers: [" + strings.Repeat("{}, ", 10) + "]}\n", []string{`static.loadbalancers[0].namespace: required (line 1)`, `... and 20 more errors`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatal("no error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) > MaxErrors+1 {
				t.Errorf("%d lines, want at most %d", len(lines), MaxErrors+1)
			}
			if first, last := lines[0], lines[len(lines)-1]; !strings.Contains(first, tt.want[0]) || !strings.HasSuffix(last, tt.want[1]) {
				t.Errorf("error from\n%q\nto\n%q\nwant one containing %q to one ending in %q", first, last, tt.want[0], tt.want[1])
			}
		})
	}
}

// TestFileSizeBounded: a file over MaxFileSize is rejected before parsing.
func TestFileSizeBounded(t *testing.T) {
	comment := func(n int) []byte {
		b := bytes.Repeat([]byte("#"), n)
		b[n-1] = '\n'
		return b
	}
	if _, err := Parse(comment(MaxFileSize)); err != nil {
		t.Errorf("Parse of %d bytes: %v", MaxFileSize, err)
	}
	const want = "the config is larger than 8 MiB, the most lbprobe reads"
	if _, err := Parse(comment(MaxFileSize + 1)); err == nil || err.Error() != want {
		t.Errorf("Parse of %d bytes: %v, want %q", MaxFileSize+1, err, want)
	}
	path := filepath.Join(t.TempDir(), "big.yml")
	if err := os.WriteFile(path, comment(3*MaxFileSize), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || err.Error() != path+": "+want {
		t.Errorf("Load of %d bytes: %v, want %q", 3*MaxFileSize, err, want)
	}
}

// TestTargetsBounded: a config of more than MaxTargets probe targets is
// rejected, whether written out or made by aliases.
func TestTargetsBounded(t *testing.T) {
	doc := func(icmp bool) string {
		var b strings.Builder
		b.WriteString("static:\n  loadbalancers:\n    - namespace: a\n      service: b\n      icmp: " + strconv.FormatBool(icmp) + "\n      ips:\n")
		for i := range 400 {
			fmt.Fprintf(&b, "        - 10.0.%d.%d\n", i/256, i%256)
		}
		b.WriteString("      ports:\n")
		for i := range 250 {
			fmt.Fprintf(&b, "        - {port: %d}\n", i+1)
		}
		return b.String()
	}
	if _, err := Parse([]byte(doc(false))); err != nil { // 400 × 250
		t.Errorf("Parse of %d targets: %v", MaxTargets, err)
	}
	const want = "static: 100400 probe targets, more than the limit of 100000 (line 1)"
	if _, err := Parse([]byte(doc(true))); err == nil || err.Error() != want { // 400 × 251
		t.Errorf("Parse of 100400 targets: %v, want %q", err, want)
	}
	// A merge doubles them in one line.
	merged := strings.Replace(doc(false), "    - namespace: a", "    - &lb\n      namespace: a", 1) + "    - {<<: *lb, service: c}\n"
	const wantMerged = "static: 200000 probe targets, more than the limit of 100000 (line 1)"
	if _, err := Parse([]byte(merged)); err == nil || err.Error() != wantMerged {
		t.Errorf("Parse of 200000 merged targets: %v, want %q", err, wantMerged)
	}
}

// TestTargets counts the targets of a config built in code.
func TestTargets(t *testing.T) {
	cfg := &Config{
		DNS: DNSConfig{Servers: []string{"10.0.0.53:53", "10.0.0.54:53"}},
		Static: StaticConfig{
			LoadBalancers: []LoadBalancer{
				{IPs: addrs("10.0.0.1", "10.0.0.2"), Ports: make([]Port, 3), ICMP: true}, // 2 × (3+1)
				{IPs: addrs("10.0.0.3"), ICMP: true},                                     // 1
			},
			Hostnames: []Hostname{
				{Hostname: "a.test"}, // the 2 dns.servers
				{Hostname: "b.test", Servers: []string{"10.0.0.55:53"}, TLS: &TLSCheck{IPs: addrs("10.0.0.1", "10.0.0.2", "10.0.0.3")}}, // 1 + 3
			},
		},
	}
	if got, want := cfg.targets(), 8+1+2+4; got != want {
		t.Errorf("targets() = %d, want %d", got, want)
	}
}

// TestAliasBomb checks that a document whose aliases expand to millions of
// values is rejected by yaml.v3's alias ratio check (BenchmarkParseAliasBomb
// measures how fast: about 0.2 s).
func TestAliasBomb(t *testing.T) {
	_, err := Parse([]byte(laughs()))
	if err == nil || !strings.Contains(err.Error(), "invalid YAML: yaml: document contains excessive aliasing") {
		t.Errorf("Parse(laughs) = %v, want excessive aliasing", err)
	}
}

func BenchmarkParseAliasBomb(b *testing.B) {
	data := []byte(laughs())
	for b.Loop() {
		if _, err := Parse(data); err == nil {
			b.Fatal("no error")
		}
	}
}
