package kube

// Who should announce a Service, for MetalLB and kube-vip, against the real
// kube-apiserver with MetalLB's CRDs (test/crds/metallb).

import (
	"context"
	"fmt"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
)

func metallbGVR(resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "metallb.io", Version: "v1beta1", Resource: resource}
}

func createReadyNode(t *testing.T, cl testClients, name string) {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"lbprobe-test": name}}}
	n, err := cl.kube.CoreV1().Nodes().Create(t.Context(), n, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.kube.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if _, err := cl.kube.CoreV1().Nodes().UpdateStatus(t.Context(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createUnstructured(t *testing.T, cl testClients, resource, ns string, obj map[string]any, status map[string]any) {
	t.Helper()
	u := &unstructured.Unstructured{Object: obj}
	u.SetNamespace(ns)
	created, err := cl.dyn.Resource(metallbGVR(resource)).Namespace(ns).Create(t.Context(), u, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating %s %s: %v", resource, u.GetName(), err)
	}
	if status != nil {
		created.Object["status"] = status
		if _, err := cl.dyn.Resource(metallbGVR(resource)).Namespace(ns).UpdateStatus(t.Context(), created, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("status of %s %s: %v", resource, u.GetName(), err)
		}
	}
}

func TestIntegrationMetalLBAnnouncer(t *testing.T) {
	c := cluster(t)
	cl := newTestClients(t, c.RESTConfig())
	ns := c.Namespace(t)
	speaker := ns + "-speaker"
	createReadyNode(t, cl, speaker)
	svc := createLB(t, cl.kube, ns, "web", nil)
	svc.Annotations = map[string]string{annotationMetalLBPool: "lan"}
	svc, err := cl.kube.CoreV1().Services(ns).Update(t.Context(), svc, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setIngress(t, cl.kube, svc, "10.11.80.184")
	setIngress(t, cl.kube, createLB(t, cl.kube, ns, "cilium-lb", nil), "10.11.80.183")
	// A live Cilium lease of the MetalLB Service, left from before MetalLB
	// took it: neither its holder nor Cilium's series describe it.
	now := metav1.NewMicroTime(time.Now())
	leftover := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cilium-l2announce-" + ns + "-web"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(ns + "-cilium-node"), LeaseDurationSeconds: ptr.To(int32(3600)), AcquireTime: &now, RenewTime: &now}}
	if _, err := cl.kube.CoordinationV1().Leases(ns).Create(t.Context(), leftover, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createUnstructured(t, cl, ResourceMetalLBPools, ns, map[string]any{
		"apiVersion": metallbGroupVersion, "kind": "IPAddressPool",
		"metadata": map[string]any{"name": "lan", "labels": map[string]any{"zone": "lan"}},
		"spec":     map[string]any{"addresses": []any{"10.11.80.184-10.11.80.189"}},
	}, map[string]any{"assignedIPv4": int64(1), "availableIPv4": int64(5), "assignedIPv6": int64(0), "availableIPv6": int64(0)})
	d, reg := startReal(t, c.RESTConfig(), Options{CiliumNamespace: ns})
	labels := []string{"namespace", ns, "service", "web"}

	// No L2Advertisement selects the pool, no speaker announces.
	eventually(t, 10*time.Second, "MetalLB, nobody announces", wantValue(t, reg, 1, "loadbalancer_announcer_info", append(labels, "implementation", "metallb", "node", "")...))
	eventually(t, 10*time.Second, "no advertisement", wantValue(t, reg, 0, "loadbalancer_metallb_l2_advertisements", append(labels, "pool", "lan")...))
	eventually(t, 10*time.Second, "the pool's usage", wantValue(t, reg, 5, "loadbalancer_metallb_pool_ips", "namespace", ns, "pool", "lan", "state", "available"))

	// An advertisement by pool selector, and the speaker's status.
	createUnstructured(t, cl, ResourceL2Advertisements, ns, map[string]any{
		"apiVersion": metallbGroupVersion, "kind": "L2Advertisement", "metadata": map[string]any{"name": "lan"},
		"spec": map[string]any{"ipAddressPoolSelectors": []any{map[string]any{"matchLabels": map[string]any{"zone": "lan"}}},
			"nodeSelectors": []any{map[string]any{"matchLabels": map[string]any{"lbprobe-test": speaker}}}},
	}, nil)
	createUnstructured(t, cl, ResourceServiceL2Statuses, ns, map[string]any{
		"apiVersion": metallbGroupVersion, "kind": "ServiceL2Status", "metadata": map[string]any{"name": "l2-abcde"},
	}, map[string]any{"node": speaker, "serviceName": "web", "serviceNamespace": ns})
	eventually(t, 10*time.Second, "advertised", wantValue(t, reg, 1, "loadbalancer_metallb_l2_advertisements", append(labels, "pool", "lan")...))
	eventually(t, 10*time.Second, "the speaker announces", wantValue(t, reg, 1, "loadbalancer_announcer_info", append(labels, "implementation", "metallb", "node", speaker)...))
	// Cilium's policy CRD is served here too: its series describe the
	// Cilium Service, never MetalLB's (LoadBalancerNoL2Policy would page).
	eventually(t, 10*time.Second, "Cilium's Service has its policy count", func() error {
		if _, ok := value(t, reg, "loadbalancer_l2_policies", "namespace", ns, "service", "cilium-lb"); !ok {
			return fmt.Errorf("loadbalancer_l2_policies of %s/cilium-lb absent", ns)
		}
		return nil
	})
	for _, name := range []string{"loadbalancer_l2_policies", "loadbalancer_l2_announced"} {
		if err := wantAbsent(t, reg, name, labels...)(); err != nil {
			t.Error(err)
		}
	}
	eventually(t, 10*time.Second, "the speaker is the target's holder", func() error {
		if lb := findLB(d.Targets(), ns, "web"); lb == nil || lb.Holder != speaker {
			return fmt.Errorf("target holder %v, want %s", lb, speaker)
		}
		return nil
	})
	var st *ServiceState
	for _, s := range d.ServiceStates() {
		if s.Namespace == ns && s.Name == "web" {
			st = &s
		}
	}
	switch {
	case st == nil || st.Announcer == nil || st.MetalLB == nil:
		t.Fatalf("state of %s/web: %+v", ns, st)
	case st.Announcer.Node != speaker || !st.Announcer.NodeReady || st.Announcer.Source != "servicel2status "+ns+"/l2-abcde":
		t.Errorf("announcer %+v, want %s (Ready) from servicel2status %s/l2-abcde", st.Announcer, speaker, ns)
	case st.MetalLB.AdvertisedNodes != 1 || len(st.MetalLB.Advertisements) != 1 || st.MetalLB.Pool != "lan":
		t.Errorf("MetalLB state %+v, want pool lan announced by %s/lan from 1 node", st.MetalLB, ns)
	}
}

func TestIntegrationKubeVIPAnnouncer(t *testing.T) {
	c := cluster(t)
	cl := newTestClients(t, c.RESTConfig())
	ns := c.Namespace(t)
	node, other := ns+"-a", ns+"-b"
	createReadyNode(t, cl, node)
	createReadyNode(t, cl, other)
	svc := createLB(t, cl.kube, ns, "web", nil)
	svc.Annotations = map[string]string{annotationKubeVIPHost: node, annotationKubeVIPHWAddr: "02:00:00:09:7f:3f"}
	svc, err := cl.kube.CoreV1().Services(ns).Update(t.Context(), svc, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setIngress(t, cl.kube, svc, "10.11.80.185")
	d, reg := startReal(t, c.RESTConfig(), Options{CiliumNamespace: ns})
	labels := []string{"namespace", ns, "service", "web", "implementation", "kube-vip"}

	eventually(t, 10*time.Second, "vipHost", wantValue(t, reg, 1, "loadbalancer_announcer_info", append(labels, "node", node)...))
	eventually(t, 10*time.Second, "the MAC kube-vip names", func() error {
		lb := findLB(d.Targets(), ns, "web")
		if lb == nil || lb.Holder != node || lb.HolderMAC.String() != "02:00:00:09:7f:3f" {
			return fmt.Errorf("target %+v, want holder %s with MAC 02:00:00:09:7f:3f", lb, node)
		}
		return nil
	})

	// Without service election, the leader of plndr-svcs-lock announces it.
	now := metav1.NewMicroTime(time.Now())
	shared := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "plndr-svcs-lock"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(other), LeaseDurationSeconds: ptr.To(int32(15)), AcquireTime: &now, RenewTime: &now}}
	if _, err := cl.kube.CoordinationV1().Leases(ns).Create(t.Context(), shared, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the shared lease's holder", wantValue(t, reg, 1, "loadbalancer_announcer_info", append(labels, "node", other)...))

	// With service election, the lease kubevip-web decides.
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kubevip-web"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(node), LeaseDurationSeconds: ptr.To(int32(15)), AcquireTime: &now, RenewTime: &now}}
	if _, err := cl.kube.CoordinationV1().Leases(ns).Create(t.Context(), lease, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the Service's own lease", wantValue(t, reg, 1, "loadbalancer_announcer_info", append(labels, "node", node)...))

	// A Service of the same name in another namespace, without kube-vip's
	// class or annotations, is not kube-vip's: kubevip-web is not its lease.
	other2 := c.Namespace(t)
	setIngress(t, cl.kube, createLB(t, cl.kube, other2, "web", nil), "10.11.80.186")
	eventually(t, 10*time.Second, "a namesake stays Cilium's", wantValue(t, reg, 1, "loadbalancer_announcer_info",
		"namespace", other2, "service", "web", "implementation", "cilium", "node", ""))
}
