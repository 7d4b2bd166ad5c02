package lab_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lbprobe/lbprobe/collector/diagnosis"
	"github.com/lbprobe/lbprobe/test/seed"
	"github.com/lbprobe/lbprobe/test/targets"
)

// TestWrongDNSAnswer: the LAN's DNS server answers a route hostname with the
// other Gateway's address (k8s_gateway answering app.sbbh.cloud with the
// internal Gateway's IP). lbprobe, probing from the router, reports
// wrong_address for it and correct for the hostname answered right.
func TestWrongDNSAnswer(t *testing.T) {
	_, l := seededLab(t)
	addrs := l.Addrs

	// The DNS server runs on a node's own address (its kernel answers ARP
	// for it), its socket created inside the node's namespace.
	node := l.Node(seed.NodeNames[2])
	server := netip.AddrPortFrom(node.IP, 53)
	records := targets.NewRecords(map[string][]string{
		"app." + seed.Domain:      {addrs.Internal.String()}, // wrong: the route is on the external Gateway
		"internal." + seed.Domain: {addrs.Internal.String()},
	})
	var pc net.PacketConn
	if err := node.NS.Run(func() error {
		var err error
		pc, err = net.ListenPacket("udp", server.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: records}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })

	cfg := filepath.Join(t.TempDir(), "lbprobe.yml")
	text := fmt.Sprintf("dns:\n  servers: [%q]\n  domain: %s\n", server.String(), seed.Domain)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	lbp := l.StartLBProbe(t, l.Router, "--probe.timeout=2s", "--config.file="+cfg)

	route := func(host, name, result string) expect {
		return expect{name: "gateway_dns_answer_result", want: 1, labels: labels{
			"server": server.String(), "hostname": host, "source": "httproute", "namespace": seed.AppsNS, "name": name, "result": result,
		}}
	}
	start := time.Now()
	scrapeUntil(t, lbp, func(e exposition) error {
		return e.check([]expect{
			route("app."+seed.Domain, "public-app", "wrong_address"),
			route("internal."+seed.Domain, "internal-app", "correct"),
			{name: "gateway_hostname_diagnosis_info", labels: labels{"hostname": "app." + seed.Domain, "cause": diagnosis.CauseDNSWrongAddress}, want: 1},
			// Answered right; but the lab's Gateways serve a certificate lbprobe has no CA for.
			{name: "gateway_hostname_diagnosis_info", labels: labels{"hostname": "internal." + seed.Domain, "cause": diagnosis.CauseTLSInvalid}, want: 1},
		})
	})
	t.Logf("verdicts seen after %s", time.Since(start).Round(time.Millisecond))

	diags, code := l.Diagnose(t, l.Router, "--probe.timeout=2s", "--config.file="+cfg, "app."+seed.Domain)
	i := slices.IndexFunc(diags, func(d diagnosis.Diagnosis) bool { return d.Object == "httproute apps/public-app" })
	if code != 1 || i < 0 {
		t.Fatalf("lbprobe diagnose app.%s: exit %d, %+v; want exit 1 and the chain of the route apps/public-app", seed.Domain, code, diags)
	}
	d := diags[i]
	wantFix := fmt.Sprintf("answers %s for app.%s, its Gateway has %s", addrs.Internal, seed.Domain, addrs.External)
	if d.Cause != diagnosis.CauseDNSWrongAddress || !strings.Contains(d.Fix, wantFix) {
		t.Errorf("lbprobe diagnose app.%s: cause %s, fix %q; want %s and a fix naming %q", seed.Domain, d.Cause, d.Fix, diagnosis.CauseDNSWrongAddress, wantFix)
	}
}
