package targets

import (
	"crypto/x509"
	"net/netip"
	"testing"
	"time"
)

func TestCAIssue(t *testing.T) {
	root, err := NewCA("root", nil)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := NewCA("intermediate", root)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	valid := LeafOptions{DNSNames: []string{"lb.test"}, IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	tests := []struct {
		name    string
		issuer  *CA
		chain   []*CA
		dnsName string
		wantErr bool
	}{
		{name: "from the root", issuer: root, dnsName: "lb.test"},
		{name: "via the intermediate", issuer: inter, chain: []*CA{inter}, dnsName: "lb.test"},
		{name: "intermediate not sent", issuer: inter, dnsName: "lb.test", wantErr: true},
		{name: "another name", issuer: root, dnsName: "other.test", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert, err := tc.issuer.Issue(valid, tc.chain...)
			if err != nil {
				t.Fatal(err)
			}
			inters := x509.NewCertPool()
			for _, der := range cert.Certificate[1:] {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					t.Fatal(err)
				}
				inters.AddCert(c)
			}
			_, err = cert.Leaf.Verify(x509.VerifyOptions{Roots: root.Pool(), Intermediates: inters, DNSName: tc.dnsName})
			if (err != nil) != tc.wantErr {
				t.Fatalf("Verify: %v, want error %v", err, tc.wantErr)
			}
		})
	}
}
