//go:build linux

package kubecluster

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkStart measures Start with every CRD lbprobe reads, the memory the servers hold once
// started, and Stop. Run it with -benchtime=Nx: every iteration starts a cluster.
func BenchmarkStart(b *testing.B) {
	dirs, err := CRDDirs()
	if err != nil {
		b.Fatal(err)
	}
	// A first build of the binaries is no part of the measurement.
	for _, name := range []string{"etcd", "kube-apiserver"} {
		if _, err := Binary(b.Context(), name); err != nil {
			b.Fatal(err)
		}
	}
	var start, stop time.Duration
	rss := map[string]int64{}
	for b.Loop() {
		ctx, cancel := context.WithTimeout(b.Context(), 2*time.Minute)
		begin := time.Now()
		c, err := Start(ctx, Options{CRDDirs: dirs})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		start += time.Since(begin)
		for name, kB := range childRSS(b) {
			rss[name] += kB
		}
		begin = time.Now()
		c.Stop()
		stop += time.Since(begin)
	}
	n := float64(b.N)
	b.ReportMetric(start.Seconds()/n, "start-s/op")
	b.ReportMetric(stop.Seconds()/n, "stop-s/op")
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if rss[name] == 0 {
			b.Errorf("no %s child process found", name)
		}
		b.ReportMetric(float64(rss[name])/n/1024, name+"-RSS-MB")
	}
}

// childRSS returns the resident memory in kB of this process's children, by command name.
func childRSS(tb testing.TB) map[string]int64 {
	tb.Helper()
	out := map[string]int64{}
	for pid, name := range childProcesses(tb, os.Getpid()) {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue // exited meanwhile
		}
		for line := range strings.Lines(string(status)) {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kB, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				out[name] += kB
			}
		}
	}
	return out
}
