package sandbox

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/lbprobe/lbprobe/test/seed"
)

// breakMore adds the sandbox's other broken things, so that those series
// show their failing value too:
//   - a second pool that overlaps the first;
//   - a Gateway "staging" that is not programmed and whose status address
//     differs from the one it asked for (nothing serves it);
//   - a hostname claimed by a route on both Gateways, which the internal one
//     refuses (NotAllowedByListeners);
//   - apps/pinned, whose requested IP (apps/legacy's) LB-IPAM cannot give;
//   - apps/shared-a and apps/shared-b, sharing one IP by a sharing key, each
//     with its own L2 lease held by a different node: a split brain;
//   - a second L2 policy whose node selector matches no node and whose
//     interface regex Cilium cannot parse;
//   - the lease of a Service apps/gone that no longer exists (an orphan).
func breakMore(ctx context.Context, cl *seed.Cluster, addrs seed.Addresses) error {
	// .84 to .86 of the stand-ins' /24, next to the Gateways' .80 and .81.
	at := func(last byte) netip.Addr {
		b := addrs.External.As4()
		b[3] = last
		return netip.AddrFrom4(b)
	}
	requested, got, shared := at(84), at(85), at(86)
	if err := cl.Pool(ctx, "lb-pool-old", netip.PrefixFrom(addrs.External, 29), 0); err != nil {
		return err
	}
	if err := cl.SetPoolConflict(ctx, "lb-pool-old", true); err != nil {
		return err
	}
	if err := cl.Gateway(ctx, seed.GatewayNS, "staging", got, ""); err != nil {
		return err
	}
	gws := cl.Dynamic.Resource(seed.GatewayGVR).Namespace(seed.GatewayNS)
	patch := []byte(fmt.Sprintf(`{"spec":{"addresses":[{"type":"IPAddress","value":%q}]}}`, requested))
	if _, err := gws.Patch(ctx, "staging", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("gateway staging: %w", err)
	}
	if err := cl.SetGatewayAddress(ctx, seed.GatewayNS, "staging", got, false); err != nil {
		return err
	}
	both := []seed.ParentRef{{Namespace: seed.GatewayNS, Name: "external"}, {Namespace: seed.GatewayNS, Name: "internal"}}
	if err := cl.HTTPRoute(ctx, seed.AppsNS, "shared-app", []string{"shared." + seed.Domain}, both, "public-app"); err != nil {
		return err
	}
	// The internal Gateway refuses it, the external one accepts it; k8s_gateway
	// answers both addresses all the same.
	if err := cl.SetRouteStatus(ctx, seed.AppsNS, "shared-app",
		seed.RouteParentStatus{ParentRef: both[0], Accepted: "Accepted", ResolvedRefs: "ResolvedRefs"},
		seed.RouteParentStatus{ParentRef: both[1], Accepted: "NotAllowedByListeners", ResolvedRefs: "ResolvedRefs"}); err != nil {
		return err
	}

	http := []corev1.ServicePort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}}
	if err := cl.Service(ctx, seed.AppsNS, "pinned", nil, map[string]string{"lbipam.cilium.io/ips": addrs.Legacy.String()}, http); err != nil {
		return err
	}
	if err := cl.SetIPAMCondition(ctx, seed.AppsNS, "pinned", false, "already_allocated"); err != nil {
		return err
	}
	now := time.Now()
	for i, name := range []string{"shared-a", "shared-b"} {
		annots := map[string]string{"lbipam.cilium.io/sharing-key": "shared"}
		port := []corev1.ServicePort{{Name: "http", Port: int32(8081 + i), Protocol: corev1.ProtocolTCP}}
		if err := cl.Service(ctx, seed.AppsNS, name, nil, annots, port); err != nil {
			return err
		}
		if err := cl.SetServiceIP(ctx, seed.AppsNS, name, shared); err != nil {
			return err
		}
		if err := cl.Lease(ctx, seed.AppsNS, name, seed.NodeNames[i], now.Add(-time.Hour), now, 15, 1); err != nil {
			return err
		}
	}

	// A lease left behind by a Service that is gone: lease remediation (in
	// dry-run) would delete it after its grace.
	if err := cl.Lease(ctx, seed.AppsNS, "gone", seed.NodeNames[1], now.Add(-time.Hour), now.Add(-time.Hour), 15, 1); err != nil {
		return err
	}

	dmz := map[string]any{"matchLabels": map[string]any{"node-role.example.com/dmz": "true"}}
	if err := cl.PolicyWith(ctx, "l2-policy-dmz", dmz, "^bond0["); err != nil {
		return err
	}
	return cl.SetPolicyCondition(ctx, "l2-policy-dmz", "io.cilium/bad-interface-regex", "error parsing regexp: missing closing ]: `[`")
}
