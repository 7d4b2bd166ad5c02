package remediate

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/lbprobe/lbprobe/collector"
	"github.com/lbprobe/lbprobe/collector/diagnosis"
	"github.com/lbprobe/lbprobe/collector/kube"
	"github.com/lbprobe/lbprobe/probe"
)

// Small decision tests with client-go's fake clientset and a fake clock;
// remediate_integration_test.go runs against a real kube-apiserver and
// test/lab end to end.

const (
	svcNS, svcName = "network", "k8s-gateway"
	ciliumNS       = "kube-system"
)

var (
	vip       = netip.MustParseAddr("10.11.80.82")
	leaseName = kube.LeaseName(svcNS, svcName)
)

// clock is a settable time.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time          { return c.now }
func (c *clock) advance(d time.Duration) { c.now = c.now.Add(d) }
func newClock() *clock                   { return &clock{now: time.Date(2026, 12, 3, 2, 0, 0, 0, time.UTC)} }
func discard() *slog.Logger              { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
func ptr[T any](v T) *T                  { return &v }

// state is network/k8s-gateway with a lease and a round's IP status; the
// lease is the seed's stale one unless changed.
type state struct {
	st kube.ServiceState
	ip collector.IPStatus
}

func staleLease() state {
	return state{
		st: kube.ServiceState{
			Namespace: svcNS, Name: svcName, IPs: []netip.Addr{vip}, Assigned: true,
			Policies: 1, PolicyNames: []string{"l2-policy"}, PolicyNodes: 3, PolicyReadyNodes: 3, Backends: 1,
			Lease: &kube.LeaseState{Name: leaseName, Holder: "k8s-opti-02", RenewAge: 10 * time.Minute, Duration: 15 * time.Second,
				Expired: true, HolderReady: true, ResourceVersion: "42"},
			PerIP: []kube.IPState{{IP: vip}},
		},
		ip: collector.IPStatus{IP: vip, Probed: true, Ports: []collector.PortStatus{{Port: 53, Protocol: "TCP", Result: probe.Result{Reason: probe.ReasonTimeout}}}},
	}
}

func healthyLease() state {
	s := staleLease()
	s.st.Lease.RenewAge, s.st.Lease.Expired, s.st.Lease.Live = 2*time.Second, false, true
	s.ip.Reachable, s.ip.Ports[0].Result = true, probe.Result{Success: true}
	return s
}

func (s state) input(arp bool) Input {
	mode := diagnosis.Mode{ARP: arp, CiliumNamespace: ciliumNS}
	d := diagnosis.LoadBalancer(collector.LoadBalancer{Namespace: svcNS, Service: svcName}, &s.st, &s.ip, mode)
	return Input{Synced: true, Services: []kube.ServiceState{s.st}, Diagnoses: []diagnosis.Diagnosis{d}, ObservesARP: arp,
		Reachable: map[string]bool{svcNS + "/" + svcName: s.ip.Reachable}}
}

// fixture is a Remediator over a fake clientset holding the lease.
type fixture struct {
	r      *Remediator
	client *fake.Clientset
	clock  *clock
	events *record.FakeRecorder
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	c := newClock()
	client := fake.NewClientset(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: leaseName, Namespace: ciliumNS}})
	ev := record.NewFakeRecorder(100)
	if cfg.Mode == "" {
		cfg.Mode = On
	}
	cfg.Now, cfg.CiliumNamespace = c.Now, ciliumNS
	return &fixture{r: New(cfg, client, ev, discard()), client: client, clock: c, events: ev}
}

// rounds observes in n times, a round every step.
func (f *fixture) rounds(n int, step time.Duration, in Input) {
	for range n {
		f.r.Observe(context.Background(), in)
		f.clock.advance(step)
	}
}

// recreate puts the lease back, as Cilium does when it elects a holder.
func (f *fixture) recreate(t *testing.T) {
	t.Helper()
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: leaseName, Namespace: ciliumNS}}
	if _, err := f.client.CoordinationV1().Leases(ciliumNS).Create(context.Background(), l, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func (f *fixture) deletes() int {
	n := 0
	for _, a := range f.client.Actions() {
		if a.GetVerb() == "delete" {
			n++
		}
	}
	return n
}

func (f *fixture) count(action, result string) float64 {
	return f.r.counts[[2]string{action, result}]
}

func TestNeverActs(t *testing.T) {
	refused := healthyLease()
	refused.ip.Reachable, refused.ip.Ports[0].Result = false, probe.Result{Reason: probe.ReasonRefused}
	notSynced := staleLease().input(false)
	notSynced.Synced = false
	silent := healthyLease()
	silent.ip.ARP = []collector.ARPStatus{{ARPResult: probe.ARPResult{Interface: "eth0", Result: probe.Result{Reason: probe.ReasonTimeout}}, HolderMatch: ptr(false)}}
	notReadyAlone := healthyLease()
	notReadyAlone.st.Lease.HolderReady, notReadyAlone.st.PolicyReadyNodes = false, 0
	justExpired := staleLease()
	justExpired.st.Lease.RenewAge = 20 * time.Second // past 15s, not past 15s + grace

	tests := []struct {
		name string
		in   Input
	}{
		{"a healthy lease", healthyLease().input(true)},
		{"a TCP failure alone (backends may be down)", refused.input(true)},
		{"the caches out of sync", notSynced},
		{"holder_silent where ARP is not observed", silent.input(false)},
		{"a NotReady holder with no Ready node to take over", notReadyAlone.input(true)},
		{"an expired lease within the grace", justExpired.input(false)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			f.rounds(20, time.Minute, tt.in)
			if n := f.deletes(); n != 0 {
				t.Errorf("%d deletes, want none", n)
			}
			if len(f.r.History()) != 0 {
				t.Errorf("actions: %+v", f.r.History())
			}
		})
	}
}

// An expired lease is deleted once, only after Rounds rounds and After,
// conditionally on the resourceVersion judged; the fix is checked.
func TestExpiredLeaseDeletedOnce(t *testing.T) {
	f := newFixture(t, Config{Rounds: 3, After: 2 * time.Minute, VerifyWithin: time.Minute})
	stale := staleLease().input(false)
	f.rounds(2, 5*time.Minute, stale)
	if n := f.deletes(); n != 0 {
		t.Fatalf("deleted after 2 rounds, want 3")
	}
	f.r.Observe(context.Background(), stale)
	if n := f.deletes(); n != 1 {
		t.Fatalf("%d deletes after 3 rounds over 10m, want 1", n)
	}
	for _, a := range f.client.Actions() {
		if a.GetVerb() == "delete" && a.GetNamespace() != ciliumNS {
			t.Errorf("deleted in %s", a.GetNamespace())
		}
	}
	if got := f.count(ActionDeleteExpired, ResultDeleted); got != 1 {
		t.Errorf("deleted counted %v", got)
	}
	select {
	case e := <-f.events.Events:
		if !strings.Contains(e, "L2LeaseDeleted") || !strings.Contains(e, leaseName) || !strings.Contains(e, "last renewed 10m0s ago") {
			t.Errorf("event %q", e)
		}
	default:
		t.Error("no Event")
	}
	// Cilium elects a new holder: verified, and never deleted again.
	f.clock.advance(10 * time.Second)
	f.rounds(10, time.Minute, healthyLease().input(false))
	if got := f.count(ActionVerify, ResultFixed); got != 1 {
		t.Errorf("verify fixed %v, want 1; history %+v", got, f.r.History())
	}
	if n := f.deletes(); n != 1 {
		t.Errorf("%d deletes, want 1", n)
	}
}

// The cool-down and the budget hold under a lease that keeps failing, and
// a delete that did not fix it stops remediation on that lease.
func TestGuardRails(t *testing.T) {
	t.Run("not fixed: stops", func(t *testing.T) {
		f := newFixture(t, Config{Rounds: 1, After: time.Second, Cooldown: time.Minute, VerifyWithin: 2 * time.Minute})
		f.rounds(60, time.Minute, staleLease().input(false))
		if n := f.deletes(); n != 1 {
			t.Errorf("%d deletes of a lease that stays stale, want 1 (then it stops)", n)
		}
		if got := f.count(ActionVerify, ResultNotFixed); got != 1 {
			t.Errorf("not_fixed %v", got)
		}
		if got, err := testutil.GatherAndCount(registry(f.r), "lbprobe_remediation_stopped"); err != nil || got != 1 {
			t.Errorf("lbprobe_remediation_stopped: %d series, %v", got, err)
		}
		// Healthy again: remediation may act on it again.
		f.recreate(t)
		f.rounds(1, time.Minute, healthyLease().input(false))
		f.rounds(2, time.Minute, staleLease().input(false))
		if n := f.deletes(); n != 2 {
			t.Errorf("%d deletes after the Service was healthy and broke again, want 2", n)
		}
	})
	t.Run("cool-down", func(t *testing.T) {
		f := newFixture(t, Config{Rounds: 1, After: time.Second, Cooldown: 15 * time.Minute, VerifyWithin: time.Minute})
		// A lease that Cilium re-creates healthy and that goes stale again at once.
		for range 8 {
			f.rounds(2, time.Minute, staleLease().input(false))
			f.recreate(t)
			f.rounds(1, time.Minute, healthyLease().input(false))
		}
		if n := f.deletes(); n != 2 {
			t.Errorf("%d deletes in 24 minutes with a 15m cool-down, want 2", n)
		}
	})
	t.Run("budget", func(t *testing.T) {
		f := newFixture(t, Config{Rounds: 1, After: time.Second, Cooldown: time.Second, Budget: 2, VerifyWithin: time.Second})
		for range 20 {
			f.rounds(2, time.Minute, staleLease().input(false))
			f.recreate(t)
			f.rounds(1, time.Second, healthyLease().input(false))
		}
		if n := f.deletes(); n != 2 {
			t.Errorf("%d deletes in 40 minutes with a budget of 2 per hour, want 2", n)
		}
		if got := f.count(ActionDeleteExpired, ResultBudget); got < 1 {
			t.Errorf("budget skips not counted: %v", f.r.counts)
		}
	})
	t.Run("not the leader", func(t *testing.T) {
		f := newFixture(t, Config{Rounds: 1, After: time.Second})
		f.r.SetLeading(false)
		f.rounds(10, time.Minute, staleLease().input(false))
		if n := f.deletes(); n != 0 {
			t.Errorf("a non-leader deleted %d times", n)
		}
	})
}

func TestDryRun(t *testing.T) {
	f := newFixture(t, Config{Mode: DryRun, Rounds: 1, After: time.Second, Cooldown: 10 * time.Minute})
	f.rounds(30, time.Minute, staleLease().input(false))
	if n := f.deletes(); n != 0 {
		t.Fatalf("dry-run deleted %d times", n)
	}
	if got := f.count(ActionDeleteExpired, ResultDryRun); got != 3 {
		t.Errorf("dry-run counted %v in 30m with a 10m cool-down, want 3", got)
	}
}

func TestHolderCauses(t *testing.T) {
	notReady := healthyLease()
	notReady.st.Lease.HolderReady, notReady.st.PolicyReadyNodes = false, 2
	silent := healthyLease()
	silent.ip.ARP = []collector.ARPStatus{{ARPResult: probe.ARPResult{Interface: "eth0", Result: probe.Result{Reason: probe.ReasonTimeout}}, HolderMatch: ptr(false)}}
	for _, tt := range []struct {
		name   string
		in     Input
		action string
	}{
		{"holder not ready", notReady.input(false), ActionDeleteNotReady},
		{"holder silent, seen by ARP", silent.input(true), ActionDeleteSilent},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Config{Rounds: 2, After: time.Minute})
			f.rounds(3, time.Minute, tt.in)
			if f.deletes() != 1 || f.count(tt.action, ResultDeleted) != 1 {
				t.Errorf("deletes %d, counts %v; want one %s", f.deletes(), f.r.counts, tt.action)
			}
		})
	}
}

func TestOrphan(t *testing.T) {
	f := newFixture(t, Config{OrphanGrace: 10 * time.Minute})
	in := Input{Synced: true, Orphans: []kube.OrphanedLease{{Name: leaseName, ResourceVersion: "7"}}}
	f.rounds(10, time.Minute, in) // 0..9 minutes
	if n := f.deletes(); n != 0 {
		t.Fatalf("orphan deleted within its grace")
	}
	f.rounds(1, time.Minute, in)
	if n := f.deletes(); n != 1 || f.count(ActionDeleteOrphaned, ResultDeleted) != 1 {
		t.Errorf("deletes %d, counts %v; want the orphan deleted once after 10m", n, f.r.counts)
	}
	// An API outage restarts the grace.
	g := newFixture(t, Config{OrphanGrace: 10 * time.Minute})
	g.rounds(8, time.Minute, in)
	g.rounds(1, time.Minute, Input{Synced: false})
	g.rounds(8, time.Minute, in)
	if n := g.deletes(); n != 0 {
		t.Errorf("orphan deleted across an API outage")
	}
}

func TestParseMode(t *testing.T) {
	for _, s := range []string{"off", "dry-run", "on"} {
		if m, err := ParseMode(s); err != nil || string(m) != s {
			t.Errorf("ParseMode(%q) = %q, %v", s, m, err)
		}
	}
	if _, err := ParseMode("yes"); err == nil || !strings.Contains(err.Error(), `"yes"`) {
		t.Errorf("ParseMode(yes): %v", err)
	}
}

func registry(r *Remediator) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(r)
	return reg
}
