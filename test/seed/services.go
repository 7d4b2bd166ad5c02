package seed

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Service creates a LoadBalancer Service (selector-less: nothing runs here).
func (c *Cluster) Service(ctx context.Context, ns, name string, labels, annotations map[string]string, ports []corev1.ServicePort) error {
	for i := range ports {
		ports[i].TargetPort = intstr.FromInt32(ports[i].Port)
	}
	_, err := c.Core.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, Annotations: annotations},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: ports},
	}, metav1.CreateOptions{})
	return ignoreExists(err, "service "+ns+"/"+name)
}

// SetServiceIP writes the Service's ingress IP, as LB-IPAM would; an
// invalid ip clears it.
func (c *Cluster) SetServiceIP(ctx context.Context, ns, name string, ip netip.Addr) error {
	svc, err := c.Core.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return wrap(err, "service "+ns+"/"+name)
	}
	svc.Status.LoadBalancer.Ingress = nil
	if ip.IsValid() {
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip.String()}}
	}
	_, err = c.Core.CoreV1().Services(ns).UpdateStatus(ctx, svc, metav1.UpdateOptions{})
	return wrap(err, "service status "+ns+"/"+name)
}

// RequestAnnotation is the annotation the seed pins k8s_gateway's IP with
// (the older alias of lbipam.cilium.io/ips, which Cilium still reads).
const RequestAnnotation = "io.cilium/lb-ipam-ips"

// IPAMConditionType is the Service condition through which Cilium's LB-IPAM
// (the version that reads RequestAnnotation) says whether the IPs requested
// were given.
const IPAMConditionType = "io.cilium/lb-ipam-request-satisfied"

// SetIPAMCondition writes the LB-IPAM request condition of a Service with
// reason (e.g. "satisfied", "already_allocated"), as Cilium's operator does.
func (c *Cluster) SetIPAMCondition(ctx context.Context, ns, name string, satisfied bool, reason string) error {
	svc, err := c.Core.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return wrap(err, "service "+ns+"/"+name)
	}
	status := metav1.ConditionFalse
	if satisfied {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&svc.Status.Conditions, metav1.Condition{
		Type: IPAMConditionType, Status: status, Reason: reason, ObservedGeneration: svc.Generation,
		LastTransitionTime: metav1.NewTime(c.Now()),
	})
	_, err = c.Core.CoreV1().Services(ns).UpdateStatus(ctx, svc, metav1.UpdateOptions{})
	return wrap(err, "service status "+ns+"/"+name)
}

// ClusterIPService creates a selector-less ClusterIP Service, such as a
// route's backend.
func (c *Cluster) ClusterIPService(ctx context.Context, ns, name string, ports []corev1.ServicePort) error {
	_, err := c.Core.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: ports},
	}, metav1.CreateOptions{})
	return ignoreExists(err, "service "+ns+"/"+name)
}

// EndpointSlice writes the EndpointSlice of the Service ns/name with one
// endpoint per entry of ready, pod addresses 10.42.x.y (data only, never
// probed). A Gateway's Service gets Cilium's placeholder instead,
// 192.192.192.192:9999.
func (c *Cluster) EndpointSlice(ctx context.Context, ns, name string, ready ...bool) error {
	svc, err := c.Core.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return wrap(err, "service "+ns+"/"+name)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: name + "-seed", Namespace: ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "seed"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, p := range svc.Spec.Ports {
		slice.Ports = append(slice.Ports, discoveryv1.EndpointPort{Name: ptr.To(p.Name), Port: ptr.To(p.TargetPort.IntVal), Protocol: ptr.To(p.Protocol)})
	}
	_, placeholder := svc.Labels["io.cilium.gateway/owning-gateway"]
	if placeholder {
		slice.Ports = []discoveryv1.EndpointPort{{Port: ptr.To[int32](9999)}}
	}
	for i, r := range ready {
		addr := fmt.Sprintf("10.42.%d.%d", len(ns)%200, 10+i)
		if placeholder {
			addr = "192.192.192.192"
		}
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{addr},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(r)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: fmt.Sprintf("%s-%d", name, i)},
		})
	}
	if placeholder {
		slice.Endpoints[0].TargetRef = nil
	}
	_, err = c.Core.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{})
	return ignoreExists(err, "endpointslice "+ns+"/"+slice.Name)
}

// LeaseName is the name of Cilium's L2 announcement lease for a Service.
func LeaseName(svcNS, svc string) string { return "cilium-l2announce-" + svcNS + "-" + svc }

// Lease writes (creates or replaces) the L2 announcement lease of a Service.
func (c *Cluster) Lease(ctx context.Context, svcNS, svc, holder string, acquired, renewed time.Time, durationSeconds, transitions int32) error {
	name := LeaseName(svcNS, svc)
	spec := coordinationv1.LeaseSpec{
		HolderIdentity:       &holder,
		LeaseDurationSeconds: &durationSeconds,
		AcquireTime:          &metav1.MicroTime{Time: acquired},
		RenewTime:            &metav1.MicroTime{Time: renewed},
		LeaseTransitions:     &transitions,
	}
	leases := c.Core.CoordinationV1().Leases(CiliumNamespace)
	existing, err := leases.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: CiliumNamespace}, Spec: spec}, metav1.CreateOptions{})
		return wrap(err, "lease "+name)
	}
	if err != nil {
		return wrap(err, "lease "+name)
	}
	existing.Spec = spec
	_, err = leases.Update(ctx, existing, metav1.UpdateOptions{})
	return wrap(err, "lease "+name)
}

// DeleteLease removes a Service's L2 lease.
func (c *Cluster) DeleteLease(ctx context.Context, svcNS, svc string) error {
	err := c.Core.CoordinationV1().Leases(CiliumNamespace).Delete(ctx, LeaseName(svcNS, svc), metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return wrap(err, "deleting lease "+LeaseName(svcNS, svc))
}
