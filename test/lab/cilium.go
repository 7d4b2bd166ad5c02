package lab

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/lbprobe/lbprobe/test/seed"
)

// tick bounds how late the stand-in notices that a lease expired.
const tick = 250 * time.Millisecond

// cilium stands in for the Cilium agents of all nodes: it watches the
// Services and the L2 leases (through the API server on loopback, from the
// root namespace) and tells each node which IPs to answer ARP for, renews
// the leases of nodes that renew, and has every node serve the Services'
// TCP ports.
type cilium struct {
	client    kubernetes.Interface
	dynamic   dynamic.Interface
	impl      string // ImplCilium, ImplMetalLB or ImplKubeVIP: whose objects say who announces
	namespace string
	renewEach time.Duration
	elect     bool // a renewing node takes a Service's missing lease
	nodes     []*Node
	logf      func(string, ...any)

	services corelisters.ServiceLister
	leases   coordinationlisters.LeaseLister

	kick   chan struct{}
	synced chan chan struct{} // sync requests: closed after the next pass
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startCilium(ctx context.Context, cfg *rest.Config, namespace string, renewEach time.Duration, elect bool, impl string, nodes []*Node, logf func(string, ...any)) (*cilium, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "lbprobe-lab-" + impl
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	c := &cilium{
		client: client, dynamic: dyn, impl: impl, namespace: namespace, renewEach: renewEach, elect: elect, nodes: nodes, logf: logf,
		kick: make(chan struct{}, 1), synced: make(chan chan struct{}),
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel

	all := informers.NewSharedInformerFactory(client, 0)
	leaseNS := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace))
	svcInf := all.Core().V1().Services()
	leaseInf := leaseNS.Coordination().V1().Leases()
	c.services, c.leases = svcInf.Lister(), leaseInf.Lister()
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.poke() },
		UpdateFunc: func(any, any) { c.poke() },
		DeleteFunc: func(any) { c.poke() },
	}
	for _, inf := range []cache.SharedIndexInformer{svcInf.Informer(), leaseInf.Informer()} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			cancel()
			return nil, err
		}
	}
	all.Start(runCtx.Done())
	leaseNS.Start(runCtx.Done())
	stopFactories := func() { cancel(); all.Shutdown(); leaseNS.Shutdown() }
	for typ, ok := range all.WaitForCacheSync(ctx.Done()) {
		if !ok {
			stopFactories()
			return nil, fmt.Errorf("cache of %v not synced", typ)
		}
	}
	for typ, ok := range leaseNS.WaitForCacheSync(ctx.Done()) {
		if !ok {
			stopFactories()
			return nil, fmt.Errorf("cache of %v not synced", typ)
		}
	}
	c.wg.Go(func() { c.loop(runCtx) })
	c.wg.Go(func() { <-runCtx.Done(); all.Shutdown(); leaseNS.Shutdown() })
	if err := c.sync(ctx); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *cilium) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// sync waits for a full pass that starts after the call. Informer events
// of writes made before the call may still be in flight, so it first waits
// for the caches to hold the latest resource versions the API server has.
func (c *cilium) sync(ctx context.Context) error {
	if err := c.waitCaches(ctx); err != nil {
		return err
	}
	done := make(chan struct{})
	select {
	case c.synced <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitCaches waits until the listers have seen every lease and Service
// as the API server lists them now.
func (c *cilium) waitCaches(ctx context.Context) error {
	leases, err := c.client.CoordinationV1().Leases(c.namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list leases: %w", err)
	}
	svcs, err := c.client.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	for {
		fresh := true
		for _, l := range leases.Items {
			got, err := c.leases.Leases(l.Namespace).Get(l.Name)
			if err != nil || older(got.ResourceVersion, l.ResourceVersion) {
				fresh = false
			}
		}
		for _, s := range svcs.Items {
			got, err := c.services.Services(s.Namespace).Get(s.Name)
			if err != nil || older(got.ResourceVersion, s.ResourceVersion) {
				fresh = false
			}
		}
		if fresh {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("caches not caught up: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// older reports whether resource version a precedes b. Resource versions
// are opaque to clients, but kube-apiserver's come from etcd's revision, an
// integer; anything else counts as not older.
func older(a, b string) bool {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	return errA == nil && errB == nil && x < y
}

func (c *cilium) loop(ctx context.Context) {
	t := time.NewTicker(tick)
	defer t.Stop()
	lastRenew := time.Now()
	for {
		var done chan struct{}
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-t.C:
		case done = <-c.synced:
		}
		renew := time.Since(lastRenew) >= c.renewEach
		if renew {
			lastRenew = time.Now()
		}
		c.pass(ctx, renew)
		if done != nil {
			close(done)
		}
	}
}

// pass applies the Services and leases to the nodes, renewing the leases of
// renewing nodes when renew is set.
func (c *cilium) pass(ctx context.Context, renew bool) {
	svcs, err := c.services.List(labels.Everything())
	if err != nil {
		c.logf("lab: cilium: list services: %v", err)
		return
	}
	now := time.Now()
	held := make(map[string]map[netip.Addr]bool, len(c.nodes))
	for _, n := range c.nodes {
		held[n.Name] = map[netip.Addr]bool{}
	}
	for _, svc := range svcs {
		ips := ingressIPs(svc)
		if len(ips) == 0 {
			continue
		}
		for _, n := range c.nodes {
			for _, ip := range ips {
				for _, p := range svc.Spec.Ports {
					if p.Protocol != corev1.ProtocolTCP && p.Protocol != "" {
						continue
					}
					if err := n.serve(netip.AddrPortFrom(ip, uint16(p.Port))); err != nil {
						c.logf("lab: %s: serve %s/%s: %v", n.Name, svc.Namespace, svc.Name, err)
					}
				}
			}
		}
		for _, holder := range c.announcers(ctx, svc, now, renew) {
			if _, ok := held[holder]; !ok {
				continue // not a lab node
			}
			for _, ip := range ips {
				held[holder][ip] = true
			}
		}
	}
	for _, n := range c.nodes {
		n.setHeld(held[n.Name])
	}
}

// announcers are the nodes that announce svc, as the implementation's
// objects say, electing and renewing as it would.
func (c *cilium) announcers(ctx context.Context, svc *corev1.Service, now time.Time, renew bool) []string {
	switch c.impl {
	case ImplMetalLB:
		return c.metallbSpeakers(ctx, svc)
	case ImplKubeVIP:
		if svc.Spec.LoadBalancerClass == nil || *svc.Spec.LoadBalancerClass != kubeVIPClass {
			return nil
		}
		return c.leaseHolder(ctx, svc, "kubevip-"+svc.Name, now, renew)
	}
	// The lease name is built from the Service, never parsed: namespaces
	// and names both contain hyphens.
	return c.leaseHolder(ctx, svc, seed.LeaseName(svc.Namespace, svc.Name), now, renew)
}

// leaseHolder is the holder of the Service's lease name while it is valid,
// taking it with Elect when it does not exist and renewing it.
func (c *cilium) leaseHolder(ctx context.Context, svc *corev1.Service, name string, now time.Time, renew bool) []string {
	lease, err := c.leases.Leases(c.namespace).Get(name)
	if apierrors.IsNotFound(err) && c.elect {
		lease, err = c.takeLease(ctx, svc, name, now)
	}
	if err != nil || lease == nil || lease.Spec.HolderIdentity == nil || !valid(lease, now) {
		return nil
	}
	holder := *lease.Spec.HolderIdentity
	if renew {
		if n := c.node(holder); n != nil && n.renewing() {
			c.renewLease(ctx, lease, now)
		}
	}
	if c.impl == ImplKubeVIP && svc.Annotations[kubeVIPHostAnnotation] != holder {
		c.setVIPHost(ctx, svc, holder)
	}
	return []string{holder}
}

func (c *cilium) node(name string) *Node {
	for _, n := range c.nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// firstRenewing is the node that wins an election: the first that renews;
// nil when none does.
func (c *cilium) firstRenewing() *Node {
	for _, n := range c.nodes {
		if n.renewing() {
			return n
		}
	}
	return nil
}

// takeLease creates a Service's lease held by the first renewing node, as
// the agent that wins Cilium's (or kube-vip's) election would; nil when no
// node renews.
func (c *cilium) takeLease(ctx context.Context, svc *corev1.Service, name string, now time.Time) (*coordinationv1.Lease, error) {
	holder := c.firstRenewing()
	if holder == nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	t := metav1.MicroTime{Time: now}
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.namespace},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: &holder.Name, LeaseDurationSeconds: ptr.To[int32](15),
			AcquireTime: &t, RenewTime: &t, LeaseTransitions: ptr.To[int32](0),
		},
	}
	created, err := c.client.CoordinationV1().Leases(c.namespace).Create(ctx, l, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// Taken in an earlier pass that the cache has not seen yet.
		return c.client.CoordinationV1().Leases(c.namespace).Get(ctx, l.Name, metav1.GetOptions{})
	}
	if err != nil {
		c.logf("lab: %s: elect %s for %s/%s: %v", c.impl, holder.Name, svc.Namespace, svc.Name, err)
		return nil, err
	}
	c.logf("lab: %s: %s took the lease %s of %s/%s", c.impl, holder.Name, name, svc.Namespace, svc.Name)
	return created, nil
}

// renewLease writes a new renewTime. A conflict (the test rewrote the
// lease meanwhile) is left for the next pass.
func (c *cilium) renewLease(ctx context.Context, lease *coordinationv1.Lease, now time.Time) {
	l := lease.DeepCopy()
	l.Spec.RenewTime = &metav1.MicroTime{Time: now}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.client.CoordinationV1().Leases(l.Namespace).Update(ctx, l, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) {
		c.logf("lab: cilium: renew lease %s: %v", l.Name, err)
	}
}

// valid reports whether the lease was renewed within its duration.
func valid(l *coordinationv1.Lease, now time.Time) bool {
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return false
	}
	return now.Before(l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second))
}

// ingressIPs returns the Service's load balancer IPs inside the lab subnet.
func ingressIPs(svc *corev1.Service) []netip.Addr {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return nil
	}
	var ips []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		ip, err := netip.ParseAddr(in.IP)
		if err == nil && (Subnet.Contains(ip) || Subnet6.Contains(ip)) {
			ips = append(ips, ip)
		}
	}
	return ips
}

func (c *cilium) stop() {
	c.cancel()
	c.wg.Wait()
}
