package remediate

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaderLeaseName is the coordination Lease the lbprobe instances elect
// the one that acts with.
const LeaderLeaseName = "lbprobe-remediation"

// ShardLeaderLeaseName is the leader Lease of one shard's instances
// (--total-shards > 1 or automatic sharding): each shard acts on its own
// targets' leases and elects its own leader.
func ShardLeaderLeaseName(index int) string {
	return fmt.Sprintf("%s-shard-%d", LeaderLeaseName, index)
}

// Leader-election timing (client-go's usual 15s/10s/2s).
var (
	leaseDuration = 15 * time.Second
	renewDeadline = 10 * time.Second
	retryPeriod   = 2 * time.Second
)

// Elect runs leader election on the Lease namespace/name (LeaderLeaseName,
// or a shard's ShardLeaderLeaseName) under identity until ctx ends: r
// acts only while this instance leads.
// It returns at once; r does not lead until elected.
func Elect(ctx context.Context, r *Remediator, client kubernetes.Interface, namespace, name, identity string, logger *slog.Logger) {
	r.SetLeading(false)
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: name, Namespace: namespace},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
	}
	cfg := leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   leaseDuration,
		RenewDeadline:   renewDeadline,
		RetryPeriod:     retryPeriod,
		ReleaseOnCancel: true,
		Name:            name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) {
				logger.Info("remediation: elected; this lbprobe acts", "lease", namespace+"/"+name, "identity", identity)
				r.SetLeading(true)
			},
			OnStoppedLeading: func() {
				logger.Info("remediation: not the leader; this lbprobe only observes", "identity", identity)
				r.SetLeading(false)
			},
			OnNewLeader: func(id string) {
				if id != identity {
					logger.Info("remediation: another lbprobe leads", "leader", id)
				}
			},
		},
	}
	go func() {
		// RunOrDie returns when leadership is lost: stand again.
		for ctx.Err() == nil {
			leaderelection.RunOrDie(ctx, cfg)
			r.SetLeading(false)
		}
	}()
}
