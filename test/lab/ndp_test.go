package lab_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/lbprobe/lbprobe/collector/diagnosis"
	"github.com/lbprobe/lbprobe/test/lab"
	"github.com/lbprobe/lbprobe/test/seed"
)

// TestIPv6NDP: a dual-stack Service's IPv6 load balancer IP, announced by
// NDP as Cilium does, probed from the LAN host with Neighbor Solicitations
// to the solicited-node multicast address and unicast: the holder answering
// both, only unicast, only multicast, and not at all.
func TestIPv6NDP(t *testing.T) {
	sc, l := seededLab(t)
	if err := sc.Namespace(t.Context(), scenarioNS); err != nil {
		t.Fatal(err)
	}
	const svc = "ipv6"
	ip := netip.MustParseAddr("fd00:11:80::90")
	nuc := l.Node(seed.NodeNames[0])
	scenarioService(t, sc, svc, ip, nuc.Name)
	syncLab(t, l)
	lbp := l.StartLBProbe(t, l.Router, diagnosisFlags...)
	arp := ipLabels(svc, ip).with("interface", lab.Interface)
	ndp := func(mode string, want float64) expect {
		return expect{name: "loadbalancer_ndp_answered", labels: arp.with("mode", mode), want: want}
	}

	t.Run("the holder answers both", func(t *testing.T) {
		scrapeUntil(t, lbp, func(e exposition) error {
			return errors.Join(e.check([]expect{
				{name: "loadbalancer_arp_reachable", labels: arp, want: 1},
				{name: "loadbalancer_arp_holder_match", labels: arp, want: 1},
				{name: "loadbalancer_port_reachable", labels: ipLabels(svc, ip).with("port", "80", "protocol", "TCP"), want: 1},
				ndp("multicast", 1), ndp("unicast", 1),
				verdict(svc, ip, diagnosis.CauseOK),
			}), responders(e, svc, ip, nuc))
		})
		diagnose(t, l, scenarioNS+"/"+svc, diagnosis.CauseOK)
	})
	for _, c := range []struct {
		name               string
		multicast, unicast bool
		evidence           string
	}{
		{"multicast dropped", false, true, "answers only unicast solicitations"},
		{"unicast dropped", true, false, "answers only multicast solicitations"},
	} {
		t.Run(c.name, func(t *testing.T) {
			nuc.SetNDP(c.multicast, c.unicast)
			defer nuc.SetNDP(true, true)
			scrapeUntil(t, lbp, func(e exposition) error {
				// The unicast solicitation goes to the holder's MAC, which
				// the last round learned from its IPv4 address.
				return e.check([]expect{
					{name: "loadbalancer_arp_reachable", labels: arp, want: 1},
					ndp("multicast", map[bool]float64{true: 1}[c.multicast]), ndp("unicast", map[bool]float64{true: 1}[c.unicast]),
					verdict(svc, ip, diagnosis.CauseHolderSilent),
				})
			})
			diagnose(t, l, scenarioNS+"/"+svc, diagnosis.CauseHolderSilent, c.evidence)
		})
	}
	t.Run("nobody answers", func(t *testing.T) {
		nuc.SetARP(false)
		defer nuc.SetARP(true)
		scrapeUntil(t, lbp, func(e exposition) error {
			return errors.Join(e.check([]expect{
				{name: "loadbalancer_arp_reachable", labels: arp, want: 0},
				ndp("multicast", 0),
				verdict(svc, ip, diagnosis.CauseHolderSilent),
			}), responders(e, svc, ip))
		})
	})
}
