package seed

import (
	"context"
	"fmt"
	"net/netip"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Pool creates a CiliumLoadBalancerIPPool over prefix and writes its status
// conditions with used IPs in use, as Cilium's operator does.
func (c *Cluster) Pool(ctx context.Context, name string, prefix netip.Prefix, used int) error {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool",
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"blocks": []any{map[string]any{"cidr": prefix.String()}}},
	}}
	created, err := c.Dynamic.Resource(PoolGVR).Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		if err := ignoreExists(err, "pool "+name); err != nil {
			return err
		}
		if created, err = c.Dynamic.Resource(PoolGVR).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return wrap(err, "pool "+name)
		}
	}
	total := 1 << (prefix.Addr().BitLen() - prefix.Bits())
	num := func(typ string, n int) map[string]any {
		m := condition(typ, "Unknown", "noreason", created.GetGeneration(), c.Now())
		m["message"] = fmt.Sprint(n)
		return m
	}
	conflict := condition("cilium.io/PoolConflict", "False", "resolved", created.GetGeneration(), c.Now())
	created.Object["status"] = map[string]any{"conditions": []any{
		conflict, num("cilium.io/IPsTotal", total), num("cilium.io/IPsAvailable", total-used), num("cilium.io/IPsUsed", used),
	}}
	_, err = c.Dynamic.Resource(PoolGVR).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	return wrap(err, "pool status "+name)
}

// SetPoolConflict sets a pool's PoolConflict condition, as Cilium's operator
// does when two pools overlap.
func (c *Cluster) SetPoolConflict(ctx context.Context, name string, conflict bool) error {
	pool, err := c.Dynamic.Resource(PoolGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return wrap(err, "pool "+name)
	}
	conds, _, _ := unstructured.NestedSlice(pool.Object, "status", "conditions")
	status, reason, msg := "False", "resolved", ""
	if conflict {
		status, reason, msg = "True", "cidr_overlap", "Pool's CIDR overlaps with another pool"
	}
	for i, cnd := range conds {
		if m, ok := cnd.(map[string]any); ok && m["type"] == "cilium.io/PoolConflict" {
			m["status"], m["reason"], m["message"] = status, reason, msg
			conds[i] = m
		}
	}
	if err := unstructured.SetNestedSlice(pool.Object, conds, "status", "conditions"); err != nil {
		return wrap(err, "pool "+name)
	}
	_, err = c.Dynamic.Resource(PoolGVR).UpdateStatus(ctx, pool, metav1.UpdateOptions{})
	return wrap(err, "pool status "+name)
}

// Policy creates the seed's CiliumL2AnnouncementPolicy: every Service's LB
// IP, announced on interfaces matching ^enp.* of every Linux node. (A node
// whose NIC is eth0 matches no interface: the seed's own mismatch.)
func (c *Cluster) Policy(ctx context.Context, name string) error {
	return c.PolicyWith(ctx, name, map[string]any{"matchLabels": map[string]any{"kubernetes.io/os": "linux"}}, "^enp.*")
}

// PolicyWith creates a CiliumL2AnnouncementPolicy for every Service's LB IP
// with a node selector and interface regexes.
func (c *Cluster) PolicyWith(ctx context.Context, name string, nodeSelector map[string]any, interfaces ...string) error {
	ifaces := make([]any, len(interfaces))
	for i, s := range interfaces {
		ifaces[i] = s
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumL2AnnouncementPolicy",
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{
			"loadBalancerIPs": true,
			"interfaces":      ifaces,
			"nodeSelector":    nodeSelector,
		},
	}}
	_, err := c.Dynamic.Resource(PolicyGVR).Create(ctx, obj, metav1.CreateOptions{})
	return ignoreExists(err, "policy "+name)
}

// SetPolicyCondition writes a condition on a CiliumL2AnnouncementPolicy, as
// Cilium's agent does for a selector or regex it cannot parse (type e.g.
// io.cilium/bad-interface-regex, reason "error").
func (c *Cluster) SetPolicyCondition(ctx context.Context, name, typ, message string) error {
	pol, err := c.Dynamic.Resource(PolicyGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return wrap(err, "policy "+name)
	}
	cond := condition(typ, "True", "error", pol.GetGeneration(), c.Now())
	cond["message"] = message
	pol.Object["status"] = map[string]any{"conditions": []any{cond}}
	_, err = c.Dynamic.Resource(PolicyGVR).UpdateStatus(ctx, pol, metav1.UpdateOptions{})
	return wrap(err, "policy status "+name)
}
