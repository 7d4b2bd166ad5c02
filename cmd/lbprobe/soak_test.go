package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lbprobe/lbprobe/test/lbprobebin"
	"github.com/lbprobe/lbprobe/test/targets"
)

// processStats is what the soak benchmark watches in lbprobe's process.
type processStats struct {
	goroutines int
	fds        int
	rssKiB     int
	heapInUse  float64 // bytes, go_memstats_heap_inuse_bytes
}

func (s processStats) String() string {
	return fmt.Sprintf("goroutines %d, FDs %d, RSS %.1f MiB, heap in use %.1f MiB", s.goroutines, s.fds, float64(s.rssKiB)/1024, s.heapInUse/(1<<20))
}

// readStats reads lbprobe's open files and RSS from /proc and its
// goroutines from go_goroutines of a scrape on a connection of its own.
func readStats(ctx context.Context, pid int, base string) (processStats, error) {
	var st processStats
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return st, err
	}
	st.fds = len(fds)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			st.rssKiB, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return st, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			st.goroutines, _ = strconv.Atoi(v)
		}
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			st.heapInUse, _ = strconv.ParseFloat(v, 64)
		}
	}
	return st, sc.Err()
}

// BenchmarkSoak: 1,000 scrapes from 200 keep-alive clients against the
// lbprobe binary over 100 loopback load balancers (80 answering, 20
// refusing). Goroutines, FDs and RSS of the process are reported before,
// at the busiest moment and after the clients have gone; the goroutines and
// FDs must come back to the baseline.
func BenchmarkSoak(b *testing.B) {
	const (
		clients = 200
		scrapes = 1000
		lbs     = 100
	)
	ctx := b.Context()
	var cfg strings.Builder
	cfg.WriteString("probe:\n  timeout: 2s\nstatic:\n  loadbalancers:\n")
	for i := range lbs {
		var ap string
		if i < 80 {
			a, err := targets.TCP(ctx, "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			ap = a.String()
		} else {
			a, err := targets.ClosedTCP(ctx, "127.0.0.1")
			if err != nil {
				b.Fatal(err)
			}
			ap = a.String()
		}
		host, port, _ := strings.Cut(ap, ":")
		fmt.Fprintf(&cfg, "    - {namespace: soak, service: lb%d, ips: [%s], ports: [{port: %s, protocol: TCP}]}\n", i, host, port)
	}
	path := filepath.Join(b.TempDir(), "soak.yml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	p := lbprobebin.Start(b, lbprobebin.StartOptions{Args: []string{
		"--web.listen-address=127.0.0.1:0", "--kube.enabled=false", "--config.file=" + path,
	}})
	addr, err := p.ListenAddress(ctx, 10*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	base := "http://" + addr
	if err := p.WaitReady(ctx, http.DefaultClient, base+"/-/ready", 10*time.Second); err != nil {
		b.Fatal(err)
	}
	before, err := readStats(ctx, p.Pid(), base)
	if err != nil {
		b.Fatal(err)
	}

	b.ResetTimer()
	var during processStats
	for range b.N {
		transport := &http.Transport{MaxIdleConnsPerHost: clients}
		client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
		var next, failed atomic.Int64
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				for next.Add(1) <= scrapes {
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
					req.Header.Set(scrapeTimeoutHeader, "5")
					resp, err := client.Do(req)
					if err != nil {
						failed.Add(1)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						failed.Add(1)
					}
				}
			})
		}
		// Sample while every client holds a connection.
		time.Sleep(200 * time.Millisecond)
		if s, err := readStats(ctx, p.Pid(), base); err == nil {
			during = s
		}
		wg.Wait()
		transport.CloseIdleConnections()
		if n := failed.Load(); n > 0 {
			b.Errorf("%d of %d scrapes failed", n, scrapes)
		}
	}
	b.StopTimer()

	// The server sees the clients' connections close a moment later.
	var after processStats
	deadline := time.Now().Add(10 * time.Second)
	for {
		if after, err = readStats(ctx, p.Pid(), base); err != nil {
			b.Fatal(err)
		}
		if (after.goroutines <= before.goroutines+2 && after.fds <= before.fds+1) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Logf("%d scrapes from %d clients over %d load balancers\n  before: %v\n  during: %v\n  after:  %v", scrapes, clients, lbs, before, during, after)
	b.ReportMetric(float64(during.goroutines), "goroutines-during")
	b.ReportMetric(float64(after.goroutines-before.goroutines), "goroutines-left")
	b.ReportMetric(float64(after.fds-before.fds), "fds-left")
	b.ReportMetric(float64(during.rssKiB)/1024, "MiB-rss-during")
	b.ReportMetric(float64(after.rssKiB)/1024, "MiB-rss-after")
	if after.goroutines > before.goroutines+2 || after.fds > before.fds+1 {
		b.Errorf("lbprobe did not come back to its baseline: before %v, after %v", before, after)
	}
}
