package lab_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	"github.com/lbprobe/lbprobe/collector/diagnosis"
	"github.com/lbprobe/lbprobe/test/lab"
	"github.com/lbprobe/lbprobe/test/seed"
)

func metallbGVR(resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "metallb.io", Version: "v1beta1", Resource: resource}
}

// implService creates a one-port LoadBalancer Service in scenarioNS with
// ingress IP ip, one ready backend, the annotations and class given; it
// removes it when t ends.
func implService(t *testing.T, sc *seed.Cluster, name string, ip netip.Addr, annotations map[string]string, class string) {
	t.Helper()
	ctx := t.Context()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: scenarioNS, Name: name, Annotations: annotations},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	if class != "" {
		svc.Spec.LoadBalancerClass = ptr.To(class)
	}
	if _, err := sc.Core.CoreV1().Services(scenarioNS).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sc.Core.CoreV1().Services(scenarioNS).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete service %s/%s: %v", scenarioNS, name, err)
		}
		_ = sc.Core.DiscoveryV1().EndpointSlices(scenarioNS).Delete(ctx, name+"-seed", metav1.DeleteOptions{})
	})
	if err := sc.SetServiceIP(ctx, scenarioNS, name, ip); err != nil {
		t.Fatal(err)
	}
	if err := sc.EndpointSlice(ctx, scenarioNS, name, true); err != nil {
		t.Fatal(err)
	}
}

// implChecks are the series of one announced IP: who should announce, who
// answers, and the verdict.
func implChecks(svc string, ip netip.Addr, impl, announcer string, match float64, cause string) []expect {
	arp := ipLabels(svc, ip).with("interface", lab.Interface)
	return []expect{
		{name: "loadbalancer_announcer_info", labels: labels{"namespace": scenarioNS, "service": svc, "implementation": impl, "node": announcer}, want: 1},
		{name: "loadbalancer_arp_holder_match", labels: arp, want: match},
		verdict(svc, ip, cause),
	}
}

// TestOtherImplementations stands the lab's nodes in for MetalLB's speakers
// and for kube-vip, driven by their real API objects, and checks for each
// what lbprobe says from the LAN: the announcer, then the announcer silent,
// two nodes answering and nobody answering.
func TestOtherImplementations(t *testing.T) {
	t.Run("metallb", testMetalLB)
	t.Run("kube-vip", testKubeVIP)
}

func testMetalLB(t *testing.T) {
	sc, l := seededLabWith(t, lab.Options{Implementation: lab.ImplMetalLB, Elect: true})
	if err := sc.Namespace(t.Context(), scenarioNS); err != nil {
		t.Fatal(err)
	}
	dyn := sc.Dynamic
	ns := seed.CiliumNamespace // where the stand-in's speakers write their statuses
	create := func(resource string, obj map[string]any) {
		t.Helper()
		u := &unstructured.Unstructured{Object: obj}
		if _, err := dyn.Resource(metallbGVR(resource)).Namespace(ns).Create(t.Context(), u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", resource, err)
		}
		t.Cleanup(func() {
			_ = dyn.Resource(metallbGVR(resource)).Namespace(ns).Delete(context.Background(), u.GetName(), metav1.DeleteOptions{})
		})
	}
	create("ipaddresspools", map[string]any{"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
		"metadata": map[string]any{"name": "lab"}, "spec": map[string]any{"addresses": []any{"10.11.80.95-10.11.80.99"}}})
	create("l2advertisements", map[string]any{"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
		"metadata": map[string]any{"name": "lab"}, "spec": map[string]any{}})
	const svc = "metallb-web"
	ip := netip.MustParseAddr("10.11.80.95")
	implService(t, sc, svc, ip, map[string]string{"metallb.io/ip-allocated-from-pool": "lab"}, "")
	t.Cleanup(func() { deleteStatuses(t, dyn, ns) })
	syncLab(t, l)
	lbp := l.StartLBProbe(t, l.Router, diagnosisFlags...)
	nuc, opti1 := l.Node(seed.NodeNames[0]), l.Node(seed.NodeNames[1])

	t.Run("the speaker answers", func(t *testing.T) {
		scrapeUntil(t, lbp, func(e exposition) error {
			return errors.Join(e.check(implChecks(svc, ip, "metallb", nuc.Name, 1, diagnosis.CauseOK)), responders(e, svc, ip, nuc))
		})
		diagnose(t, l, scenarioNS+"/"+svc, diagnosis.CauseOK)
	})
	t.Run("the speaker silent", func(t *testing.T) {
		nuc.SetARP(false)
		defer nuc.SetARP(true)
		scrapeUntil(t, lbp, func(e exposition) error {
			return e.check(implChecks(svc, ip, "metallb", nuc.Name, 0, diagnosis.CauseHolderSilent))
		})
		diagnose(t, l, scenarioNS+"/"+svc, diagnosis.CauseHolderSilent, "restart the MetalLB speaker on "+nuc.Name)
	})
	t.Run("two answer", func(t *testing.T) {
		opti1.Announce(ip)
		defer opti1.Withdraw(ip)
		scrapeUntil(t, lbp, func(e exposition) error {
			return errors.Join(e.check(implChecks(svc, ip, "metallb", nuc.Name, 0, diagnosis.CauseSplitBrain)), responders(e, svc, ip, nuc, opti1))
		})
	})
	t.Run("nobody answers", func(t *testing.T) {
		// No L2Advertisement for the pool: MetalLB's speakers drop it.
		if err := dyn.Resource(metallbGVR("l2advertisements")).Namespace(ns).Delete(t.Context(), "lab", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		deleteStatuses(t, dyn, ns)
		syncLab(t, l)
		scrapeUntil(t, lbp, func(e exposition) error {
			return errors.Join(e.check(append(implChecks(svc, ip, "metallb", "", 0, diagnosis.CauseNoPolicy)[:1],
				verdict(svc, ip, diagnosis.CauseNoPolicy),
				expect{name: "loadbalancer_arp_reachable", labels: ipLabels(svc, ip).with("interface", lab.Interface), want: 0},
				expect{name: "loadbalancer_metallb_l2_advertisements", labels: labels{"namespace": scenarioNS, "service": svc, "pool": "lab"}, want: 0},
			)), responders(e, svc, ip))
		})
		diagnose(t, l, scenarioNS+"/"+svc, diagnosis.CauseNoPolicy, "no L2Advertisement announces the IPAddressPool lab")
	})
}

// deleteStatuses deletes every ServiceL2Status in ns.
func deleteStatuses(t *testing.T, dyn dynamic.Interface, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := dyn.Resource(metallbGVR("servicel2statuses")).Namespace(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Errorf("delete ServiceL2Statuses: %v", err)
	}
}

func testKubeVIP(t *testing.T) {
	sc, l := seededLabWith(t, lab.Options{Implementation: lab.ImplKubeVIP, Elect: true})
	if err := sc.Namespace(t.Context(), scenarioNS); err != nil {
		t.Fatal(err)
	}
	const svc = "kubevip-web"
	ip := netip.MustParseAddr("10.11.80.96")
	implService(t, sc, svc, ip, nil, "kube-vip.io/kube-vip-class")
	t.Cleanup(func() {
		_ = sc.Core.CoordinationV1().Leases(seed.CiliumNamespace).Delete(context.Background(), "kubevip-"+svc, metav1.DeleteOptions{})
	})
	syncLab(t, l)
	lbp := l.StartLBProbe(t, l.Router, diagnosisFlags...)
	nuc, opti1 := l.Node(seed.NodeNames[0]), l.Node(seed.NodeNames[1])

	t.Run("the lease holder answers", func(t *testing.T) {
		scrapeUntil(t, lbp, func(e exposition) error {
			return errors.Join(e.check(implChecks(svc, ip, "kube-vip", nuc.Name, 1, diagnosis.CauseOK)), responders(e, svc, ip, nuc))
		})
		got, err := sc.Core.CoreV1().Services(scenarioNS).Get(t.Context(), svc, metav1.GetOptions{})
		if err != nil || got.Annotations["kube-vip.io/vipHost"] != nuc.Name {
			t.Errorf("kube-vip.io/vipHost of %s: %v (%v), want %s", svc, got.Annotations, err, nuc.Name)
		}
		diagnose(t, l, scenarioNS+"/"+svc, diagnosis.CauseOK)
	})
	t.Run("the holder silent", func(t *testing.T) {
		nuc.SetARP(false)
		defer nuc.SetARP(true)
		scrapeUntil(t, lbp, func(e exposition) error {
			return e.check(implChecks(svc, ip, "kube-vip", nuc.Name, 0, diagnosis.CauseHolderSilent))
		})
		diagnose(t, l, scenarioNS+"/"+svc, diagnosis.CauseHolderSilent, "restart kube-vip on "+nuc.Name, "delete lease kubevip-"+svc)
	})
	t.Run("two answer", func(t *testing.T) {
		opti1.Announce(ip)
		defer opti1.Withdraw(ip)
		scrapeUntil(t, lbp, func(e exposition) error {
			return errors.Join(e.check(implChecks(svc, ip, "kube-vip", nuc.Name, 0, diagnosis.CauseSplitBrain)), responders(e, svc, ip, nuc, opti1))
		})
	})
	t.Run("nobody answers", func(t *testing.T) {
		// The holder stops renewing: its lease expires, nobody answers.
		nuc.SetRenew(false)
		defer nuc.SetRenew(true)
		scrapeUntil(t, lbp, func(e exposition) error {
			return errors.Join(e.check([]expect{
				{name: "loadbalancer_announcer_info", labels: labels{"namespace": scenarioNS, "service": svc, "implementation": "kube-vip", "node": ""}, want: 1},
				{name: "loadbalancer_arp_reachable", labels: ipLabels(svc, ip).with("interface", lab.Interface), want: 0},
				verdict(svc, ip, diagnosis.CauseLeaseExpired),
			}), responders(e, svc, ip))
		})
		diagnose(t, l, scenarioNS+"/"+svc, diagnosis.CauseLeaseExpired, "kubectl -n "+seed.CiliumNamespace+" delete lease kubevip-"+svc)
	})
}
