package collector

import (
	"fmt"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/lbprobe/lbprobe/test/targets"
)

// BenchmarkRoundTCP measures one round of real TCP probes over n loopback
// listeners, each on its own 127.x address. It reports the CPU time (user +
// system, of the whole process: probes and the listeners that accept them)
// and the allocations per probe.
func BenchmarkRoundTCP(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("targets=%d", n), func(b *testing.B) {
			t := Targets{}
			for i := range n {
				addr := fmt.Sprintf("127.1.%d.%d:0", i/250, i%250+1)
				ap, err := targets.TCP(b.Context(), addr)
				if err != nil {
					b.Fatal(err)
				}
				t.LoadBalancers = append(t.LoadBalancers, LoadBalancer{
					Namespace: "bench", Service: fmt.Sprintf("svc-%d", i),
					IPs:   []netip.Addr{ap.Addr()},
					Ports: []Port{{Port: ap.Port(), Protocol: "TCP", Probe: ProbeTCP}},
				})
			}
			e := NewEngine(Config{Concurrency: 128, Options: Options{ProbeTimeout: 5 * time.Second}}, SourceFunc(func() Targets { return t }))
			before := cpuTime(b)
			var m0 runtime.MemStats
			runtime.ReadMemStats(&m0)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				r := e.Probe(b.Context(), time.Minute)
				if failed := len(r.Jobs) - r.ProbeCounts()[[2]string{"tcp", "success"}]; failed != 0 {
					b.Fatalf("%d of %d probes failed: %v", failed, len(r.Jobs), r.ProbeCounts())
				}
			}
			b.StopTimer()
			var m1 runtime.MemStats
			runtime.ReadMemStats(&m1)
			probes := float64(b.N * n)
			b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/probes, "allocs/probe")
			b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/probes, "B/probe")
			b.ReportMetric(float64((cpuTime(b)-before).Microseconds())/probes, "cpu-µs/probe")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/probes, "wall-µs/probe")
		})
	}
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
