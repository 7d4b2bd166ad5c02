package collector

import (
	"net/netip"
	"strings"
	"testing"
)

// Label values built from DNS answers stay bounded however large the answer.
func TestJoinAddrsBounded(t *testing.T) {
	many := func(n int) []netip.Addr {
		out := make([]netip.Addr, n)
		for i := range out {
			out[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		}
		return out
	}
	tests := []struct {
		name string
		in   []netip.Addr
		want string
	}{
		{"none", nil, ""},
		{"sorted as text", []netip.Addr{netip.MustParseAddr("10.11.80.9"), netip.MustParseAddr("10.11.80.10")}, "10.11.80.10,10.11.80.9"},
		{"exactly the cap", many(MaxLabelAddrs), "10.0.0.0,10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.5,10.0.0.6,10.0.0.7"},
		{"one past the cap", many(MaxLabelAddrs + 1), "10.0.0.0,10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.5,10.0.0.6,10.0.0.7,+1 more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := JoinAddrs(tt.in); got != tt.want {
				t.Errorf("JoinAddrs = %q, want %q", got, tt.want)
			}
		})
	}
	// The 4,000-record answer made a 47,826-character label value.
	got := JoinAddrs(many(4000))
	if len(got) > 200 || !strings.HasSuffix(got, ",+3992 more") {
		t.Errorf("JoinAddrs of 4000 addresses = %d characters %q, want at most 200 ending in +3992 more", len(got), got)
	}
}
