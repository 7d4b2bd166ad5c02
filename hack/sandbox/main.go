// Command sandbox is `make run`: a local copy of the reference cluster that
// lbprobe watches and probes, all on this machine's loopback. See package
// test/sandbox for what it starts and what is broken on purpose; this runs
// bin/lbprobe in it, with the arguments after the flags appended, until
// Ctrl-C.
//
// Ctrl-C stops everything and removes the temporary files.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lbprobe/lbprobe/test/sandbox"
)

func main() {
	lbprobe := flag.String("lbprobe", "bin/lbprobe", "the lbprobe binary to run")
	listen := flag.String("listen", "127.0.0.1:9884", "lbprobe's listen address")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *lbprobe, *listen, flag.Args()); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "sandbox: %v\n", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sandbox: "+format+"\n", args...)
}

func run(ctx context.Context, lbprobe, listen string, extraArgs []string) error {
	s, err := sandbox.Start(ctx, sandbox.Options{
		LBProbe: lbprobe, Listen: listen, ExtraArgs: extraArgs, Logf: logf,
		Output: os.Stderr, // where lbprobe logs anyway
	})
	if err != nil {
		return err
	}
	defer s.Stop()
	err = s.Wait()
	if ctx.Err() != nil {
		logf("stopping")
		return nil
	}
	return err
}
