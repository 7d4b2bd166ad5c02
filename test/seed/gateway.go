package seed

import (
	"context"
	"net/netip"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// GatewayClass creates a GatewayClass.
func (c *Cluster) GatewayClass(ctx context.Context, name string) error {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"controllerName": ControllerName},
	}}
	_, err := c.Dynamic.Resource(ClassGVR).Create(ctx, obj, metav1.CreateOptions{})
	return ignoreExists(err, "gatewayclass "+name)
}

// Gateway creates a Gateway as the seed writes its two: its address asked
// for in spec.addresses and one HTTPS listener for *.Domain, naming the
// certificate Secret secret when not empty. Then it writes the status the
// Gateway controller would: the address, Accepted and Programmed, and the
// listener's conditions with the routes attached.
func (c *Cluster) Gateway(ctx context.Context, ns, name string, ip netip.Addr, secret string) error {
	listener := map[string]any{"name": "https", "port": int64(c.Ports.HTTPS), "protocol": "HTTPS", "hostname": "*." + Domain}
	if secret != "" {
		listener["tls"] = map[string]any{"certificateRefs": []any{map[string]any{"kind": "Secret", "name": secret}}}
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"gatewayClassName": "cilium",
			"addresses":        []any{map[string]any{"type": "IPAddress", "value": ip.String()}},
			"listeners":        []any{listener},
		},
	}}
	if _, err := c.Dynamic.Resource(GatewayGVR).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		if err := ignoreExists(err, "gateway "+ns+"/"+name); err != nil {
			return err
		}
	}
	return c.SetGatewayAddress(ctx, ns, name, ip, true)
}

// SetGatewayAddress writes a Gateway's status: its address, the Accepted
// and Programmed conditions, and per listener Accepted, Programmed,
// ResolvedRefs and Conflicted with the count of accepted routes attached.
func (c *Cluster) SetGatewayAddress(ctx context.Context, ns, name string, ip netip.Addr, programmed bool) error {
	gw, err := c.Dynamic.Resource(GatewayGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return wrap(err, "gateway "+ns+"/"+name)
	}
	status, reason := "True", "Programmed"
	if !programmed {
		status, reason = "False", "Invalid"
	}
	var addrs []any
	if ip.IsValid() {
		addrs = []any{map[string]any{"type": "IPAddress", "value": ip.String()}}
	}
	gen, now := gw.GetGeneration(), c.Now()
	specListeners, _, _ := unstructured.NestedSlice(gw.Object, "spec", "listeners")
	var listeners []any
	for _, l := range specListeners {
		lname, _ := l.(map[string]any)["name"].(string)
		attached, err := c.attachedRoutes(ctx, ns, name, lname)
		if err != nil {
			return err
		}
		listeners = append(listeners, map[string]any{
			"name":           lname,
			"supportedKinds": []any{map[string]any{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}},
			"attachedRoutes": int64(attached),
			"conditions": []any{
				condition("Accepted", "True", "Accepted", gen, now),
				condition("Programmed", status, reason, gen, now),
				condition("ResolvedRefs", "True", "ResolvedRefs", gen, now),
				condition("Conflicted", "False", "NoConflicts", gen, now),
			},
		})
	}
	gw.Object["status"] = map[string]any{
		"addresses": addrs,
		"conditions": []any{
			condition("Accepted", "True", "Accepted", gen, now),
			condition("Programmed", status, reason, gen, now),
		},
		"listeners": listeners,
	}
	_, err = c.Dynamic.Resource(GatewayGVR).Namespace(ns).UpdateStatus(ctx, gw, metav1.UpdateOptions{})
	return wrap(err, "gateway status "+ns+"/"+name)
}

// attachedRoutes counts the HTTPRoutes whose status says the Gateway
// ns/name accepted them on the listener (or on every listener, for a
// parentRef without a sectionName).
func (c *Cluster) attachedRoutes(ctx context.Context, ns, name, listener string) (int, error) {
	routes, err := c.Dynamic.Resource(HTTPRouteGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, wrap(err, "listing httproutes")
	}
	n := 0
	for _, r := range routes.Items {
		parents, _, _ := unstructured.NestedSlice(r.Object, "status", "parents")
		for _, p := range parents {
			pm, _ := p.(map[string]any)
			ref, _ := pm["parentRef"].(map[string]any)
			pns, _ := ref["namespace"].(string)
			if pns == "" {
				pns = r.GetNamespace()
			}
			section, _ := ref["sectionName"].(string)
			if ref["name"] != name || pns != ns || (section != "" && section != listener) || !accepted(pm) {
				continue
			}
			n++
			break
		}
	}
	return n, nil
}

// accepted reports whether a route parent status has Accepted=True.
func accepted(parent map[string]any) bool {
	conds, _ := parent["conditions"].([]any)
	for _, c := range conds {
		if m, _ := c.(map[string]any); m["type"] == "Accepted" {
			return m["status"] == "True"
		}
	}
	return false
}

func condition(typ, status, reason string, generation int64, now time.Time) map[string]any {
	return map[string]any{
		"type": typ, "status": status, "reason": reason, "message": "",
		"observedGeneration": generation, "lastTransitionTime": now.UTC().Format(time.RFC3339),
	}
}

// ParentRef names a Gateway, and optionally one of its listeners, in an
// HTTPRoute; an empty Namespace means the route's.
type ParentRef struct {
	Namespace, Name, Section string
}

func (p ParentRef) object() map[string]any {
	m := map[string]any{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": p.Name}
	if p.Namespace != "" {
		m["namespace"] = p.Namespace
	}
	if p.Section != "" {
		m["sectionName"] = p.Section
	}
	return m
}

func parentRefs(parents []ParentRef) []any {
	out := make([]any, len(parents))
	for i, p := range parents {
		out[i] = p.object()
	}
	return out
}

// HTTPRoute creates an HTTPRoute for hostnames on parents, forwarding to
// port 80 of the Service backend in its namespace.
func (c *Cluster) HTTPRoute(ctx context.Context, ns, name string, hostnames []string, parents []ParentRef, backend string) error {
	hosts := make([]any, len(hostnames))
	for i, h := range hostnames {
		hosts[i] = h
	}
	return c.createRoute(ctx, ns, name, map[string]any{
		"hostnames":  hosts,
		"parentRefs": parentRefs(parents),
		"rules":      []any{map[string]any{"backendRefs": []any{map[string]any{"name": backend, "port": int64(80)}}}},
	})
}

// RedirectRoute creates the seed's httpsredirect: no hostnames, one rule
// redirecting to https with a 301.
func (c *Cluster) RedirectRoute(ctx context.Context, ns, name string, parents []ParentRef) error {
	return c.createRoute(ctx, ns, name, map[string]any{
		"parentRefs": parentRefs(parents),
		"rules": []any{map[string]any{"filters": []any{map[string]any{
			"type":            "RequestRedirect",
			"requestRedirect": map[string]any{"scheme": "https", "statusCode": int64(301)},
		}}}},
	})
}

func (c *Cluster) createRoute(ctx context.Context, ns, name string, spec map[string]any) error {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     spec,
	}}
	_, err := c.Dynamic.Resource(HTTPRouteGVR).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{})
	return ignoreExists(err, "httproute "+ns+"/"+name)
}

// RouteParentStatus is what the Gateway controller writes for one parentRef
// of a route: the reasons of its Accepted and ResolvedRefs conditions
// ("Accepted" and "ResolvedRefs" are True, any other reason False).
type RouteParentStatus struct {
	ParentRef
	Accepted, ResolvedRefs string
}

// ControllerName is the Cilium Gateway controller's name.
const ControllerName = "io.cilium/gateway-controller"

// SetRouteStatus writes an HTTPRoute's status.parents as Cilium's Gateway
// controller would.
func (c *Cluster) SetRouteStatus(ctx context.Context, ns, name string, parents ...RouteParentStatus) error {
	r, err := c.Dynamic.Resource(HTTPRouteGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return wrap(err, "httproute "+ns+"/"+name)
	}
	gen, now := r.GetGeneration(), c.Now()
	status := func(typ, reason string) map[string]any {
		if reason == typ {
			return condition(typ, "True", reason, gen, now)
		}
		return condition(typ, "False", reason, gen, now)
	}
	var out []any
	for _, p := range parents {
		out = append(out, map[string]any{
			"parentRef":      p.object(),
			"controllerName": ControllerName,
			"conditions":     []any{status("Accepted", p.Accepted), status("ResolvedRefs", p.ResolvedRefs)},
		})
	}
	r.Object["status"] = map[string]any{"parents": out}
	_, err = c.Dynamic.Resource(HTTPRouteGVR).Namespace(ns).UpdateStatus(ctx, r, metav1.UpdateOptions{})
	return wrap(err, "httproute status "+ns+"/"+name)
}
