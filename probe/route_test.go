package probe

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"

	"github.com/lbprobe/lbprobe/test/netlab"
)

// TestRoute looks routes up inside a namespace with a LAN interface eth0
// (192.168.7.10/24, a route to 10.11.0.0/16 via the LAN router) and a VPN
// interface tailscale0 (100.100.1.2/24) with a more specific route to
// 10.11.80.0/24 through it, and no default route.
func TestRoute(t *testing.T) {
	t.Parallel()
	lab := netlab.New(t) // skips unless root
	host := lab.Namespace("host")
	lan := lab.Namespace("lan")
	vpn := lab.Namespace("vpn")
	lab.Veth(host, "eth0", lan, "eth0")
	lab.Veth(host, "tailscale0", vpn, "eth0")
	host.Addr("eth0", "192.168.7.10/24")
	host.Addr("tailscale0", "100.100.1.2/24")
	host.WaitUp("eth0", "tailscale0")
	host.Route("10.11.0.0/16", "192.168.7.1", "eth0")
	host.Route("10.11.80.0/24", "100.100.1.1", "tailscale0")

	addr := netip.MustParseAddr
	tests := []struct {
		name    string
		ip      string
		want    RouteResult
		wantErr error
	}{
		{name: "on-link", ip: "192.168.7.77",
			want: RouteResult{Interface: "eth0", Source: addr("192.168.7.10")}},
		{name: "via the LAN router", ip: "10.11.81.5",
			want: RouteResult{Interface: "eth0", Gateway: addr("192.168.7.1"), Source: addr("192.168.7.10")}},
		{name: "more specific via tailscale0", ip: "10.11.80.5",
			want: RouteResult{Interface: "tailscale0", Gateway: addr("100.100.1.1"), Source: addr("100.100.1.2")}},
		{name: "ipv4-mapped ipv6", ip: "::ffff:10.11.80.5",
			want: RouteResult{Interface: "tailscale0", Gateway: addr("100.100.1.1"), Source: addr("100.100.1.2")}},
		{name: "local address", ip: "192.168.7.10",
			want: RouteResult{Interface: "lo", Source: addr("192.168.7.10")}},
		{name: "no route", ip: "198.51.100.1", wantErr: syscall.ENETUNREACH},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var (
				got RouteResult
				err error
			)
			if rerr := host.Run(func() error {
				got, err = Route(netip.MustParseAddr(tt.ip))
				return nil
			}); rerr != nil {
				t.Fatal(rerr)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("Route(%s) = %+v, %v; want error %v", tt.ip, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Route(%s) = %+v, %v; want %+v", tt.ip, got, err, tt.want)
			}
		})
	}
}

// TestRouteLoopback needs no root and no namespace: a route lookup sends
// nothing.
func TestRouteLoopback(t *testing.T) {
	t.Parallel()
	got, err := Route(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Interface != "lo" || got.Gateway.IsValid() {
		t.Errorf("Route(127.0.0.1) = %+v, want interface lo without a gateway", got)
	}
	if _, err := Route(netip.Addr{}); err == nil {
		t.Error("Route of the zero Addr succeeded")
	}
}
