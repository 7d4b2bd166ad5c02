package main

import (
	"io"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lbprobe/lbprobe/collector/shard"
)

func TestShardFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		err  string // "" when valid
	}{
		{nil, ""},
		{[]string{"--shard=2", "--total-shards=3"}, ""},
		{[]string{"--pod=lbprobe-4", "--pod-namespace=lbprobe"}, ""},
		{[]string{"--shard=3", "--total-shards=3"}, "--shard must be in [0, 3)"},
		{[]string{"--shard=1"}, "--shard must be in [0, 1)"},
		{[]string{"--total-shards=0"}, "--total-shards must be at least 1"},
		{[]string{"--pod=lbprobe"}, "--pod \"lbprobe\" is not a StatefulSet pod's name"},
		{[]string{"--pod=lbprobe-0", "--kube.enabled=false"}, "--pod (automatic sharding) needs Kubernetes discovery"},
	} {
		_, err := parseFlags(c.args, io.Discard, io.Discard)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%v: %v", c.args, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%v: error %v, want one containing %q", c.args, err, c.err)
		}
	}
}

func TestShardLeaderLease(t *testing.T) {
	for _, c := range []struct {
		flags shardFlags
		sel   shard.Shard
		want  string
	}{
		{shardFlags{total: 1}, shard.Shard{Total: 1}, "lbprobe-remediation"},
		{shardFlags{index: 2, total: 3}, shard.Shard{Index: 2, Total: 3}, "lbprobe-remediation-shard-2"},
		// Automatic mode, one replica for now: the StatefulSet may grow.
		{shardFlags{pod: "lbprobe-0"}, shard.Shard{Total: 1}, "lbprobe-remediation-shard-0"},
	} {
		if got := c.flags.leaderLease(shard.NewSelector(c.sel)); got != c.want {
			t.Errorf("%+v: leader lease %q, want %q", c.flags, got, c.want)
		}
	}
}

func TestShardInfo(t *testing.T) {
	sel := shard.NewSelector(shard.Shard{Index: 1, Total: 3})
	want := "# HELP lbprobe_shard_info 1, with the shard this instance serves and the total (shard=\"0\", total_shards=\"1\" when not sharded).\n" +
		"# TYPE lbprobe_shard_info gauge\nlbprobe_shard_info{shard=\"1\",total_shards=\"3\"} 1\n"
	if err := testutil.CollectAndCompare(shardInfo(sel), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
