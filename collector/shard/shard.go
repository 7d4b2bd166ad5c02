// Package shard splits lbprobe's targets between instances, in the
// kube-state-metrics model: with --shard=i --total-shards=n an instance
// probes and exposes only the targets whose stable hash falls in shard i,
// while every instance still syncs the whole Kubernetes caches. Prometheus
// scrapes every shard; their series never overlap and their union is what a
// single instance would expose.
//
// The hash is a jump consistent hash (Lamping and Veach, 2014) of FNV-1a:
// growing from n to n+1 shards moves about 1/(n+1) of the targets, each to
// the new shard, and shrinking moves only the last shard's targets.
package shard

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"strings"
	"sync/atomic"
)

// Shard is one shard of a total; the zero value and {0, 1} own everything.
type Shard struct {
	Index int
	Total int
}

// Validate reports a shard that names no shard of its total.
func (s Shard) Validate() error {
	switch {
	case s.Total < 1:
		return fmt.Errorf("--total-shards must be at least 1, got %d", s.Total)
	case s.Index < 0 || s.Index >= s.Total:
		return fmt.Errorf("--shard must be in [0, %d) for --total-shards=%d, got %d", s.Total, s.Total, s.Index)
	}
	return nil
}

// Sharded is true when the targets are split (more than one shard).
func (s Shard) Sharded() bool { return s.Total > 1 }

// OwnsAll is true when the shard owns every key (not sharded).
func (s Shard) OwnsAll() bool { return s.Total <= 1 && s.Index == 0 }

// Owns reports whether key falls in this shard. A shard past its total (a
// StatefulSet pod being scaled away) owns nothing.
func (s Shard) Owns(key string) bool {
	if !s.Sharded() {
		return s.Index == 0
	}
	return Of(key, s.Total) == s.Index
}

// String is "i/n".
func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Total) }

// Of returns the shard in [0, total) that key falls in.
func Of(key string, total int) int {
	if total <= 1 {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	return jump(h.Sum64(), total)
}

// jump is the jump consistent hash: it maps key to a bucket in [0, n) such
// that going from n to n+1 buckets moves a key only to bucket n.
func jump(key uint64, n int) int {
	b, j := int64(-1), int64(0)
	for j < int64(n) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}

// The keys of the targets. A load balancer IP is hashed as
// namespace/service/ip (a Service without an IP as namespace/service/), a
// hostname as itself, lower case without a trailing dot.

// LoadBalancerKey is the key of one IP of a load balancer; ip may be
// invalid for a Service that has none.
func LoadBalancerKey(namespace, service string, ip netip.Addr) string {
	s := ""
	if ip.IsValid() {
		s = ip.String()
	}
	return namespace + "/" + service + "/" + s
}

// HostnameKey is the key of a hostname.
func HostnameKey(hostname string) string {
	return strings.TrimSuffix(strings.ToLower(hostname), ".")
}

// GatewayKey is the key of a Gateway's listeners and state.
func GatewayKey(namespace, gateway string) string { return "gateway:" + namespace + "/" + gateway }

// Selector holds the shard an instance serves now; automatic sharding
// changes it when the StatefulSet is scaled. The zero value owns
// everything.
type Selector struct {
	cur atomic.Pointer[Shard]
}

// NewSelector returns a Selector serving s.
func NewSelector(s Shard) *Selector {
	sel := &Selector{}
	sel.Set(s)
	return sel
}

// Get returns the shard served now. A nil Selector owns everything.
func (sel *Selector) Get() Shard {
	if sel == nil {
		return Shard{Total: 1}
	}
	if s := sel.cur.Load(); s != nil {
		return *s
	}
	return Shard{Total: 1}
}

// Set changes the shard served.
func (sel *Selector) Set(s Shard) { sel.cur.Store(&s) }
