// Command demotargets starts the loopback peers that examples/static.yml
// probes, so that `make run` shows healthy and failing series at once:
//
//	127.0.0.1:18080/tcp   open           (lab/web: reachable)
//	127.0.0.1:18081/tcp   closed         (lab/web: one port refused)
//	127.0.0.1:15353       DNS, UDP + TCP (lab/k8s-gateway and the DNS server of the hostnames)
//	127.0.0.2:18443/tcp   TLS for app.example.test
//	127.0.0.3             nothing        (lab/no-backend: unreachable)
//
// The DNS table answers app.example.test correctly, wrong.example.test with
// the wrong address and gone.example.test with NXDOMAIN.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lbprobe/lbprobe/test/targets"
)

func main() {
	readyFile := flag.String("ready-file", "", "file to create once every peer listens")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := start(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "demotargets: %v\n", err)
		os.Exit(1)
	}
	if *readyFile != "" {
		if err := os.WriteFile(*readyFile, []byte("ready\n"), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "demotargets: %v\n", err)
			os.Exit(1)
		}
	}
	fmt.Fprintln(os.Stderr, "demotargets: listening on 127.0.0.1:18080 (tcp), 127.0.0.1:15353 (dns), 127.0.0.2:18443 (tls)")
	<-ctx.Done()
}

func start(ctx context.Context) error {
	if _, err := targets.TCP(ctx, "127.0.0.1:18080"); err != nil {
		return err
	}
	records := targets.NewRecords(map[string][]string{
		"app.example.test":   {"127.0.0.2"},
		"wrong.example.test": {"127.0.0.9"},
	})
	if _, err := targets.DNS(ctx, "127.0.0.1:15353", records); err != nil {
		return err
	}
	now := time.Now()
	cert, err := targets.NewCertificate([]string{"app.example.test"}, now.Add(-time.Hour), now.Add(90*24*time.Hour))
	if err != nil {
		return err
	}
	if _, err := targets.TLS(ctx, "127.0.0.2:18443", cert.Leaf); err != nil {
		return err
	}
	return nil
}
