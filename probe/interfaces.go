package probe

import (
	"fmt"
	"net"
)

// UpIPv4Interfaces lists the names of this host's interfaces that are up, are
// not loopback and have an IPv4 address: the interfaces an ARP probe can send
// from (and, on a node, those Cilium's L2 announcer can answer on). The
// listing reads the network namespace of the calling thread.
func UpIPv4Interfaces() ([]string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	var out []string
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		if hasIPv4(&ifc) {
			out = append(out, ifc.Name)
		}
	}
	return out, nil
}

// hasIPv4 reports whether ifi has an IPv4 address.
func hasIPv4(ifi *net.Interface) bool {
	addrs, err := ifi.Addrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return true
		}
	}
	return false
}
