package lab

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/lbprobe/lbprobe/probe"
	"github.com/lbprobe/lbprobe/test/netlab"
)

// Node is a cluster node of the lab: a namespace with eth0 on the bridge,
// an ARP responder for the load balancer IPs it announces, and listeners on
// every Service's TCP ports.
//
// By default a node behaves as Cilium does: it answers ARP for the load
// balancer IP of each Service whose L2 lease it holds and has renewed within
// the lease duration, and renews those leases. The controls change that.
type Node struct {
	Name string
	IP   netip.Addr
	NS   *netlab.Namespace
	MAC  net.HardwareAddr // of eth0, the MAC its ARP replies carry

	logf   func(string, ...any)
	h      *netlink.Handle // inside NS
	client *arp.Client     // socket created inside NS
	ndp    *packet.Conn    // IPv6 packet socket created inside NS
	wg     sync.WaitGroup

	mu        sync.Mutex
	silent    bool                // SetARP(false): no ARP nor NDP answers
	noNDP     [2]bool             // SetNDP: no answers to multicast [0], unicast [1] solicitations
	noRenew   bool                // SetRenew(false)
	held      map[netip.Addr]bool // from the leases, set by the stand-in
	forced    map[netip.Addr]bool // Announce
	listeners map[netip.AddrPort]net.Listener
	vips      map[netip.Addr]bool // on lo
	stopped   bool
}

// SetARP turns the node's ARP answers on or off. Off, the node keeps
// renewing its leases but answers no who-has: the LAN cannot reach the
// IPs it announces (cilium#48626).
func (n *Node) SetARP(on bool) {
	n.mu.Lock()
	n.silent = !on
	n.mu.Unlock()
}

// SetRenew turns lease renewal on or off. Off, the node's leases expire
// after their duration, and the node then stops answering for them, as a
// Cilium agent that lost its leadership does (another node may take the
// lease over: write it with seed.Cluster.Lease).
func (n *Node) SetRenew(on bool) {
	n.mu.Lock()
	n.noRenew = !on
	n.mu.Unlock()
}

// SetNDP turns the node's answers to IPv6 Neighbor Solicitations sent to
// the solicited-node multicast address and sent unicast on or off (Cilium
// answered one and dropped the other: cilium#41678, cilium#44311).
func (n *Node) SetNDP(multicast, unicast bool) {
	n.mu.Lock()
	n.noNDP = [2]bool{!multicast, !unicast}
	n.mu.Unlock()
}

// Announce makes the node answer ARP for ip whatever the leases say; with
// the lease holder answering too, that is a split brain.
func (n *Node) Announce(ip netip.Addr) {
	n.mu.Lock()
	n.forced[ip] = true
	n.mu.Unlock()
}

// Withdraw undoes Announce.
func (n *Node) Withdraw(ip netip.Addr) {
	n.mu.Lock()
	delete(n.forced, ip)
	n.mu.Unlock()
}

// Announced returns the IPs the node answers ARP for now, sorted.
func (n *Node) Announced() []netip.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.silent {
		return nil
	}
	var ips []netip.Addr
	for ip := range n.held {
		ips = append(ips, ip)
	}
	for ip := range n.forced {
		if !n.held[ip] {
			ips = append(ips, ip)
		}
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	return ips
}

func (n *Node) answers(ip netip.Addr) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.silent && (n.held[ip] || n.forced[ip])
}

func (n *Node) renewing() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.noRenew
}

// setHeld replaces the IPs the node's leases give it.
func (n *Node) setHeld(ips map[netip.Addr]bool) {
	n.mu.Lock()
	n.held = ips
	n.mu.Unlock()
}

// start opens the node's netlink handle and ARP socket inside its namespace
// and starts answering.
func (n *Node) start(logf func(string, ...any)) error {
	n.logf = logf
	n.held = map[netip.Addr]bool{}
	n.forced = map[netip.Addr]bool{}
	n.listeners = map[netip.AddrPort]net.Listener{}
	n.vips = map[netip.Addr]bool{}
	nsh, err := netns.GetFromName(n.NS.Name)
	if err != nil {
		return fmt.Errorf("open namespace: %w", err)
	}
	n.h, err = netlink.NewHandleAt(nsh)
	nsh.Close()
	if err != nil {
		return fmt.Errorf("netlink handle: %w", err)
	}
	if err := n.NS.Run(func() error {
		ifi, err := net.InterfaceByName(Interface)
		if err != nil {
			return err
		}
		if n.client, err = arp.Dial(ifi); err != nil {
			return err
		}
		n.ndp, err = packet.Listen(ifi, packet.Raw, 0x86dd, nil)
		return err
	}); err != nil {
		if n.client != nil {
			n.client.Close()
		}
		n.h.Close()
		return fmt.Errorf("ARP and NDP sockets on %s: %w", Interface, err)
	}
	n.wg.Go(n.respond)
	n.wg.Go(n.respondNDP)
	return nil
}

// respondNDP answers the Neighbor Solicitations for the IPv6 IPs the node
// announces, multicast and unicast as SetNDP allows.
func (n *Node) respondNDP() {
	buf := make([]byte, 1500)
	for {
		size, _, err := n.ndp.ReadFrom(buf)
		if err != nil {
			if !n.isStopped() {
				n.logf("lab: %s: NDP read: %v", n.Name, err)
			}
			return
		}
		f, ok := probe.ParseNDPFrame(buf[:size])
		if !ok || bytes.Equal(f.SrcMAC, n.MAC) {
			continue
		}
		ns, ok := f.Message.(*ndp.NeighborSolicitation)
		if !ok || !f.Src.IsValid() || f.Src.IsUnspecified() || !n.answers(ns.TargetAddress) {
			continue
		}
		mode := 1 // unicast
		if f.Dst.IsMulticast() {
			mode = 0
		}
		n.mu.Lock()
		drop := n.noNDP[mode]
		n.mu.Unlock()
		if drop {
			continue
		}
		frame, err := probe.AdvertisementFrame(n.MAC, f.SrcMAC, ns.TargetAddress, f.Src, ns.TargetAddress)
		if err == nil {
			_, err = n.ndp.WriteTo(frame, &packet.Addr{HardwareAddr: f.SrcMAC})
		}
		if err != nil && !n.isStopped() {
			n.logf("lab: %s: NDP advertisement of %s: %v", n.Name, ns.TargetAddress, err)
		}
	}
}

// respond answers who-has requests for the IPs the node announces.
func (n *Node) respond() {
	for {
		p, _, err := n.client.Read()
		if err != nil {
			if !n.isStopped() {
				n.logf("lab: %s: ARP read: %v", n.Name, err)
			}
			return
		}
		if p.Operation != arp.OperationRequest || bytes.Equal(p.SenderHardwareAddr, n.MAC) || !n.answers(p.TargetIP) {
			continue
		}
		if err := n.client.Reply(p, n.MAC, p.TargetIP); err != nil && !n.isStopped() {
			n.logf("lab: %s: ARP reply for %s: %v", n.Name, p.TargetIP, err)
		}
	}
}

func (n *Node) isStopped() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stopped
}

// serve puts ip on lo and listens on its TCP port inside the namespace,
// accepting and closing connections. It does nothing when already serving.
func (n *Node) serve(ap netip.AddrPort) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped || n.listeners[ap] != nil {
		return nil
	}
	if !n.vips[ap.Addr()] {
		lo, err := n.h.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("lo: %w", err)
		}
		bits := ap.Addr().BitLen()
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: ap.Addr().AsSlice(), Mask: net.CIDRMask(bits, bits)}}
		if bits == 128 {
			addr.Flags |= syscall.IFA_F_NODAD
		}
		if err := n.h.AddrAdd(lo, addr); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("add %s to lo: %w", ap.Addr(), err)
		}
		n.vips[ap.Addr()] = true
	}
	var ln net.Listener
	if err := n.NS.Run(func() error {
		var err error
		network := "tcp4"
		if ap.Addr().Is6() {
			network = "tcp6"
		}
		ln, err = net.Listen(network, ap.String())
		return err
	}); err != nil {
		return fmt.Errorf("listen on %s: %w", ap, err)
	}
	n.listeners[ap] = ln
	n.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
	return nil
}

// stop closes the ARP socket and listeners and waits for their goroutines.
func (n *Node) stop() {
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return
	}
	n.stopped = true
	for _, ln := range n.listeners {
		ln.Close()
	}
	n.mu.Unlock()
	if n.client != nil {
		n.client.Close()
	}
	if n.ndp != nil {
		n.ndp.Close()
	}
	n.wg.Wait()
	if n.h != nil {
		n.h.Close()
	}
}
