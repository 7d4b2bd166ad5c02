package remediate_test

// Against a real kube-apiserver (test/kubecluster): deletes conditional on
// the judged resourceVersion, the Events, and one leader among two.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

	"github.com/lbprobe/lbprobe/collector"
	"github.com/lbprobe/lbprobe/collector/diagnosis"
	"github.com/lbprobe/lbprobe/collector/kube"
	"github.com/lbprobe/lbprobe/collector/remediate"
	"github.com/lbprobe/lbprobe/test/kubecluster"
	"github.com/lbprobe/lbprobe/test/poll"
)

func TestMain(m *testing.M) { os.Exit(kubecluster.Shared(m, kubecluster.Options{})) }

func client(t *testing.T) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(kubecluster.Get(t).RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func logger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// staleInput is apps/<svc> with the given lease object, whose holder
// stopped renewing ten minutes ago.
func staleInput(svc string, lease *coordinationv1.Lease) remediate.Input {
	ip := netip.MustParseAddr("10.11.80.90")
	st := kube.ServiceState{
		Namespace: "apps", Name: svc, IPs: []netip.Addr{ip}, Assigned: true,
		Policies: 1, PolicyNames: []string{"l2-policy"}, PolicyNodes: 3, PolicyReadyNodes: 3, Backends: 1,
		Lease: &kube.LeaseState{Name: lease.Name, Holder: "k8s-opti-02", RenewAge: 10 * time.Minute, Duration: 15 * time.Second,
			Expired: true, HolderReady: true, ResourceVersion: lease.ResourceVersion},
	}
	status := collector.IPStatus{IP: ip, Probed: true, Ports: []collector.PortStatus{{Port: 80, Protocol: "TCP"}}}
	d := diagnosis.LoadBalancer(collector.LoadBalancer{Namespace: "apps", Service: svc}, &st, &status, diagnosis.Mode{CiliumNamespace: "kube-system"})
	return remediate.Input{Synced: true, Services: []kube.ServiceState{st}, Diagnoses: []diagnosis.Diagnosis{d}}
}

// eventRecorder records Events to the API server as lbprobe does.
func eventRecorder(t *testing.T, c kubernetes.Interface) record.EventRecorder {
	t.Helper()
	broadcaster := record.NewBroadcaster(record.WithContext(t.Context()))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.CoreV1().Events("")})
	t.Cleanup(broadcaster.Shutdown)
	return broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "lbprobe"})
}

func createLease(t *testing.T, c kubernetes.Interface, name string) *coordinationv1.Lease {
	t.Helper()
	renewed := metav1.NewMicroTime(time.Now().Add(-10 * time.Minute))
	l, err := c.CoordinationV1().Leases("kube-system").Create(t.Context(), &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("k8s-opti-02"), LeaseDurationSeconds: ptr.To[int32](15), RenewTime: &renewed},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// A lease that changed after it was judged is not deleted; the one judged
// is, with an Event on its Service.
func TestIntegrationConditionalDelete(t *testing.T) {
	c := client(t)
	if _, err := c.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	name := kube.LeaseName("apps", "judged")
	judged := createLease(t, c, name)

	recorder := eventRecorder(t, c)
	now := time.Now()
	r := remediate.New(remediate.Config{Mode: remediate.On, Rounds: 1, After: time.Minute, Now: func() time.Time { return now }}, c, recorder, logger())

	// The holder renews after lbprobe read the lease.
	renewed := judged.DeepCopy()
	renewed.Spec.RenewTime = ptr.To(metav1.NewMicroTime(time.Now()))
	if _, err := c.CoordinationV1().Leases("kube-system").Update(t.Context(), renewed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r.Observe(t.Context(), staleInput("judged", judged))
		now = now.Add(time.Minute)
	}
	if _, err := c.CoordinationV1().Leases("kube-system").Get(t.Context(), name, metav1.GetOptions{}); err != nil {
		t.Fatalf("the lease renewed after it was judged is gone: %v", err)
	}
	if h := r.History(); len(h) == 0 || h[0].Result != remediate.ResultConflict {
		t.Fatalf("history %+v, want a conflict first", h)
	}

	// Judged again as it is now: deleted.
	current, err := c.CoordinationV1().Leases("kube-system").Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.Observe(t.Context(), staleInput("judged", current))
	if _, err := c.CoordinationV1().Leases("kube-system").Get(t.Context(), name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the lease judged is still there (%v); history %+v", err, r.History())
	}
	err = poll.Until(t.Context(), 10*time.Second, 100*time.Millisecond, func() error {
		events, err := c.CoreV1().Events("apps").List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=judged,reason=L2LeaseDeleted"})
		if err != nil {
			return err
		}
		for _, e := range events.Items {
			if e.InvolvedObject.Kind == "Service" && strings.Contains(e.Message, name) && e.Source.Component == "lbprobe" {
				return nil
			}
		}
		return fmt.Errorf("no L2LeaseDeleted Event on Service apps/judged among %d", len(events.Items))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Two lbprobe instances: exactly one leads at a time; when it stops, the
// other takes over.
func TestIntegrationOneLeader(t *testing.T) {
	c := client(t)
	ctxA, stopA := context.WithCancel(t.Context())
	defer stopA()
	ctxB, stopB := context.WithCancel(t.Context())
	defer stopB()
	a := remediate.New(remediate.Config{Mode: remediate.On}, c, nil, logger())
	b := remediate.New(remediate.Config{Mode: remediate.On}, c, nil, logger())
	remediate.Elect(ctxA, a, c, "default", remediate.LeaderLeaseName, "lbprobe-a", logger())
	remediate.Elect(ctxB, b, c, "default", remediate.LeaderLeaseName, "lbprobe-b", logger())

	leaders := func() int {
		n := 0
		for _, r := range []*remediate.Remediator{a, b} {
			if r.Leading() {
				n++
			}
		}
		return n
	}
	if err := poll.Until(t.Context(), 30*time.Second, 100*time.Millisecond, func() error {
		if n := leaders(); n != 1 {
			return fmt.Errorf("%d leaders", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if n := leaders(); n != 1 {
			t.Fatalf("%d leaders", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The leader stops (its lease is released); the other takes over.
	leader, other, stop := a, b, stopA
	if b.Leading() {
		leader, other, stop = b, a, stopB
	}
	stop()
	if err := poll.Until(t.Context(), 30*time.Second, 100*time.Millisecond, func() error {
		if !other.Leading() || leader.Leading() {
			return fmt.Errorf("the stopped one leading %v, the other %v", leader.Leading(), other.Leading())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// An orphaned lease is deleted for real after its grace, with an Event on
// the lease.
func TestIntegrationOrphan(t *testing.T) {
	c := client(t)
	name := kube.LeaseName("apps", "gone")
	l := createLease(t, c, name)
	recorder := eventRecorder(t, c)
	now := time.Now()
	r := remediate.New(remediate.Config{Mode: remediate.On, OrphanGrace: 10 * time.Minute, Now: func() time.Time { return now }}, c, recorder, logger())
	in := remediate.Input{Synced: true, Orphans: []kube.OrphanedLease{{Name: name, ResourceVersion: l.ResourceVersion}}}
	for range 10 {
		r.Observe(t.Context(), in)
		now = now.Add(time.Minute)
	}
	if _, err := c.CoordinationV1().Leases("kube-system").Get(t.Context(), name, metav1.GetOptions{}); err != nil {
		t.Fatalf("the orphan is gone within its grace: %v", err)
	}
	r.Observe(t.Context(), in)
	if _, err := c.CoordinationV1().Leases("kube-system").Get(t.Context(), name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the orphan is still there after its grace (%v); history %+v", err, r.History())
	}
	err := poll.Until(t.Context(), 10*time.Second, 100*time.Millisecond, func() error {
		events, err := c.CoreV1().Events("kube-system").List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.kind=Lease,involvedObject.name=" + name + ",reason=L2LeaseDeleted"})
		if err != nil {
			return err
		}
		if len(events.Items) == 0 {
			return fmt.Errorf("no L2LeaseDeleted Event on lease %s", name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
