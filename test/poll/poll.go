// Package poll is the one way tests wait for something: call a check again
// and again until it passes or a deadline comes.
package poll

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Until calls check at once and then every `every` until it returns nil,
// timeout passes or ctx ends. It returns nil as soon as check does, else
// check's last error wrapped with how long Until tried (and why ctx ended,
// when that came before the timeout).
func Until(ctx context.Context, timeout, every time.Duration, check func() error) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return stopped(ctx, time.Since(start), err)
		case <-tick.C:
		}
	}
}

// stopped wraps last, check's last error, with how long the poll ran.
func stopped(ctx context.Context, took time.Duration, last error) error {
	took = took.Round(time.Millisecond)
	if cause := context.Cause(ctx); !errors.Is(cause, context.DeadlineExceeded) {
		return fmt.Errorf("stopped after %s (%v): %w", took, cause, last)
	}
	return fmt.Errorf("still failing after %s: %w", took, last)
}
