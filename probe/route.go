package probe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// RouteResult is the kernel's route to an address.
type RouteResult struct {
	Interface string     // outgoing interface name
	Gateway   netip.Addr // next hop; invalid when the target is on-link
	Source    netip.Addr // preferred source address; invalid when the kernel gives none
}

// Route asks the kernel which route it would take to ip (netlink RTM_GETROUTE,
// as `ip route get`). It sends nothing on the network. It tells, for
// instance, whether a LoadBalancer IP is reached over the LAN interface or a
// VPN such as tailscale0, where ARP would not apply. The lookup runs in the
// network namespace of the calling thread. No route is an error wrapping
// syscall.ENETUNREACH.
func Route(ip netip.Addr) (RouteResult, error) {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return RouteResult{}, errors.New("route: invalid target: no IP address")
	}
	routes, err := netlink.RouteGet(net.IP(ip.AsSlice()))
	if err != nil {
		return RouteResult{}, fmt.Errorf("route to %s: %w", ip, err)
	}
	if len(routes) == 0 {
		return RouteResult{}, fmt.Errorf("route to %s: the kernel returned no route", ip)
	}
	r := routes[0]
	var res RouteResult
	if r.LinkIndex > 0 {
		link, err := netlink.LinkByIndex(r.LinkIndex)
		if err != nil {
			return RouteResult{}, fmt.Errorf("route to %s: interface %d: %w", ip, r.LinkIndex, err)
		}
		res.Interface = link.Attrs().Name
	}
	res.Gateway = addrFromIP(r.Gw)
	if !res.Gateway.IsValid() {
		if via, ok := r.Via.(*netlink.Via); ok {
			res.Gateway = addrFromIP(via.Addr) // e.g. an IPv4 route via an IPv6 next hop
		}
	}
	res.Source = addrFromIP(r.Src)
	return res, nil
}

// addrFromIP converts ip, unmapped; nil gives the invalid Addr.
func addrFromIP(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}
