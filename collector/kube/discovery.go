// Package kube discovers probe targets and load-balancer state in a
// Kubernetes cluster with client-go informers.
//
// Discovery watches Services (cluster-wide), Nodes, the Cilium L2
// announcement Leases (in one namespace), and — when the cluster serves
// them — Gateway API Gateways and HTTPRoutes (gateway.networking.k8s.io/v1,
// typed clients) and Cilium's CiliumLoadBalancerIPPools and
// CiliumL2AnnouncementPolicies (dynamic clients; no Cilium module).
//
// Everything read at scrape time comes from the informer caches: Targets,
// Collect and ServiceStates never call the API server. An API that the
// cluster does not serve is switched off at Start (logged once at info) and
// its series are not emitted: unknown is not zero.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gatewayinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"
	gatewaylisters "sigs.k8s.io/gateway-api/pkg/client/listers/apis/v1"

	"github.com/lbprobe/lbprobe/collector"
	"github.com/lbprobe/lbprobe/probe"
)

// Resource names: the `resource` label of the lbprobe_kubernetes_* series.
const (
	ResourceServices     = "services"
	ResourceLeases       = "leases"
	ResourceNodes        = "nodes"
	ResourceGateways     = "gateways"
	ResourceHTTPRoutes   = "httproutes"
	ResourceGatewayClass = "gatewayclasses"
	ResourceEndpoints    = "endpointslices"
	ResourcePools        = "ciliumloadbalancerippools"
	ResourceL2Policies   = "ciliuml2announcementpolicies"
	gatewayGroupVersion  = "gateway.networking.k8s.io/v1"
	ciliumGroup          = "cilium.io"
	defaultSyncTimeout   = 60 * time.Second
	defaultHealthEvery   = 5 * time.Second
	healthCheckTimeout   = 3 * time.Second
	defaultCiliumNS      = "kube-system"
	defaultUserAgent     = "lbprobe"
	watchErrorHoldFactor = 3 // a watch error keeps a resource unsynced for this many health intervals
)

// allResources lists every resource in a stable order.
var allResources = []string{ResourceServices, ResourceEndpoints, ResourceLeases, ResourceNodes, ResourceGatewayClass, ResourceGateways, ResourceHTTPRoutes, ResourcePools, ResourceL2Policies,
	ResourceMetalLBPools, ResourceL2Advertisements, ResourceServiceL2Statuses}

// Options configure Discovery.
type Options struct {
	// CiliumNamespace is where Cilium writes its L2 announcement leases
	// (the agent's namespace); default "kube-system".
	CiliumNamespace string
	// DNSDomain is the k8s_gateway zone, e.g. "sbbh.cloud". Empty: no
	// Service DNS names are checked, and HTTPRoute hostnames are checked
	// whatever their zone.
	DNSDomain string
	// DNSServers are the DNS servers (host:port) asked for every hostname.
	// Empty: the ingress IPs of the LoadBalancer Services labelled
	// app.kubernetes.io/name=k8s-gateway, on their UDP port named dns* (else
	// port 53).
	DNSServers []string
	// SyncTimeout bounds WaitForSync; default 60 s.
	SyncTimeout time.Duration
	// HealthInterval is how often the API server's /readyz is checked for
	// lbprobe_kubernetes_synced; default 5 s.
	HealthInterval time.Duration
	// Now returns the current time (tests); default time.Now.
	Now func() time.Time
	// NodeName is the node lbprobe runs on (DaemonSet mode, --node.name);
	// empty elsewhere. With it, the L2 policies that select the node are
	// matched against its interfaces.
	NodeName string
	// Interfaces lists this host's up interfaces with an IPv4 address;
	// default probe.UpIPv4Interfaces. Read at every scrape with NodeName.
	Interfaces func() ([]string, error)
}

// clients are the API clients Discovery uses; tests pass fakes.
type clients struct {
	kube      kubernetes.Interface
	gateway   gatewayclient.Interface
	dynamic   dynamic.Interface
	discovery discovery.DiscoveryInterface
	// health checks that the API server answers (GET /readyz).
	health func(ctx context.Context) error
}

// Discovery serves targets and state series from informer caches.
type Discovery struct {
	opts   Options
	logger *slog.Logger
	c      clients

	settings atomic.Pointer[Settings]
	started  atomic.Bool // set once Start has filled in everything below
	ready    atomic.Bool

	// Written by Start before started is set, read-only afterwards.
	informers []*informerState
	services  corelisters.ServiceLister
	leases    coordinationlisters.LeaseNamespaceLister
	nodes     corelisters.NodeLister
	endpoints cache.Indexer                     // EndpointSlices, indexed by serviceIndex
	classes   gatewaylisters.GatewayClassLister // nil when the Gateway API is absent
	gateways  gatewaylisters.GatewayLister      // nil when the Gateway API is absent
	routes    gatewaylisters.HTTPRouteLister    // nil when the Gateway API is absent
	pools     cache.GenericLister               // nil when the pool CRD is absent
	policies  cache.GenericLister               // nil when the policy CRD is absent
	// MetalLB's IPAddressPools, L2Advertisements and ServiceL2Statuses; nil
	// when metallb.io/v1beta1 does not serve them.
	metallbPools, l2Adverts, l2Statuses cache.GenericLister
	enabled                             map[string]bool             // by resource
	poolGVR                             schema.GroupVersionResource // the version in use
	policyGVR                           schema.GroupVersionResource // the version in use

	mu           sync.Mutex
	healthy      bool      // the last health check succeeded
	healthySince time.Time // start of the first check of the current healthy streak
}

// informerState is one informer and its watch-error bookkeeping.
type informerState struct {
	resource string
	informer cache.SharedIndexInformer
	errors   atomic.Uint64
	lastErr  atomic.Int64 // unix nanoseconds of the last non-transient watch error; 0 = none
}

var (
	_ collector.Source = (*Discovery)(nil)
)

// New returns a Discovery for the cluster of cfg. It does not contact the
// API server; Start does.
func New(cfg *rest.Config, opts Options, logger *slog.Logger) (*Discovery, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.UserAgent == "" {
		cfg.UserAgent = defaultUserAgent
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kube: kubernetes client: %w", err)
	}
	gw, err := gatewayclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kube: gateway api client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kube: dynamic client: %w", err)
	}
	rc := kube.Discovery().RESTClient()
	health := func(ctx context.Context) error {
		return rc.Get().AbsPath("/readyz").Do(ctx).Error()
	}
	return newDiscovery(clients{kube: kube, gateway: gw, dynamic: dyn, discovery: kube.Discovery(), health: health}, opts, logger), nil
}

func newDiscovery(c clients, opts Options, logger *slog.Logger) *Discovery {
	if opts.CiliumNamespace == "" {
		opts.CiliumNamespace = defaultCiliumNS
	}
	if opts.SyncTimeout <= 0 {
		opts.SyncTimeout = defaultSyncTimeout
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = defaultHealthEvery
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Interfaces == nil {
		opts.Interfaces = probe.UpIPv4Interfaces
	}
	opts.DNSDomain = normalizeDomain(opts.DNSDomain)
	opts.DNSServers = append([]string(nil), opts.DNSServers...)
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if c.health == nil {
		c.health = func(context.Context) error { return nil }
	}
	d := &Discovery{opts: opts, logger: logger.With("component", "kube"), c: c, enabled: map[string]bool{}}
	d.settings.Store(&Settings{DNSDomain: opts.DNSDomain, DNSServers: opts.DNSServers})
	return d
}

// Settings are what a config reload may change while Discovery runs.
type Settings struct {
	DNSDomain  string           // as Options.DNSDomain
	DNSServers []string         // as Options.DNSServers
	TLS        probe.TLSOptions // how the TLS checks of HTTPS listeners verify certificates
}

// Configure replaces the settings; the next Targets and Collect use them.
func (d *Discovery) Configure(s Settings) {
	s.DNSDomain = normalizeDomain(s.DNSDomain)
	s.DNSServers = append([]string(nil), s.DNSServers...)
	d.settings.Store(&s)
}

// apis says which optional APIs the cluster serves.
type apis struct {
	gateway   bool
	metallb   bool // metallb.io/v1beta1 serves all three resources lbprobe reads
	poolGVR   *schema.GroupVersionResource
	policyGVR *schema.GroupVersionResource
}

// detect asks the discovery API which optional APIs exist. A group version
// that is not served is absent; any other error is returned.
func (d *Discovery) detect(ctx context.Context) (apis, error) {
	var a apis
	has := func(gv string, resources ...string) (bool, error) {
		list, err := d.c.discovery.ServerResourcesForGroupVersion(gv)
		if err != nil {
			if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
				return false, nil
			}
			return false, fmt.Errorf("kube: discovery of %s: %w", gv, err)
		}
		for _, want := range resources {
			found := false
			for _, r := range list.APIResources {
				if r.Name == want {
					found = true
					break
				}
			}
			if !found {
				return false, nil
			}
		}
		return true, nil
	}
	if ctx.Err() != nil {
		return a, ctx.Err()
	}
	ok, err := has(gatewayGroupVersion, ResourceGatewayClass, ResourceGateways, ResourceHTTPRoutes)
	if err != nil {
		return a, err
	}
	a.gateway = ok
	for _, v := range []string{"v2", "v2alpha1"} {
		ok, err := has(ciliumGroup+"/"+v, ResourcePools)
		if err != nil {
			return a, err
		}
		if ok {
			a.poolGVR = &schema.GroupVersionResource{Group: ciliumGroup, Version: v, Resource: ResourcePools}
			break
		}
	}
	for _, v := range []string{"v2alpha1", "v2"} {
		ok, err := has(ciliumGroup+"/"+v, ResourceL2Policies)
		if err != nil {
			return a, err
		}
		if ok {
			a.policyGVR = &schema.GroupVersionResource{Group: ciliumGroup, Version: v, Resource: ResourceL2Policies}
			break
		}
	}
	if a.metallb, err = has(metallbGroupVersion, ResourceMetalLBPools, ResourceL2Advertisements, ResourceServiceL2Statuses); err != nil {
		return a, err
	}
	return a, nil
}

// Start detects which optional APIs the cluster serves, starts the
// informers and the API health loop, and returns without waiting for the
// caches (see WaitForSync). Everything it starts stops when ctx ends. It
// fails when the API server cannot be asked, or when called twice.
func (d *Discovery) Start(ctx context.Context) error {
	if d.started.Load() || len(d.informers) > 0 {
		return errors.New("kube: already started")
	}
	checked := d.opts.Now()
	a, err := d.detect(ctx)
	if err != nil {
		return err
	}

	strip := cache.TransformFunc(stripObject)
	kf := informers.NewSharedInformerFactoryWithOptions(d.c.kube, 0, informers.WithTransform(strip))
	lf := informers.NewSharedInformerFactoryWithOptions(d.c.kube, 0, informers.WithTransform(strip), informers.WithNamespace(d.opts.CiliumNamespace))

	svc := kf.Core().V1().Services()
	d.services = svc.Lister()
	d.add(ResourceServices, svc.Informer())
	lease := lf.Coordination().V1().Leases()
	d.leases = lease.Lister().Leases(d.opts.CiliumNamespace)
	d.add(ResourceLeases, lease.Informer())
	eps := kf.Discovery().V1().EndpointSlices().Informer()
	if err := eps.AddIndexers(cache.Indexers{serviceIndex: endpointSliceService}); err != nil {
		return fmt.Errorf("kube: indexing EndpointSlices: %w", err)
	}
	d.endpoints = eps.GetIndexer()
	d.add(ResourceEndpoints, eps)
	node := kf.Core().V1().Nodes()
	d.nodes = node.Lister()
	d.add(ResourceNodes, node.Informer())

	var gf gatewayinformers.SharedInformerFactory
	if a.gateway {
		gf = gatewayinformers.NewSharedInformerFactoryWithOptions(d.c.gateway, 0, gatewayinformers.WithTransform(strip))
		classes := gf.Gateway().V1().GatewayClasses()
		d.classes = classes.Lister()
		d.add(ResourceGatewayClass, classes.Informer())
		gws := gf.Gateway().V1().Gateways()
		d.gateways = gws.Lister()
		d.add(ResourceGateways, gws.Informer())
		rts := gf.Gateway().V1().HTTPRoutes()
		d.routes = rts.Lister()
		d.add(ResourceHTTPRoutes, rts.Informer())
	} else {
		d.logger.Info("Gateway API not served, Gateway and HTTPRoute discovery off", "group_version", gatewayGroupVersion)
	}

	var df dynamicinformer.DynamicSharedInformerFactory
	if a.poolGVR != nil || a.policyGVR != nil || a.metallb {
		df = dynamicinformer.NewFilteredDynamicSharedInformerFactory(d.c.dynamic, 0, "", nil)
	}
	if a.poolGVR != nil {
		d.poolGVR = *a.poolGVR
		gi := df.ForResource(d.poolGVR)
		d.pools = gi.Lister()
		d.add(ResourcePools, gi.Informer())
	} else {
		d.logger.Info("CiliumLoadBalancerIPPool not served, pool series off", "group", ciliumGroup)
	}
	if a.policyGVR != nil {
		d.policyGVR = *a.policyGVR
		gi := df.ForResource(d.policyGVR)
		d.policies = gi.Lister()
		d.add(ResourceL2Policies, gi.Informer())
	} else {
		d.logger.Info("CiliumL2AnnouncementPolicy not served, loadbalancer_l2_policies off", "group", ciliumGroup)
	}

	if a.metallb {
		for _, r := range []struct {
			resource string
			lister   *cache.GenericLister
		}{{ResourceMetalLBPools, &d.metallbPools}, {ResourceL2Advertisements, &d.l2Adverts}, {ResourceServiceL2Statuses, &d.l2Statuses}} {
			gi := df.ForResource(schema.GroupVersionResource{Group: "metallb.io", Version: "v1beta1", Resource: r.resource})
			*r.lister = gi.Lister()
			d.add(r.resource, gi.Informer())
		}
	} else {
		d.logger.Info("MetalLB's metallb.io/v1beta1 not served, MetalLB announcers off")
	}

	for _, s := range d.informers {
		d.enabled[s.resource] = true
	}
	d.mu.Lock()
	d.healthy, d.healthySince = true, checked // detection just reached the API server
	d.mu.Unlock()

	kf.Start(ctx.Done())
	lf.Start(ctx.Done())
	if gf != nil {
		gf.Start(ctx.Done())
	}
	if df != nil {
		df.Start(ctx.Done())
	}
	go d.healthLoop(ctx)
	d.started.Store(true)
	d.logger.Info("kubernetes discovery started", "gateway_api", a.gateway,
		"pools", d.poolGVR.Version, "l2_policies", d.policyGVR.Version, "metallb", a.metallb, "cilium_namespace", d.opts.CiliumNamespace)
	return nil
}

// add registers an informer and its watch-error handler. Call before the
// informer starts.
func (d *Discovery) add(resource string, inf cache.SharedIndexInformer) {
	s := &informerState{resource: resource, informer: inf}
	logger := d.logger.With("resource", resource)
	// SetWatchErrorHandlerWithContext only fails once the informer has
	// started; it has not.
	_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		d.watchError(s, logger, err)
	})
	d.informers = append(d.informers, s)
}

// Enabled reports whether the resource's informer runs (false before Start
// and for APIs the cluster does not serve).
func (d *Discovery) Enabled(resource string) bool {
	if !d.started.Load() {
		return false
	}
	return d.enabled[resource]
}

// stripObject drops managed fields (and nodes' image lists) before objects
// enter the caches: nothing reads them and they are most of an object.
func stripObject(obj any) (any, error) {
	if a, err := meta.Accessor(obj); err == nil {
		a.SetManagedFields(nil)
	}
	if n, ok := obj.(*corev1.Node); ok {
		n.Status.Images = nil
	}
	return obj, nil
}

// Lease names are constructed from the Service, never parsed.
const l2LeasePrefix = "cilium-l2announce-"

// LeaseName is the name of Cilium's L2 announcement lease of the Service
// namespace/name (in the Cilium namespace).
func LeaseName(namespace, name string) string {
	return l2LeasePrefix + namespace + "-" + name
}

// leaseFor returns the Service's L2 announcement lease, or nil.
func (d *Discovery) leaseFor(namespace, name string) *coordinationv1.Lease {
	l, err := d.leases.Get(LeaseName(namespace, name))
	if err != nil {
		return nil
	}
	return l
}
