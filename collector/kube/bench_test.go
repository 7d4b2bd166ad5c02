package kube

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// benchSeed is 1,000 LoadBalancer Services (each with a lease), 10
// Gateways and 200 HTTPRoutes, plus the policies and pool of the realistic
// seed.
func benchSeed() seed {
	s := realisticSeed()
	s.kube = nil
	s.gateway = nil
	for i := range 1000 {
		ns := fmt.Sprintf("ns-%02d", i%50)
		name := fmt.Sprintf("svc-%04d", i)
		svc := lbService(ns, name, fmt.Sprintf("10.%d.%d.%d", 20+i/65536, (i/256)%256, i%256))
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP})
		s.kube = append(s.kube, svc,
			lease("kube-system", LeaseName(ns, name), fmt.Sprintf("node-%d", i%5), time.Hour, time.Duration(i%30)*time.Second, 15, 1))
	}
	for i := range 5 {
		s.kube = append(s.kube, readyNode(fmt.Sprintf("node-%d", i), true))
	}
	for i := range 10 {
		s.gateway = append(s.gateway, gateway("infra", fmt.Sprintf("gw-%d", i), []string{fmt.Sprintf("10.11.80.%d", 100+i)},
			listener("http", 80, gwv1.HTTPProtocolType, ""),
			listener("https", 443, gwv1.HTTPSProtocolType, "*.sbbh.cloud")))
	}
	for i := range 200 {
		s.gateway = append(s.gateway, httpRoute(fmt.Sprintf("ns-%02d", i%50), fmt.Sprintf("route-%03d", i),
			[]string{fmt.Sprintf("app-%03d.sbbh.cloud", i), fmt.Sprintf("app-%03d.other.example", i%150)},
			parentRef("infra", fmt.Sprintf("gw-%d", i%10))))
	}
	return s
}

func startBench(b *testing.B) *Discovery {
	return startFake(b, fakeClients(benchSeed()), Options{})
}

func BenchmarkTargets(b *testing.B) {
	d := startBench(b)
	t := d.Targets()
	b.ReportMetric(float64(len(t.LoadBalancers)), "loadbalancers")
	b.ReportMetric(float64(len(t.Hostnames)), "hostnames")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		_ = d.Targets()
	}
}

func BenchmarkCollect(b *testing.B) {
	d := startBench(b)
	ch := make(chan prometheus.Metric, 32768)
	d.Collect(ch)
	b.ReportMetric(float64(len(ch)), "series")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for len(ch) > 0 {
			<-ch
		}
		d.Collect(ch)
	}
}
