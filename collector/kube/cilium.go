package kube

import (
	"cmp"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

// Labels Cilium adds to a Service's own labels before matching selectors.
const (
	labelServiceNamespace = "io.kubernetes.service.namespace"
	labelServiceName      = "io.kubernetes.service.name"
)

// serviceLabels are the labels Cilium matches policy selectors against.
func serviceLabels(s *corev1.Service) labels.Set {
	set := make(labels.Set, len(s.Labels)+2)
	for k, v := range s.Labels {
		set[k] = v
	}
	set[labelServiceNamespace] = s.Namespace
	set[labelServiceName] = s.Name
	return set
}

// l2Announceable reports whether Cilium's L2 announcer considers the
// Service at all: its loadBalancerClass is unset or io.cilium/l2-announcer.
func l2Announceable(s *corev1.Service) bool {
	return s.Spec.LoadBalancerClass == nil || *s.Spec.LoadBalancerClass == l2AnnouncerClass
}

// leaseInfo is what a Lease says, evaluated at one instant. has* fields are
// false when the Lease lacks the field: the derived series are skipped.
type leaseInfo struct {
	name   string
	holder string

	age, renewAge, duration          time.Duration
	hasAge, hasRenewAge, hasDuration bool
	transitions                      int32
	hasTransitions                   bool
	// expired: the renew age exceeds the lease duration (known only when
	// both are).
	expired, hasExpired bool
}

// live reports whether the lease announces now: a holder, and not expired.
func (l leaseInfo) live() bool { return l.holder != "" && l.hasExpired && !l.expired }

func evalLease(l *coordinationv1.Lease, now time.Time) leaseInfo {
	li := leaseInfo{name: l.Name}
	if l.Spec.HolderIdentity != nil {
		li.holder = *l.Spec.HolderIdentity
	}
	if t := l.Spec.AcquireTime; t != nil && !t.IsZero() {
		li.age, li.hasAge = now.Sub(t.Time), true
	}
	if t := l.Spec.RenewTime; t != nil && !t.IsZero() {
		li.renewAge, li.hasRenewAge = now.Sub(t.Time), true
	}
	if d := l.Spec.LeaseDurationSeconds; d != nil {
		li.duration, li.hasDuration = time.Duration(*d)*time.Second, true
	}
	if t := l.Spec.LeaseTransitions; t != nil {
		li.transitions, li.hasTransitions = *t, true
	}
	if li.hasRenewAge && li.hasDuration {
		li.expired, li.hasExpired = li.renewAge > li.duration, true
	}
	return li
}

// Pool condition types (current Cilium, and the ≈1.12/1.13 names).
var poolCountConditions = map[string]string{
	"cilium.io/IPsTotal":      "total",
	"cilium.io/IPsAvailable":  "available",
	"cilium.io/IPsUsed":       "used",
	"io.cilium/ips-total":     "total",
	"io.cilium/ips-available": "available",
	"io.cilium/ips-used":      "used",
}

var poolConflictConditions = []string{"cilium.io/PoolConflict", "io.cilium/conflict"}

// poolCount is one IP count of a pool.
type poolCount struct {
	state string // total, available, used
	value float64
}

// ipPool is what the series need from a CiliumLoadBalancerIPPool.
type ipPool struct {
	name     string
	disabled bool
	conflict bool
	counts   []poolCount // sorted by state, at most one per state
}

// parsePool reads a pool. Counts are decimal integers in the conditions'
// message (they can exceed 2^64 for IPv6 blocks); anything else is skipped
// with a debug log.
func parsePool(u *unstructured.Unstructured, logger *slog.Logger) ipPool {
	p := ipPool{name: u.GetName()}
	p.disabled, _, _ = unstructured.NestedBool(u.Object, "spec", "disabled")
	raw, found, _ := unstructured.NestedFieldNoCopy(u.Object, "status", "conditions")
	conds, ok := raw.([]any)
	if found && !ok {
		logger.Debug("ip pool: status.conditions is not a list", "pool", p.name)
		return p
	}
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		typ, _ := m["type"].(string)
		status, _ := m["status"].(string)
		if slices.Contains(poolConflictConditions, typ) {
			p.conflict = p.conflict || strings.EqualFold(status, string(metav1.ConditionTrue))
			continue
		}
		state, ok := poolCountConditions[typ]
		if !ok || slices.ContainsFunc(p.counts, func(c poolCount) bool { return c.state == state }) {
			continue
		}
		msg, _ := m["message"].(string)
		v, ok := parseCount(msg)
		if !ok {
			logger.Debug("ip pool: count is not a number", "pool", p.name, "condition", typ, "message", msg)
			continue
		}
		p.counts = append(p.counts, poolCount{state: state, value: v})
	}
	slices.SortFunc(p.counts, func(a, b poolCount) int { return cmp.Compare(a.state, b.state) })
	return p
}

// parseCount parses a non-negative decimal integer of any size.
func parseCount(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil
}
