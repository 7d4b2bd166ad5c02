package sandbox_test

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lbprobe/lbprobe/collector/remediate"
	"github.com/lbprobe/lbprobe/collector/shard"
	"github.com/lbprobe/lbprobe/test/lbprobebin"
	"github.com/lbprobe/lbprobe/test/poll"
	"github.com/lbprobe/lbprobe/test/sandbox"
	"github.com/lbprobe/lbprobe/test/seed"
)

// series is one scrape's target series (loadbalancer_*, gateway_*; the
// instance's own lbprobe_*, go_*, process_* left out), by identity: name and labels; the value maps to the series'
// shard key.
type series map[string]string

func parseSeries(t *testing.T, body string) series {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing the exposition: %v", err)
	}
	out := series{}
	for name, mf := range families {
		switch {
		case strings.HasPrefix(name, "loadbalancer_"), strings.HasPrefix(name, "gateway_"):
		case strings.HasPrefix(name, "lbprobe_"), strings.HasPrefix(name, "go_"), strings.HasPrefix(name, "process_"), strings.HasPrefix(name, "promhttp_"):
			continue // the instance's own
		default:
			t.Errorf("series family %s is neither a target's nor the instance's", name)
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			var pairs []string
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
				pairs = append(pairs, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(pairs)
			key, ok := shard.SeriesKey(func(n string) (string, bool) { v, ok := labels[n]; return v, ok })
			if !ok {
				t.Errorf("series %s{%s} has no shard key: every shard would expose it", name, strings.Join(pairs, ","))
			}
			out[name+"{"+strings.Join(pairs, ",")+"}"] = key
		}
	}
	return out
}

// shardSet is n lbprobe instances serving shards 0..n-1 over the sandbox.
type shardSet []string // their base URLs

func startShards(t *testing.T, s *sandbox.Sandbox, n int, extra ...string) shardSet {
	t.Helper()
	var urls shardSet
	for i := range n {
		args := append(s.DiagnoseFlags(), "--web.listen-address=127.0.0.1:0", "--node.name="+seed.NodeNames[0],
			fmt.Sprintf("--shard=%d", i), fmt.Sprintf("--total-shards=%d", n))
		p := lbprobebin.Start(t, lbprobebin.StartOptions{Args: append(args, extra...)})
		addr, err := p.ListenAddress(t.Context(), 30*time.Second)
		if err != nil {
			t.Fatalf("shard %d/%d: %v\n%s", i, n, err, p.Logs())
		}
		url := "http://" + addr
		if err := p.WaitReady(t.Context(), http.DefaultClient, url+"/-/ready", time.Minute); err != nil {
			t.Fatalf("shard %d/%d: %v\n%s", i, n, err, p.Logs())
		}
		urls = append(urls, url)
	}
	return urls
}

// compare scrapes the unsharded lbprobe and every shard: each series of
// the one is in exactly one shard, and the shards have no other. It returns
// the shard that exposes each target key.
func compare(t *testing.T, s *sandbox.Sandbox, shards shardSet) (owner map[string]int, err error) {
	want := parseSeries(t, scrape(t, s))
	got := map[string][]int{}
	owner = map[string]int{}
	for i, url := range shards {
		for id, key := range parseSeries(t, get(t, url+"/metrics")) {
			got[id] = append(got[id], i)
			if o, ok := owner[key]; ok && o != i {
				return nil, fmt.Errorf("target key %q is exposed by shards %d and %d", key, o, i)
			}
			owner[key] = i
		}
	}
	var missing, extra, twice []string
	for id := range want {
		if len(got[id]) == 0 {
			missing = append(missing, id)
		}
	}
	for id, in := range got {
		if _, ok := want[id]; !ok {
			extra = append(extra, id)
		}
		if len(in) > 1 {
			twice = append(twice, fmt.Sprintf("%s in shards %v", id, in))
		}
	}
	if len(missing)+len(extra)+len(twice) > 0 {
		slices.Sort(missing)
		slices.Sort(extra)
		return nil, fmt.Errorf("%d shards vs one lbprobe (%d series): %d missing %v, %d extra %v, %d in more than one %v",
			len(shards), len(want), len(missing), missing, len(extra), extra, len(twice), twice)
	}
	return owner, nil
}

// TestShards splits the sandbox's targets over three lbprobe instances, and
// then over four: their series never overlap and their union is what one
// unsharded lbprobe exposes; going to four moves each target that moves to
// the new shard only.
func TestShards(t *testing.T) {
	s, err := sandbox.Start(t.Context(), sandbox.Options{LBProbe: lbprobebin.Path(t), Logf: t.Logf, Loopback: 17})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the unsharded lbprobe's log:\n%s", s.Logs())
		}
	})
	if err := s.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The three shards also remediate in dry-run, each on its own leader
	// Lease and its own leases.
	three := startShards(t, s, 3, "--remediate.leases=dry-run", "--remediate.orphan-grace=1s",
		"--remediate.leader-election.namespace="+seed.CiliumNamespace)
	four := startShards(t, s, 4)

	var owners [2]map[string]int
	for i, shards := range []shardSet{three, four} {
		// Scrapes of different instances can straddle a lease renewal or
		// a probe's timeout: compare again until one pass agrees.
		if err := poll.Until(t.Context(), 30*time.Second, time.Second, func() error {
			var err error
			owners[i], err = compare(t, s, shards)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	moved := 0
	for key, before := range owners[0] {
		after, ok := owners[1][key]
		switch {
		case !ok:
			t.Errorf("target key %q is in shard %d of 3 and in no shard of 4", key, before)
		case after != before && after != 3:
			t.Errorf("target key %q moved from shard %d to %d going from 3 to 4 shards; only the new shard 3 may gain", key, before, after)
		case after != before:
			moved++
		}
	}
	t.Logf("%d target keys; going from 3 to 4 shards moved %d, all to shard 3", len(owners[0]), moved)
	if moved == 0 || moved == len(owners[0]) {
		t.Errorf("going from 3 to 4 shards moved %d of %d target keys: want some, not all", moved, len(owners[0]))
	}

	// The shard that owns the orphaned lease of apps/gone counts its
	// dry-run delete, the others not; each shard elected on its own Lease.
	orphan := seed.LeaseName(seed.AppsNS, "gone")
	wantShard := shard.Of(shard.LeaseKey(orphan), 3)
	line := `lbprobe_remediations_total{action="delete_orphaned_lease",result="dry_run"} 1`
	if err := poll.Until(t.Context(), 60*time.Second, time.Second, func() error {
		if m := get(t, three[wantShard]+"/metrics"); !hasLine(m, line) {
			return fmt.Errorf("shard %d of 3 (which owns lease %s) lacks %s", wantShard, orphan, line)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i, url := range three {
		if i != wantShard && hasLine(get(t, url+"/metrics"), line) {
			t.Errorf("shard %d of 3 also acted on lease %s, owned by shard %d", i, orphan, wantShard)
		}
		name := remediate.ShardLeaderLeaseName(i)
		if _, err := s.Seed.Core.CoordinationV1().Leases(seed.CiliumNamespace).Get(t.Context(), name, metav1.GetOptions{}); err != nil {
			t.Errorf("shard %d's leader Lease %s: %v", i, name, err)
		}
	}
	for i, url := range three {
		if m := get(t, url+"/metrics"); !hasLine(m, fmt.Sprintf(`lbprobe_shard_info{shard="%d",total_shards="3"} 1`, i)) {
			t.Errorf("shard %d of 3 lacks lbprobe_shard_info", i)
		}
	}
}
