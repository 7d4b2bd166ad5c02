package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Informer health: watch errors, the API server's /readyz, and what
// lbprobe_kubernetes_synced and readiness make of them.

// watchError records a list/watch error of an informer: it is counted;
// unless transient, it marks the resource unsynced for a while (see
// synced) and is logged at warn once per streak of errors.
func (d *Discovery) watchError(s *informerState, logger *slog.Logger, err error) {
	s.errors.Add(1)
	if transientWatchError(err) {
		logger.Debug("watch closed", "err", err)
		return
	}
	now := d.opts.Now()
	prev := s.lastErr.Swap(now.UnixNano())
	if prev == 0 || now.Sub(time.Unix(0, prev)) > d.errorHold() {
		logger.Warn("list/watch failed, serving the last known state", "err", err)
	} else {
		logger.Debug("list/watch failed again", "err", err)
	}
}

// transientWatchError reports errors that are part of normal watch life:
// a closed stream or an expired resource version (the reflector relists).
func transientWatchError(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
}

func (d *Discovery) errorHold() time.Duration {
	return watchErrorHoldFactor * d.opts.HealthInterval
}

// healthLoop checks the API server every HealthInterval until ctx ends.
func (d *Discovery) healthLoop(ctx context.Context) {
	t := time.NewTicker(d.opts.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.checkHealth(ctx)
		}
	}
}

// checkHealth asks the API server once and records the result.
func (d *Discovery) checkHealth(ctx context.Context) {
	start := d.opts.Now()
	cctx, cancel := context.WithTimeout(ctx, min(healthCheckTimeout, d.opts.HealthInterval))
	err := d.c.health(cctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	d.mu.Lock()
	was := d.healthy
	if err == nil {
		if !was {
			d.healthySince = start
		}
		d.healthy = true
	} else {
		d.healthy = false
	}
	d.mu.Unlock()
	switch {
	case err != nil && was:
		d.logger.Warn("API server not healthy, serving the last known state", "err", err)
	case err != nil:
		d.logger.Debug("API server still not healthy", "err", err)
	case !was:
		d.logger.Info("API server healthy again")
	}
}

// synced reports whether the informer has synced, the API server answered
// its last health check, and no watch error of the resource is recent:
// errors from before the current healthy streak began are forgiven (the
// API server was down, and is back), later ones keep the resource unsynced
// for three health intervals.
func (d *Discovery) synced(s *informerState, now time.Time) bool {
	if !s.informer.HasSynced() {
		return false
	}
	d.mu.Lock()
	healthy, since := d.healthy, d.healthySince
	d.mu.Unlock()
	if !healthy {
		return false
	}
	last := s.lastErr.Load()
	if last == 0 {
		return true
	}
	at := time.Unix(0, last)
	return at.Before(since) || now.Sub(at) > d.errorHold()
}

// Synced reports whether every informer is in sync now (what
// lbprobe_kubernetes_synced says for each resource): its cache synced, the
// API server answered its last health check, and no recent watch error.
func (d *Discovery) Synced() bool {
	if !d.started.Load() || len(d.informers) == 0 {
		return false
	}
	now := d.opts.Now()
	for _, s := range d.informers {
		if !d.synced(s, now) {
			return false
		}
	}
	return true
}

// WaitForSync waits until every informer has synced, at most SyncTimeout.
// The error names the first resource that did not sync.
func (d *Discovery) WaitForSync(ctx context.Context) error {
	if !d.started.Load() {
		return errors.New("kube: WaitForSync before Start")
	}
	ctx, cancel := context.WithTimeoutCause(ctx, d.opts.SyncTimeout, fmt.Errorf("sync timeout %s: %w", d.opts.SyncTimeout, context.DeadlineExceeded))
	defer cancel()
	for _, s := range d.informers {
		err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
			return s.informer.HasSynced(), nil
		})
		if err != nil {
			if cause := context.Cause(ctx); cause != nil {
				err = cause
			}
			return fmt.Errorf("kube: waiting for %s cache to sync: %w", s.resource, err)
		}
	}
	d.ready.Store(true)
	return nil
}

// Ready reports whether the caches have completed their first sync. It
// stays true afterwards (lbprobe_kubernetes_synced tells about later
// trouble).
func (d *Discovery) Ready() bool {
	if d.ready.Load() {
		return true
	}
	if !d.started.Load() {
		return false
	}
	for _, s := range d.informers {
		if !s.informer.HasSynced() {
			return false
		}
	}
	d.ready.Store(true)
	return true
}
