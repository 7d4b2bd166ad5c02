package kube

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FuzzServiceAnnotations: whatever a Service's annotations, ingress and
// port names say, turning it into targets and series neither panics nor
// makes an invalid series (prometheus.MustNewConstMetric panics on one).
func FuzzServiceAnnotations(f *testing.F) {
	f.Add("app.sbbh.cloud", "10.11.80.82", "true", "10.11.80.82", "dns", "10.11.80.82")
	f.Add("App.SBBH.cloud.", " 10.11.80.82, fd00::1 ,x", "yes", "", "dns-tcp", "fe80::1%eth0")
	f.Add("\xff", "\xff", "\xff", "\xff", "\xff", "\xff")
	f.Fuzz(func(t *testing.T, hostname, ips, flag, loadBalancerIP, portName, ingress string) {
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "svc", Annotations: map[string]string{
				"coredns.io/hostname":  hostname,
				annotationLBIPAMIPs:    ips,
				annotationLBIPAMIPsOld: ips,
				AnnotationICMP:         flag,
				AnnotationIgnore:       flag,
			}},
			Spec: corev1.ServiceSpec{
				Type:           corev1.ServiceTypeLoadBalancer,
				LoadBalancerIP: loadBalancerIP,
				Ports: []corev1.ServicePort{
					{Name: portName, Port: 53, Protocol: corev1.ProtocolUDP},
					{Name: portName, Port: 53, Protocol: corev1.ProtocolTCP},
				},
			},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: ingress}, {Hostname: hostname}}}},
		}
		loadBalancerTarget(s)
		services := []*corev1.Service{s}
		serviceHostnames(services, "sbbh.cloud", dnsServers(services))
		ch := make(chan prometheus.Metric, 64)
		go func() {
			defer close(ch)
			collectIPAM(ch, s, ingressIPs(s))
		}()
		for m := range ch {
			if err := m.Write(&dto.Metric{}); err != nil {
				t.Fatalf("invalid series: %v", err)
			}
		}
	})
}
