// Over 400 lines on purpose: the Lab's lifecycle (Start, stop, signals, the root-namespace check); node.go, cilium.go, apiproxy.go and lbprobe.go hold the rest.

// Package lab builds, in network namespaces, a copy of the reference LAN
// that lbprobe watches: one bridge (10.11.80.0/24) with
//
//   - "router" (10.11.80.1), the LAN host where the LAN prober runs;
//   - "cp" (10.11.80.100), where the Kubernetes API server answers on :6443:
//     an in-process proxy to a real API server on 127.0.0.1 (package
//     kubecluster);
//   - the nodes k8s-nuc (.11), k8s-opti-01 (.12) and k8s-opti-02 (.13), each
//     with eth0 on the bridge and a Cilium stand-in: it answers ARP who-has
//     for the load balancer IPs whose L2 lease (cilium-l2announce-<ns>-<svc>
//     in kube-system) the node holds, renews those leases, and serves every
//     Service's TCP ports on its load balancer IPs (held on lo, as Cilium's
//     datapath serves them on every node).
//
// Controls on [Node] reproduce the failures of L2 announcements: a node that
// renews its lease but does not answer ARP (cilium#48626), one that stops
// renewing, two nodes answering (split brain).
//
// Safety: the root network namespace routes off the machine, so nothing here
// sends a packet to a non-loopback address from it. Every socket that talks
// to a lab address is created inside a lab namespace with [netlab.Run] (see
// [Lab.Dial]); the stand-in's API clients and the proxy's dials go to
// 127.0.0.1 only. [Start] refuses to build the lab when the root namespace
// has an address in the lab's subnet or a route into it through a lab link.
// Everything is torn down by t.Cleanup, and on SIGINT or SIGTERM.
//
// Every lab needs root; [Start] skips the test otherwise.
package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/lbprobe/lbprobe/test/netlab"
	"github.com/lbprobe/lbprobe/test/seed"
)

// Addresses of the lab's hosts besides the nodes and load balancer IPs
// (seed.Reference gives those).
var (
	// Subnet is the reference LAN; every lab address lives in it.
	Subnet = netip.MustParsePrefix("10.11.80.0/24")
	// Subnet6 is the LAN's IPv6 prefix (dual stack): each host also has
	// fd00:11:80::<its IPv4 address's last byte, in hex>, and a Service's IPv6
	// load balancer IPs are announced by NDP, as Cilium does.
	Subnet6 = netip.MustParsePrefix("fd00:11:80::/64")
	// RouterIP is the LAN host that runs the LAN prober.
	RouterIP = netip.MustParseAddr("10.11.80.1")
	// APIServer is where the lab's hosts reach the Kubernetes API server.
	APIServer = netip.MustParseAddrPort("10.11.80.100:6443")
)

// Interface is the name of each host's interface on the bridge.
const Interface = "eth0"

// bridge is the bridge's name inside the switch namespace.
const bridge = "br-lan"

// Options configure [Start].
type Options struct {
	// RESTConfig reaches the real API server on 127.0.0.1 (from
	// kubecluster.Cluster.RESTConfig). Required.
	RESTConfig *rest.Config
	// Addrs are the cluster's addresses; zero means seed.Reference(). The
	// node addresses and every load balancer IP must lie in [Subnet].
	Addrs seed.Addresses
	// CiliumNamespace holds the L2 leases; empty means seed.CiliumNamespace.
	CiliumNamespace string
	// RenewInterval is how often a node renews the leases it holds; zero
	// means 2s (Cilium's retry period).
	RenewInterval time.Duration
	// Elect: like Cilium's agents, a renewing node creates the lease of a
	// load balancer Service that has none, and holds it. Off, only the
	// tests write leases.
	Elect bool
	// Implementation is the L2 announcer the nodes stand in for:
	// ImplCilium (the default), ImplMetalLB or ImplKubeVIP (see [Node]).
	Implementation string
}

// The L2 implementations the nodes can stand in for.
const (
	// ImplCilium: a node answers for the Services whose lease
	// cilium-l2announce-<ns>-<svc> it holds and renews.
	ImplCilium = "cilium"
	// ImplMetalLB: a node answers for the Services whose ServiceL2Status
	// (metallb.io/v1beta1, in the lease namespace) names it, as MetalLB's
	// speaker does; with Elect, the first renewing node writes the status of
	// a Service that MetalLB gave an IP (metallb.io/ip-allocated-from-pool)
	// from a pool an L2Advertisement announces. The API server needs
	// MetalLB's CRDs (kubecluster.MetalLBCRDDir).
	ImplMetalLB = "metallb"
	// ImplKubeVIP: a node answers for the Services whose lease
	// kubevip-<svc> (in the lease namespace) it holds and renews, and writes
	// kube-vip.io/vipHost on them, as kube-vip with service election does;
	// with Elect, the first renewing node takes the lease of a Service of
	// class kube-vip.io/kube-vip-class.
	ImplKubeVIP = "kube-vip"
)

// Lab is a running reference LAN. Its methods are safe for concurrent use
// unless noted.
type Lab struct {
	Router *netlab.Namespace // 10.11.80.1, the LAN prober's host
	CP     *netlab.Namespace // 10.11.80.100, the API server's address
	Switch *netlab.Namespace // holds the bridge
	Nodes  []*Node           // in seed.NodeNames order
	Addrs  seed.Addresses

	t          testing.TB
	restConfig *rest.Config
	proxy      *apiProxy
	cilium     *cilium
	stopOnce   sync.Once
	stopSignal func()
}

// Start builds the lab for t and starts the API proxy and the Cilium
// stand-in; it returns once the stand-in has read the Services and leases
// and applied them. The lab is torn down when t ends. Start fails t if the
// lab would not be isolated from the root network namespace, and skips t
// when not run as root.
func Start(t testing.TB, opts Options) *Lab {
	t.Helper()
	if opts.RESTConfig == nil {
		t.Fatal("lab: Options.RESTConfig is required")
	}
	if opts.Addrs == (seed.Addresses{}) {
		opts.Addrs = seed.Reference()
	}
	if opts.CiliumNamespace == "" {
		opts.CiliumNamespace = seed.CiliumNamespace
	}
	if opts.RenewInterval <= 0 {
		opts.RenewInterval = 2 * time.Second
	}
	switch opts.Implementation {
	case "":
		opts.Implementation = ImplCilium
	case ImplCilium, ImplMetalLB, ImplKubeVIP:
	default:
		t.Fatalf("lab: Options.Implementation %q is not %s, %s or %s", opts.Implementation, ImplCilium, ImplMetalLB, ImplKubeVIP)
	}
	backend, err := loopbackHostPort(opts.RESTConfig.Host)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	hosts := []netip.Addr{RouterIP, APIServer.Addr()}
	hosts = append(hosts, opts.Addrs.Nodes[:]...)
	lbIPs := []netip.Addr{opts.Addrs.External, opts.Addrs.Internal, opts.Addrs.DNS, opts.Addrs.Legacy}
	for _, ip := range append(hosts, lbIPs...) {
		if !Subnet.Contains(ip) {
			t.Fatalf("lab: address %s is outside the lab subnet %s", ip, Subnet)
		}
	}
	// Before anything exists: the root namespace must not own the subnet.
	if err := checkRoot(nil); err != nil {
		t.Fatalf("lab: refusing to start: %v", err)
	}

	begin := time.Now()
	nl := netlab.New(t) // skips when not root
	l := &Lab{t: t, Addrs: opts.Addrs, restConfig: rest.CopyConfig(opts.RESTConfig)}
	l.Switch = nl.Namespace("switch")
	l.Switch.Bridge(bridge)
	l.Router = l.host(nl, "router", RouterIP)
	l.CP = l.host(nl, "cp", APIServer.Addr())
	for i, name := range seed.NodeNames {
		ns := l.host(nl, name, opts.Addrs.Nodes[i])
		// The kernel must not answer ARP for the load balancer IPs on
		// lo (the stand-in decides), nor use them as ARP sender address.
		ns.Sysctl("net.ipv4.conf.all.arp_ignore", "1")
		ns.Sysctl("net.ipv4.conf."+Interface+".arp_ignore", "1")
		ns.Sysctl("net.ipv4.conf.all.arp_announce", "2")
		ns.Sysctl("net.ipv4.conf."+Interface+".arp_announce", "2")
		l.Nodes = append(l.Nodes, &Node{Name: name, IP: opts.Addrs.Nodes[i], NS: ns, MAC: ns.MAC(Interface)})
	}
	l.Switch.WaitUp(bridge)
	for _, ns := range l.namespaces()[1:] {
		ns.WaitUp(Interface)
	}
	// Now the lab exists: the root namespace must still not reach it.
	if err := checkRoot(l.namespaces()); err != nil {
		t.Fatalf("lab: refusing to start: %v", err)
	}
	t.Cleanup(l.stop)
	l.handleSignals()

	if l.proxy, err = startProxy(l.CP, APIServer, backend, t.Logf); err != nil {
		t.Fatalf("lab: %v", err)
	}
	for _, n := range l.Nodes {
		if err := n.start(t.Logf); err != nil {
			t.Fatalf("lab: node %s: %v", n.Name, err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if l.cilium, err = startCilium(ctx, l.restConfig, opts.CiliumNamespace, opts.RenewInterval, opts.Elect, opts.Implementation, l.Nodes, t.Logf); err != nil {
		t.Fatalf("lab: Cilium stand-in: %v", err)
	}
	t.Logf("lab: started in %s (router %s, API server %s, nodes %v)", time.Since(begin).Round(time.Millisecond), l.Router.Name, APIServer, seed.NodeNames)
	return l
}

// host creates a namespace plugged into the bridge with ip/24 on eth0.
func (l *Lab) host(nl *netlab.Lab, label string, ip netip.Addr) *netlab.Namespace {
	l.t.Helper()
	ns := nl.Namespace(label)
	l.Switch.Connect(bridge, portName(label), ns, Interface, netip.PrefixFrom(ip, Subnet.Bits()).String(),
		netip.PrefixFrom(IPv6Of(ip), Subnet6.Bits()).String())
	return ns
}

// IPv6Of is a lab host's IPv6 address: fd00:11:80::<ip's last byte>.
func IPv6Of(ip netip.Addr) netip.Addr {
	b := Subnet6.Addr().As16()
	b[15] = ip.As4()[3]
	return netip.AddrFrom16(b)
}

// portName is the bridge port of a host: "p-" and the label, at most 15
// characters.
func portName(label string) string {
	name := "p-" + label
	if len(name) > 15 {
		name = name[:15]
	}
	return name
}

func (l *Lab) namespaces() []*netlab.Namespace {
	nss := []*netlab.Namespace{l.Switch, l.Router, l.CP}
	for _, n := range l.Nodes {
		nss = append(nss, n.NS)
	}
	return nss
}

// Node returns the node named name, or nil.
func (l *Lab) Node(name string) *Node {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Dial connects from inside ns (e.g. l.Router) to addr. The socket is
// created in ns, so the connection stays in the lab; it may then be used
// from any goroutine. Use it as an http.Transport's DialContext to reach a
// lab address from the test.
func Dial(ctx context.Context, ns *netlab.Namespace, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := ns.Run(func() error {
		// One literal address and no fallback: the dial runs on this
		// goroutine, hence on the namespace's thread.
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return fmt.Errorf("lab: dial %s: want a literal ip:port: %w", addr, err)
		}
		var d net.Dialer
		conn, err = d.DialContext(ctx, network, ap.String())
		return err
	})
	return conn, err
}

// RESTConfig returns a client configuration for the API server as the lab's
// hosts reach it (https://10.11.80.100:6443; the serving certificate names
// 127.0.0.1, so TLS verifies that name). Use it from inside the lab only:
// run the client in a lab namespace, or dial with [Dial].
func (l *Lab) RESTConfig() *rest.Config {
	cfg := rest.CopyConfig(l.restConfig)
	cfg.Host = "https://" + APIServer.String()
	cfg.TLSClientConfig.ServerName = "127.0.0.1"
	return cfg
}

// WriteKubeconfig writes a kubeconfig file for [Lab.RESTConfig] (the
// admin's token) to path, for an lbprobe binary run in a lab namespace.
func (l *Lab) WriteKubeconfig(path string) error {
	cfg := l.RESTConfig()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["lab"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData, TLSServerName: cfg.ServerName}
	kc.AuthInfos["lab"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["lab"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: "lab"}
	kc.CurrentContext = "lab"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("lab: writing kubeconfig %s: %w", path, err)
	}
	return nil
}

// Sync waits until the Cilium stand-in has applied every change to the
// Services and leases made before the call (ARP answers follow at once).
func (l *Lab) Sync(ctx context.Context) error { return l.cilium.sync(ctx) }

// SetAPIReachable ends (true) or starts (false) an outage of the API server
// as the lab's hosts see it: the proxy at [APIServer] closes every
// connection. The Cilium stand-in, which reaches the API server on
// loopback, is not affected.
func (l *Lab) SetAPIReachable(on bool) { l.proxy.setPaused(!on) }

// stop ends the stand-in, the responders and the proxy; the namespaces go
// with netlab's own cleanup.
func (l *Lab) stop() {
	l.stopOnce.Do(func() {
		if l.stopSignal != nil {
			l.stopSignal()
		}
		if l.cilium != nil {
			l.cilium.stop()
		}
		for _, n := range l.Nodes {
			n.stop()
		}
		if l.proxy != nil {
			l.proxy.stop()
		}
	})
}

// handleSignals tears the lab down on SIGINT or SIGTERM (t.Cleanup does not
// run then: the process dies of the signal) and raises the signal again.
// Child processes (lbprobe, kubecluster's servers) die with the process.
func (l *Lab) handleSignals() {
	ch := make(chan os.Signal, 1)
	done := make(chan struct{})
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	names := make([]string, 0, len(l.namespaces()))
	for _, ns := range l.namespaces() {
		names = append(names, ns.Name)
	}
	go func() {
		select {
		case <-done:
			return
		case sig := <-ch:
			signal.Stop(ch)
			for _, name := range names {
				if err := netlab.Delete(name); err != nil {
					fmt.Fprintf(os.Stderr, "lab: on %v: %v\n", sig, err)
				}
			}
			fmt.Fprintf(os.Stderr, "lab: %v: deleted namespaces %v\n", sig, names)
			// Die of the signal; if it is ignored (as in a background
			// job of a non-interactive shell), exit anyway.
			signal.Reset(sig)
			_ = syscall.Kill(os.Getpid(), sig.(syscall.Signal))
			time.Sleep(time.Second)
			os.Exit(128 + int(sig.(syscall.Signal)))
		}
	}()
	l.stopSignal = func() {
		signal.Stop(ch)
		close(done)
	}
}

// loopbackHostPort returns the host:port of an https://127.x URL: the proxy
// dials it from the root namespace, which is safe for loopback only.
func loopbackHostPort(host string) (netip.AddrPort, error) {
	u, err := url.Parse(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("API server URL %q: %w", host, err)
	}
	ap, err := netip.ParseAddrPort(u.Host)
	if err != nil || !ap.Addr().IsLoopback() {
		return netip.AddrPort{}, fmt.Errorf("API server %q is not a loopback ip:port; the lab proxies to loopback only", host)
	}
	return ap, nil
}

// checkRoot returns an error when the root network namespace (the one this
// process runs in) has an address in Subnet, or a route into Subnet through
// a link whose peer is in one of labs' namespaces.
func checkRoot(labs []*netlab.Namespace) error {
	self, err := netns.GetFromPath("/proc/self/ns/net")
	if err != nil {
		return fmt.Errorf("open the root network namespace: %w", err)
	}
	defer self.Close()
	h, err := netlink.NewHandleAt(self)
	if err != nil {
		return fmt.Errorf("netlink in the root namespace: %w", err)
	}
	defer h.Close()

	addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list root addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && Subnet.Contains(ip) {
			return fmt.Errorf("the root network namespace has %s, inside the lab subnet %s", a.IPNet, Subnet)
		}
	}
	addrs6, err := h.AddrList(nil, netlink.FAMILY_V6)
	if err != nil {
		return fmt.Errorf("list root IPv6 addresses: %w", err)
	}
	for _, a := range addrs6 {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && Subnet6.Contains(ip) {
			return fmt.Errorf("the root network namespace has %s, inside the lab subnet %s", a.IPNet, Subnet6)
		}
	}

	labIDs := map[int]string{}
	for _, ns := range labs {
		fd, err := netns.GetFromName(ns.Name)
		if err != nil {
			return fmt.Errorf("open %s: %w", ns.Name, err)
		}
		id, err := h.GetNetNsIdByFd(int(fd))
		fd.Close()
		if err == nil && id >= 0 {
			labIDs[id] = ns.Name
		}
	}
	links, err := h.LinkList()
	if err != nil {
		return fmt.Errorf("list root links: %w", err)
	}
	labLink := map[int]string{}
	for _, lk := range links {
		a := lk.Attrs()
		if name, ok := labIDs[a.NetNsID]; ok {
			labLink[a.Index] = fmt.Sprintf("%s (peer in %s)", a.Name, name)
		}
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: syscall.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list root routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue // default route: leaves the machine, never into a lab link
		}
		p, ok := netip.AddrFromSlice(r.Dst.IP.To4())
		ones, _ := r.Dst.Mask.Size()
		if !ok || !netip.PrefixFrom(p, ones).Overlaps(Subnet) {
			continue
		}
		if what, ok := labLink[r.LinkIndex]; ok {
			return fmt.Errorf("the root namespace routes %s through lab link %s", r.Dst, what)
		}
	}
	if len(labLink) > 0 {
		return errors.New("the root namespace holds links whose peers are in the lab")
	}
	return nil
}
