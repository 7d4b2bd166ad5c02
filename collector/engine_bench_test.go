package collector

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
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

// BenchmarkRoundBlackholed is issue 15's measurement: rounds of 10,000
// TCP targets on loopback, 10 % of them black-holed (a full accept queue:
// SYNs dropped), a 3 s probe timeout, a 10 s scrape, with the old default
// concurrency (128) and with --probe.concurrency=0's. The listeners run in
// a child process (TestBlackholedTargetsServer), so that the peak RSS and
// the CPU are the prober's alone. It reports the wall time of the first
// round and of the next (which starts the last round's slow probes first)
// against the probe timeout (goal: at most 1.1), the probes that never
// started, the CPU and allocations per probe against a bare connect+close
// loop measured in the same run (goal: at most 1.5), peak RSS (goal: at
// most 100 MiB) and the goroutines left after the rounds.
func BenchmarkRoundBlackholed(b *testing.B) {
	const n = 10000
	addrs, blackholed := blackholedTargets(b, n)
	t := Targets{}
	var live []netip.AddrPort
	for i, ap := range addrs {
		if !blackholed[i] {
			live = append(live, ap)
		}
		t.LoadBalancers = append(t.LoadBalancers, LoadBalancer{
			Namespace: "bench", Service: fmt.Sprintf("svc-%d", i),
			IPs:   []netip.Addr{ap.Addr()},
			Ports: []Port{{Port: ap.Port(), Protocol: "TCP", Probe: ProbeTCP}},
		})
	}
	floor := dialFloor(b, live[:2000])
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	auto := AutoConcurrency(lim.Cur, 1024)
	for _, c := range []struct {
		name string
		n    int
	}{{"concurrency=128", 128}, {fmt.Sprintf("concurrency=auto(%d)", auto), auto}} {
		b.Run(c.name, func(b *testing.B) { roundBlackholed(b, t, c.n, floor) })
	}
}

// blackholedTargets runs the listeners of BenchmarkRoundBlackholed in a
// child process and returns their addresses; blackholed[i] is true for a
// black hole. The child ends with the benchmark.
func blackholedTargets(b *testing.B, n int) (addrs []netip.AddrPort, blackholed []bool) {
	b.Helper()
	cmd := exec.CommandContext(b.Context(), os.Args[0], "-test.run=^TestBlackholedTargetsServer$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", blackholedServerEnv, n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe() // closed when the benchmark ends: the child exits
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		kind, addr, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue // the test binary's own output
		}
		ap, err := netip.ParseAddrPort(addr)
		if err != nil || (kind != "live" && kind != "blackholed") {
			continue
		}
		addrs = append(addrs, ap)
		blackholed = append(blackholed, kind == "blackholed")
		if len(addrs) == n {
			return addrs, blackholed
		}
	}
	b.Fatalf("the listeners' process gave %d of %d addresses: %v", len(addrs), n, sc.Err())
	return nil, nil
}

const blackholedServerEnv = "LBPROBE_BENCH_BLACKHOLED_TARGETS"

// TestBlackholedTargetsServer is the child process of
// BenchmarkRoundBlackholed (it does nothing in a plain test run): n
// loopback listeners, one in ten a black hole, each printed as
// "live|blackholed ip:port", kept until stdin closes.
func TestBlackholedTargetsServer(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv(blackholedServerEnv))
	if err != nil {
		return // not the benchmark's child
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make([]netip.AddrPort, n)
	errs := make([]error, n)
	// Created 64 at a time (filling a black hole's queue waits for one
	// connect to time out).
	var wg sync.WaitGroup
	slots := make(chan struct{}, 64)
	for i := range n {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			ip := fmt.Sprintf("127.2.%d.%d", i/250, i%250+1)
			if i%10 == 0 {
				addrs[i], errs[i] = targets.BlackholedTCP(ctx, ip)
			} else {
				addrs[i], errs[i] = targets.TCP(ctx, ip+":0")
			}
		})
	}
	wg.Wait()
	out := bufio.NewWriter(os.Stdout)
	for i, ap := range addrs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		kind := "live"
		if i%10 == 0 {
			kind = "blackholed"
		}
		fmt.Fprintf(out, "%s %s\n", kind, ap)
	}
	out.Flush()
	_, _ = io.Copy(io.Discard, os.Stdin)
}

func roundBlackholed(b *testing.B, t Targets, concurrency int, floor float64) {
	const (
		blackholedShare = 0.1
		probeTimeout    = 3 * time.Second
		scrape          = 10 * time.Second
	)
	n := len(t.LoadBalancers)
	baseline := runtime.NumGoroutine()
	e := NewEngine(Config{Concurrency: concurrency, Options: Options{ProbeTimeout: probeTimeout}}, SourceFunc(func() Targets { return t }))
	var wall, cpu time.Duration
	var started, notStarted, rounds int
	var mallocs, bytes uint64
	probeRound := func() time.Duration {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		before, begin := cpuTime(b), time.Now()
		r := e.Probe(b.Context(), scrape)
		took := time.Since(begin)
		cpu += cpuTime(b) - before
		runtime.ReadMemStats(&m1)
		mallocs += m1.Mallocs - m0.Mallocs
		bytes += m1.TotalAlloc - m0.TotalAlloc
		ns := r.NotStarted()
		notStarted += ns
		started += len(r.Jobs) - ns
		waitIdle(b, e) // the round has handed its slow probes to the next
		return took
	}
	first := probeRound()
	b.ResetTimer()
	for b.Loop() {
		wall += probeRound()
		rounds++
	}
	b.StopTimer()
	time.Sleep(probeTimeout) // the probes cut off by the deadline end
	perProbe := float64(cpu.Microseconds()) / float64(max(started, 1))
	b.ReportMetric(float64(n), "targets")
	b.ReportMetric(blackholedShare, "blackholed")
	b.ReportMetric(first.Seconds(), "first-wall-s/round")
	b.ReportMetric(wall.Seconds()/float64(rounds), "wall-s/round")
	b.ReportMetric(wall.Seconds()/float64(rounds)/probeTimeout.Seconds(), "wall/probe-timeout")
	b.ReportMetric(float64(notStarted)/float64(rounds+1), "not_started/round")
	b.ReportMetric(perProbe, "cpu-µs/probe")
	b.ReportMetric(floor, "floor-cpu-µs/connect")
	b.ReportMetric(perProbe/floor, "cpu/floor")
	b.ReportMetric(float64(mallocs)/float64(max(started, 1)), "allocs/probe")
	b.ReportMetric(float64(bytes)/float64(max(started, 1)), "B/probe")
	rss := peakRSSMiB(b)
	b.ReportMetric(rss, "peak-RSS-MiB")
	b.ReportMetric(rss/100, "peak-RSS/100MiB")
	b.ReportMetric(float64(runtime.NumGoroutine()-baseline), "goroutines-left")
}

// dialFloor is the CPU of a bare net.Dialer connect and close, in µs, over
// addrs (the same listeners as the round's).
func dialFloor(b *testing.B, addrs []netip.AddrPort) float64 {
	b.Helper()
	var d net.Dialer
	before := cpuTime(b)
	for _, ap := range addrs {
		c, err := d.DialContext(b.Context(), "tcp", ap.String())
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	return float64((cpuTime(b) - before).Microseconds()) / float64(len(addrs))
}

// peakRSSMiB reads VmHWM, this process's peak resident set.
func peakRSSMiB(b *testing.B) float64 {
	b.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				b.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmHWM in /proc/self/status")
	return 0
}
