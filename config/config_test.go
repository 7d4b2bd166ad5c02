package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// invalidFiles pairs every testdata/invalid-*.yml with a substring of the
// error it must give. The same substring is in the file's .err sibling, which
// the --config.check test of the binary reads.
var invalidFiles = map[string]string{
	"invalid-ca-file.yml":            `static.hostnames[0].tls.ca_file: no such file`,
	"invalid-kubernetes-ca-file.yml": `kubernetes.tls.ca_file: no such file`,
	"invalid-dns-server.yml":         `dns.servers[1]: "dns.example.test" is not host:port (like 10.96.0.10:53) or an IP address (line 2)`,
	"invalid-duplicate-key.yml":      `line 6: duplicate key "ips" in static.loadbalancers[0] (first at line 5)`,
	"invalid-duplicate-service.yml":  `static.loadbalancers[1]: duplicate load balancer lab/web (first at static.loadbalancers[0]) (line 7)`,
	"invalid-empty-hostname.yml":     `static.hostnames[0].hostname: must not be empty (line 5)`,
	"invalid-empty-ips.yml":          `static.loadbalancers[0].ips: at least one IP address is required (line 5)`,
	"invalid-expect-empty.yml":       `static.hostnames[0].expect: at least one IP address is required (line 5)`,
	"invalid-hostname.yml":           `static.hostnames[0].hostname: "app..example.test" is not a valid DNS name: empty label (line 5)`,
	"invalid-ip.yml":                 `static.loadbalancers[1].ips[0]: "10.0.0.x" is not an IP address (line 12)`,
	"invalid-ips-type.yml":           `static.loadbalancers[0].ips: expected a list, got integer 5 (line 5)`,
	"invalid-missing-service.yml":    `static.loadbalancers[0].service: required (line 3)`,
	"invalid-negative-timeout.yml":   `probe.timeout: must not be negative, got -1s (line 2)`,
	"invalid-no-dns-servers.yml":     `static.hostnames[0]: no DNS server to ask: set dns.servers, or servers on this hostname (line 3)`,
	"invalid-nothing-to-probe.yml":   `static.loadbalancers[0]: probes nothing: list ports, set icmp: true, or both (line 3)`,
	"invalid-port-range.yml":         `static.loadbalancers[0].ports[0].port: 70000 is out of range 1-65535 (line 7)`,
	"invalid-port-type.yml":          `static.loadbalancers[0].ports[0].port: expected a port number, got string "abc" (line 6)`,
	"invalid-port-zero.yml":          `static.loadbalancers[0].ports[1].port: 0 is out of range 1-65535 (line 8)`,
	"invalid-probe-tcp-on-udp.yml":   `static.loadbalancers[0].ports[0].probe: tcp cannot probe a UDP port; use dns or none (line 6)`,
	"invalid-probe-unknown.yml":      `static.loadbalancers[0].ports[0].probe: "http" must be tcp, dns or none (line 6)`,
	"invalid-protocol.yml":           `static.loadbalancers[0].ports[0].protocol: "SCTP" must be TCP or UDP (line 8)`,
	"invalid-syntax.yml":             `invalid YAML: yaml: line 3: did not find expected ',' or ']'`,
	"invalid-timeout-type.yml":       `probe.timeout: expected a duration like 2s or 500ms, got integer 2 (line 2)`,
	"invalid-tls-empty.yml":          `static.hostnames[0].tls: empty value: remove the key, or write {} for the defaults (line 7)`,
	"invalid-tls-port.yml":           `static.hostnames[0].tls.port: 0 is out of range 1-65535 (line 8)`,
	"invalid-tls-port-range.yml":     `static.hostnames[0].tls.port: 65536 is out of range 1-65535 (line 7)`,
	"invalid-top-level-list.yml":     `top level: expected a mapping, got a list (line 1)`,
	"invalid-transport.yml":          `dns.transport: "quic" must be udp or tcp (line 3)`,
	"invalid-two-documents.yml":      `line 4: a second YAML document; the config file holds only one`,
	"invalid-unknown-key.yml":        `line 7: unknown key "prots" in static.loadbalancers[0] (known: namespace, service, ips, ports, icmp)`,
	"invalid-unknown-top-key.yml":    `line 4: unknown key "statics" at the top level (known: probe, dns, static, kubernetes)`,
	"invalid-wildcard-hostname.yml":  `static.hostnames[0].hostname: "*.example.test": wildcards are not allowed in static hostnames (line 5)`,
}

func TestLoadInvalid(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid-*.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(invalidFiles) {
		t.Errorf("testdata has %d invalid-*.yml files, the table %d", len(files), len(invalidFiles))
	}
	for _, path := range files {
		if _, ok := invalidFiles[filepath.Base(path)]; !ok {
			t.Errorf("%s is not in invalidFiles", path)
		}
	}
	for name, want := range invalidFiles {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", name)
			errFile, err := os.ReadFile(path + ".err")
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSuffix(string(errFile), "\n"); got != want {
				t.Errorf("%s.err holds\n%s\nthe table\n%s", path, got, want)
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
			[]string{`static.loadbalancers[0].ips[1]: expected an IP address, got null (line 5)`}},
		{"ip as integer", lb + "      ips: [5]\n      icmp: true\n",
			[]string{`static.loadbalancers[0].ips[0]: expected an IP address, got integer 5 (line 5)`}},
		{"empty ip string", lb + "      ips: [\"\"]\n      icmp: true\n",
			[]string{`static.loadbalancers[0].ips[0]: "" is not an IP address (line 5)`}},
		{"port as float", lb + "      ips: [10.0.0.1]\n      ports: [{port: 80.5}]\n",
			[]string{`static.loadbalancers[0].ports[0].port: expected a port number, got number 80.5 (line 6)`}},
		{"negative port", lb + "      ips: [10.0.0.1]\n      ports: [{port: -1}]\n",
			[]string{`static.loadbalancers[0].ports[0].port: -1 is out of range 1-65535 (line 6)`}},
		{"huge port", lb + "      ips: [10.0.0.1]\n      ports: [{port: 99999999999999999999}]\n",
			[]string{`static.loadbalancers[0].ports[0].port: expected a port number, got number 99999999999999999999 (line 6)`}},
		{"missing port", lb + "      ips: [10.0.0.1]\n      ports: [{protocol: TCP}]\n",
			[]string{`static.loadbalancers[0].ports[0].port: required (1-65535) (line 6)`}},
		{"null port item", lb + "      ips: [10.0.0.1]\n      ports: [~]\n",
			[]string{`static.loadbalancers[0].ports[0]: expected a mapping, got null (line 6)`}},
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
		{"every key problem at once", "probe: {timeout: 1s, timout: 2s}\nprobe: {}\nfoo: 1\n",
			[]string{
				`line 1: unknown key "timout" in probe (known: timeout)`,
				`line 2: duplicate key "probe" at the top level (first at line 1)`,
				`line 3: unknown key "foo" at the top level (known: probe, dns, static, kubernetes)`,
			}},
		{"server port", "dns: {servers: ['10.0.0.1:0', '10.0.0.1:dns', 'bad_host!:53', '10.0.0.1', '10.0.0.1:53']}\n",
			[]string{
				`dns.servers[0]: "10.0.0.1:0" has port "0", not a number 1-65535 (line 1)`,
				`dns.servers[1]: "10.0.0.1:dns" has port "dns", not a number 1-65535 (line 1)`,
				`dns.servers[2]: "bad_host!:53" has host "bad_host!", neither an IP address nor a DNS name (line 1)`,
				`dns.servers[4]: duplicate server "10.0.0.1:53" (first at [3]) (line 1)`,
			}},
		{"bad domain", "dns: {domain: '-a.test'}\n",
			[]string{`dns.domain: "-a.test" is not a valid DNS name: a label starts or ends with a hyphen (line 1)`}},
		{"hostname is an IP", host + "      expect: [10.0.0.1]\n    - hostname: 10.0.0.1\n      expect: [10.0.0.1]\n",
			[]string{`static.hostnames[1].hostname: "10.0.0.1" is an IP address, not a DNS name (line 6)`}},
		{"hostname too long", "dns: {servers: [127.0.0.1]}\nstatic: {hostnames: [{hostname: " + strings.Repeat("a", 64) + ".test, expect: [10.0.0.1]}]}\n",
			[]string{`is not a valid DNS name: a label is longer than 63 characters (line 2)`}},
		{"hostname bad character", "dns: {servers: [127.0.0.1]}\nstatic: {hostnames: [{hostname: 'a b.test', expect: [10.0.0.1]}]}\n",
			[]string{`static.hostnames[0].hostname: "a b.test" is not a valid DNS name: invalid character ' ' (line 2)`}},
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
			[]string{`dns.servers[0]: expected a string, got null (line 1)`}},
		{"port with a lying tag", "static: {loadbalancers: [{namespace: a, service: b, ips: [10.0.0.1], ports: [{port: !!int 80.5}]}]}\n",
			[]string{`static.loadbalancers[0].ports[0].port: expected a port number, got integer 80.5 (line 1)`}},
		{"quoted merge key is an ordinary key", "'<<': {}\n",
			[]string{`line 1: unknown key "<<" at the top level`}},
		{"merge of a scalar", "probe:\n  <<: 5\n",
			[]string{`line 2: merge key << in probe needs a mapping or a list of mappings, got integer 5`}},
		{"merge of a list alias", "x: &l [a]\nprobe:\n  <<: *l\n",
			[]string{`line 1: unknown key "x" at the top level`, `line 3: merge key << in probe needs a mapping or a list of mappings, got alias *l`}},
		{"merged unknown key", "probe:\n  <<: {timeout: 1s, retries: 3}\n",
			[]string{`line 2: unknown key "retries" in probe (known: timeout)`}},
		{"merged bad value", "probe:\n  <<: [{timeout: 1s}, {timeout: x}]\n",
			[]string{}}, // the first merged mapping wins: no error
		{"merged value overridden", "probe:\n  timeout: 3s\n  <<: {timeout: nope}\n",
			[]string{}},
		{"alias inside its anchor", "static: &s\n  loadbalancers:\n    - namespace: a\n      <<: *s\n",
			[]string{`unknown key "loadbalancers" in static.loadbalancers[0]`}},
		{"merge of itself", "probe: &p\n  <<: *p\n",
			[]string{`line 2: alias *p refers to a value that contains it`}},
		{"aliases expanding too far", laughs(),
			[]string{`aliases expand to too many values`}},
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
			if err.Error() == "" {
				t.Error("empty error message")
			}
			// The strict walk must catch whatever yaml.v3's decoding rejects
			// (its alias ratio check aside).
			if msg := err.Error(); strings.HasPrefix(msg, "decoding: ") && !strings.Contains(msg, "excessive aliasing") {
				t.Errorf("the strict walk let through what yaml.v3 rejects:\n%v\ninput:\n%s", err, data)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("Validate() of a parsed config: %v", err)
		}
	})
}

// TestStrictWalkCoversDecoder puts odd values (tags, kinds, nulls, aliases)
// at every position of a config: whatever Parse answers, the strict walk, not
// yaml.v3's decoder, must be the one to reject it.
func TestStrictWalkCoversDecoder(t *testing.T) {
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
		"<<: $",
		"$",
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
	}
	passed := 0
	for _, tmpl := range templates {
		for _, v := range values {
			doc := []byte(strings.ReplaceAll(tmpl, "$", v))
			body, err := document(doc)
			if err != nil || body == nil {
				continue
			}
			c := newChecker(len(doc))
			c.visit(body, configType, "", false)
			if len(c.errs) > 0 {
				continue
			}
			passed++
			dec := yaml.NewDecoder(bytes.NewReader(doc))
			dec.KnownFields(true)
			if err := dec.Decode(&Config{}); err != nil {
				t.Errorf("the strict walk let through what yaml.v3 rejects:\n%s\n%v", doc, err)
			}
		}
	}
	t.Logf("%d documents passed the strict walk and decoded", passed)
	if passed < 200 {
		t.Errorf("only %d documents passed the strict walk: the test hardly reaches the decoder", passed)
	}
}
