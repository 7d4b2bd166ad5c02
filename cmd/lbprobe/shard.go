package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/lbprobe/lbprobe/collector/remediate"
	"github.com/lbprobe/lbprobe/collector/shard"
)

// shardFlags are the sharding flags, named as kube-state-metrics names
// them.
type shardFlags struct {
	index        int
	total        int
	pod          string
	podNamespace string
}

func (s *shardFlags) add(app *kingpin.Application) {
	app.Flag("shard", "This instance's shard, in [0, --total-shards): it probes and exposes only the targets whose hash (namespace/service/ip, hostname) falls in it.").
		Default("0").IntVar(&s.index)
	app.Flag("total-shards", "How many shards the targets are split into; every shard syncs the whole Kubernetes caches. 1: no sharding.").
		Default("1").IntVar(&s.total)
	app.Flag("pod", "Automatic sharding: the name of this StatefulSet pod (--pod=$(POD_NAME) from the downward API). Its ordinal is the shard and its StatefulSet's spec.replicas the total, followed as it is scaled; overrides --shard and --total-shards. Needs get, list and watch on statefulsets.").
		Default("").StringVar(&s.pod)
	app.Flag("pod-namespace", "Namespace of --pod (default: $POD_NAMESPACE).").
		Default("").StringVar(&s.podNamespace)
}

func (s *shardFlags) validate() error {
	if s.pod != "" {
		_, _, err := shard.Ordinal(s.pod)
		return err
	}
	return shard.Shard{Index: s.index, Total: s.total}.Validate()
}

// auto is true in automatic mode.
func (s *shardFlags) auto() bool { return s.pod != "" }

// sharded is true when the instance serves a shard, or may come to (the
// automatic mode's StatefulSet may be scaled).
func (s *shardFlags) sharded() bool { return s.auto() || s.total > 1 }

// selector returns the shard the flags say, following the StatefulSet in
// automatic mode.
func (s *shardFlags) selector(ctx context.Context, restCfg *rest.Config, logger *slog.Logger) (*shard.Selector, error) {
	if !s.auto() {
		sh := shard.Shard{Index: s.index, Total: s.total}
		if sh.Sharded() {
			logger.Info("sharding", "shard", sh.Index, "total_shards", sh.Total)
		}
		return shard.NewSelector(sh), nil
	}
	if restCfg == nil {
		return nil, errors.New("--pod (automatic sharding) needs Kubernetes discovery (no Kubernetes config found)")
	}
	ns := s.podNamespace
	if ns == "" {
		ns = os.Getenv("POD_NAMESPACE")
	}
	if ns == "" {
		return nil, errors.New("--pod needs --pod-namespace or $POD_NAMESPACE")
	}
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("automatic sharding: %w", err)
	}
	sel := &shard.Selector{}
	if err := shard.FollowStatefulSet(ctx, client, ns, s.pod, sel, logger); err != nil {
		return nil, err
	}
	return sel, nil
}

// leaderLease is the remediation leader Lease: one per shard when sharded.
func (s *shardFlags) leaderLease(sel *shard.Selector) string {
	if !s.sharded() {
		return remediate.LeaderLeaseName
	}
	return remediate.ShardLeaderLeaseName(sel.Get().Index)
}

var descShardInfo = prometheus.NewDesc("lbprobe_shard_info",
	"1, with the shard this instance serves and the total (shard=\"0\", total_shards=\"1\" when not sharded).",
	[]string{"shard", "total_shards"}, nil)

// shardInfo exposes lbprobe_shard_info.
func shardInfo(sel *shard.Selector) prometheus.Collector { return shardInfoCollector{sel} }

type shardInfoCollector struct{ sel *shard.Selector }

func (c shardInfoCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descShardInfo }

func (c shardInfoCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.sel.Get()
	ch <- prometheus.MustNewConstMetric(descShardInfo, prometheus.GaugeValue, 1, strconv.Itoa(s.Index), strconv.Itoa(s.Total))
}
