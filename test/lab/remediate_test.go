package lab_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lbprobe/lbprobe/collector/diagnosis"
	"github.com/lbprobe/lbprobe/collector/remediate"
	"github.com/lbprobe/lbprobe/test/lab"
	"github.com/lbprobe/lbprobe/test/poll"
	"github.com/lbprobe/lbprobe/test/seed"
)

// remediationFlags make remediation act within seconds.
var remediationFlags = []string{
	"--probe.timeout=2s", "--remediate.leases=on",
	"--remediate.rounds=2", "--remediate.after=1s", "--remediate.lease-grace=1s",
	"--remediate.verify-within=20s", "--remediate.cooldown=10m",
	"--remediate.leader-election.namespace=" + seed.CiliumNamespace,
}

// TestRemediation: the seed's stale lease of network/k8s-gateway (its
// holder stopped renewing ten minutes ago, nobody took over) is deleted
// once by the one lbprobe that leads, the Cilium stand-in elects a holder,
// the IP answers again, and remediation stops; the healthy leases are not
// touched, and the lbprobe that does not lead only observes.
func TestRemediation(t *testing.T) {
	sc, l := seededLabWith(t, lab.Options{Elect: true})
	stale := seed.LeaseName(seed.NetworkNS, "k8s-gateway")
	leases := sc.Core.CoordinationV1().Leases(seed.CiliumNamespace)
	before, err := leases.List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	uids := map[string]string{}
	for _, le := range before.Items {
		uids[le.Name] = string(le.UID)
	}

	// Two instances: the LAN host, and one on the API server's host.
	router := l.StartLBProbe(t, l.Router, remediationFlags...)
	other := l.StartLBProbe(t, l.CP, remediationFlags...)
	gw := labels{"namespace": seed.NetworkNS, "service": "k8s-gateway", "ip": l.Addrs.DNS.String()}
	deleted := labels{"action": remediate.ActionDeleteExpired, "result": remediate.ResultDeleted}
	fixed := labels{"action": remediate.ActionVerify, "result": remediate.ResultFixed}

	begin := time.Now()
	var leader, follower *lab.LBProbe
	for leader == nil {
		if time.Since(begin) > 40*time.Second {
			t.Fatal("no lbprobe was elected within 40s")
		}
		for _, p := range []*lab.LBProbe{router, other} {
			e, err := parseExposition(scrape(t, p))
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := e.value("lbprobe_remediation_leader", labels{}); v == 1 {
				leader = p
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	follower = other
	if leader == other {
		follower = router
	}
	t.Logf("the lbprobe in %s leads after %s", leader.NS.Name, time.Since(begin).Round(time.Millisecond))

	scrapeUntil(t, leader, func(e exposition) error {
		return e.check([]expect{
			{name: "lbprobe_remediations_total", labels: deleted, want: 1},
			{name: "lbprobe_remediations_total", labels: fixed, want: 1},
			{name: "loadbalancer_l2_announced", labels: gw, want: 1},
			{name: "loadbalancer_reachable", labels: gw, want: 1},
			{name: "lbprobe_remediation_last_action_timestamp_seconds", labels: labels{"lease": stale}, want: lastAction(e, stale)},
		})
	})
	t.Logf("stale lease deleted, re-elected and verified after %s", time.Since(begin).Round(time.Millisecond))

	// A few more rounds: nothing else happens, on either instance.
	for range 5 {
		for _, p := range []*lab.LBProbe{leader, follower} {
			e, err := parseExposition(scrape(t, p))
			if err != nil {
				t.Fatal(err)
			}
			var errs []error
			for _, s := range e.matching("lbprobe_remediations_total", nil) {
				v, _ := e.value("lbprobe_remediations_total", s)
				if s["result"] == remediate.ResultDeleted && v > 0 && (p == follower || s["action"] != remediate.ActionDeleteExpired || v != 1) {
					errs = append(errs, fmt.Errorf("%s: lbprobe_remediations_total%s = %v", p.NS.Name, s, v))
				}
			}
			if got := e.matching("lbprobe_remediation_last_action_timestamp_seconds", nil); len(got) > 1 || (p == follower && len(got) > 0) {
				errs = append(errs, fmt.Errorf("%s acted on %v", p.NS.Name, got))
			}
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
		}
	}
	after, err := leases.List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, le := range after.Items {
		switch uid, existed := uids[le.Name]; {
		case le.Name == stale && uid == string(le.UID):
			t.Errorf("lease %s is the old object", le.Name)
		case le.Name != stale && existed && uid != string(le.UID):
			t.Errorf("healthy lease %s was replaced", le.Name)
		}
	}

	// lbprobe diagnose: the lease is live again, and it says what was done.
	err = poll.Until(t.Context(), 15*time.Second, 500*time.Millisecond, func() error {
		diags, code := l.Diagnose(t, l.Router, "--probe.timeout=2s", seed.NetworkNS+"/k8s-gateway")
		var errs []error
		for _, d := range diags {
			for _, s := range d.Steps {
				if s.Name == diagnosis.StepLease && s.State != diagnosis.OK {
					errs = append(errs, fmt.Errorf("exit %d, %s: %s", code, s.Name, s.Evidence))
				}
			}
			if !slices.ContainsFunc(d.Remediations, func(r diagnosis.Remediation) bool {
				return r.Reason == "L2LeaseDeleted" && strings.Contains(r.Message, stale)
			}) {
				errs = append(errs, fmt.Errorf("%s: remediations %+v lack the L2LeaseDeleted Event", d.Target, d.Remediations))
			}
		}
		if len(diags) == 0 {
			errs = append(errs, fmt.Errorf("no diagnosis (exit %d)", code))
		}
		return errors.Join(errs...)
	})
	if err != nil {
		t.Errorf("after remediation, lbprobe diagnose: %v", err)
	}
}

// lastAction returns the value of the lease's last-action series, so that
// its presence is what is checked; -1 when absent.
func lastAction(e exposition, lease string) float64 {
	if v, ok := e.value("lbprobe_remediation_last_action_timestamp_seconds", labels{"lease": lease}); ok {
		return v
	}
	return -1
}

// TestRemediationAPIOutage: while lbprobe cannot reach the API server, it
// does not act, not even on the stale lease it saw before; once the API
// server is back, it does.
func TestRemediationAPIOutage(t *testing.T) {
	sc, l := seededLabWith(t, lab.Options{Elect: true})
	stale := seed.LeaseName(seed.NetworkNS, "k8s-gateway")
	leases := sc.Core.CoordinationV1().Leases(seed.CiliumNamespace)
	old, err := leases.Get(t.Context(), stale, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	flags := slices.Clone(remediationFlags)
	flags[slices.Index(flags, "--remediate.after=1s")] = "--remediate.after=15s"
	lbp := l.StartLBProbe(t, l.Router, flags...)
	// Elected, seen on the leader Lease rather than in a scrape: no probe
	// round (no evidence) before the outage.
	suffix := fmt.Sprintf("_%d", lbp.Pid())
	err = poll.Until(t.Context(), 40*time.Second, 200*time.Millisecond, func() error {
		le, err := leases.Get(t.Context(), remediate.LeaderLeaseName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if h := le.Spec.HolderIdentity; h == nil || !strings.HasSuffix(*h, suffix) {
			return fmt.Errorf("leader %v, want lbprobe pid %d", h, lbp.Pid())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	l.SetAPIReachable(false)
	outage := time.Now()
	for time.Since(outage) < 25*time.Second {
		e, err := parseExposition(scrape(t, lbp))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range e.matching("lbprobe_remediations_total", nil) {
			if v, _ := e.value("lbprobe_remediations_total", s); v > 0 {
				t.Fatalf("remediation during the API outage (%s in): lbprobe_remediations_total%s = %v", time.Since(outage).Round(time.Second), s, v)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	e, err := parseExposition(scrape(t, lbp))
	if err != nil {
		t.Fatal(err)
	}
	if synced := e.matching("lbprobe_kubernetes_synced", labels{}); len(synced) == 0 {
		t.Fatal("no lbprobe_kubernetes_synced series")
	} else if v, _ := e.value("lbprobe_kubernetes_synced", synced[0]); v != 0 {
		t.Errorf("lbprobe_kubernetes_synced%s = %v during the outage, want 0", synced[0], v)
	}
	if now, err := leases.Get(t.Context(), stale, metav1.GetOptions{}); err != nil || now.UID != old.UID {
		t.Fatalf("the stale lease changed during the outage: %v", err)
	}

	l.SetAPIReachable(true)
	back := time.Now()
	scrapeUntil(t, lbp, func(e exposition) error {
		return e.check([]expect{
			{name: "lbprobe_remediations_total", labels: labels{"action": remediate.ActionDeleteExpired, "result": remediate.ResultDeleted}, want: 1},
		})
	})
	t.Logf("acted %s after the API server came back (--remediate.after=15s)", time.Since(back).Round(time.Second))
}
