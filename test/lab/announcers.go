package lab

import (
	"context"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// The objects of the MetalLB and kube-vip stand-ins.
var (
	serviceL2StatusGVR = schema.GroupVersionResource{Group: "metallb.io", Version: "v1beta1", Resource: "servicel2statuses"}
	l2AdvertisementGVR = schema.GroupVersionResource{Group: "metallb.io", Version: "v1beta1", Resource: "l2advertisements"}
)

const (
	kubeVIPClass          = "kube-vip.io/kube-vip-class"
	kubeVIPHostAnnotation = "kube-vip.io/vipHost"
	metallbPoolAnnotation = "metallb.io/ip-allocated-from-pool"
)

// metallbSpeakers are the nodes of the Service's ServiceL2Statuses in the
// lease namespace, as MetalLB's speakers write them. With Elect, a Service
// that MetalLB gave an IP and that an L2Advertisement announces and that has
// no status gets one from the first renewing node.
func (c *cilium) metallbSpeakers(ctx context.Context, svc *corev1.Service) []string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	list, err := c.dynamic.Resource(serviceL2StatusGVR).Namespace(c.namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		c.logf("lab: metallb: list ServiceL2Statuses: %v", err)
		return nil
	}
	var nodes []string
	for _, u := range list.Items {
		ns, _, _ := unstructured.NestedString(u.Object, "status", "serviceNamespace")
		name, _, _ := unstructured.NestedString(u.Object, "status", "serviceName")
		node, _, _ := unstructured.NestedString(u.Object, "status", "node")
		if ns == svc.Namespace && name == svc.Name && node != "" && !slices.Contains(nodes, node) {
			nodes = append(nodes, node)
		}
	}
	if len(nodes) > 0 || !c.elect || svc.Annotations[metallbPoolAnnotation] == "" || !c.advertised(ctx) {
		return nodes
	}
	speaker := c.firstRenewing()
	if speaker == nil {
		return nil
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "metallb.io/v1beta1", "kind": "ServiceL2Status",
		"metadata": map[string]any{"generateName": "l2-", "namespace": c.namespace},
	}}
	created, err := c.dynamic.Resource(serviceL2StatusGVR).Namespace(c.namespace).Create(ctx, u, metav1.CreateOptions{})
	if err != nil {
		c.logf("lab: metallb: ServiceL2Status of %s/%s: %v", svc.Namespace, svc.Name, err)
		return nil
	}
	created.Object["status"] = map[string]any{"node": speaker.Name, "serviceNamespace": svc.Namespace, "serviceName": svc.Name}
	if _, err := c.dynamic.Resource(serviceL2StatusGVR).Namespace(c.namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		c.logf("lab: metallb: status of %s: %v", created.GetName(), err)
		return nil
	}
	c.logf("lab: metallb: the speaker on %s announces %s/%s (%s)", speaker.Name, svc.Namespace, svc.Name, created.GetName())
	return []string{speaker.Name}
}

// advertised: at least one L2Advertisement exists (the lab's announce
// every pool from every node).
func (c *cilium) advertised(ctx context.Context) bool {
	list, err := c.dynamic.Resource(l2AdvertisementGVR).List(ctx, metav1.ListOptions{})
	return err == nil && len(list.Items) > 0
}

// setVIPHost writes kube-vip.io/vipHost on the Service, as kube-vip does
// when it takes the VIP.
func (c *cilium) setVIPHost(ctx context.Context, svc *corev1.Service, node string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	patch := []byte(`{"metadata":{"annotations":{"` + kubeVIPHostAnnotation + `":"` + node + `"}}}`)
	if _, err := c.client.CoreV1().Services(svc.Namespace).Patch(ctx, svc.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
		c.logf("lab: kube-vip: vipHost of %s/%s: %v", svc.Namespace, svc.Name, err)
	}
}
