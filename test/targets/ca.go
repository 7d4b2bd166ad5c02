package targets

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/netip"
	"time"
)

// CA is a generated certificate authority: a root, or an intermediate when
// made with a parent.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA makes a CA named name, valid from an hour ago for ten years,
// self-signed when parent is nil, else signed by parent (an intermediate).
func NewCA(name string, parent *CA) (*CA, error) {
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	cert, key, err := create(tmpl, parent)
	if err != nil {
		return nil, fmt.Errorf("CA %q: %w", name, err)
	}
	return &CA{Cert: cert, key: key}, nil
}

// Pool returns a pool holding only the CA's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// PEM returns the CA's certificate in PEM.
func (ca *CA) PEM() []byte {
	return pemCert(ca.Cert.Raw)
}

// LeafOptions describe a server certificate [CA.Issue] makes.
type LeafOptions struct {
	DNSNames            []string
	IPs                 []netip.Addr
	NotBefore, NotAfter time.Time
}

// Issue makes a server certificate signed by ca and returns it as a server
// presents it: the leaf, then chain (the intermediates to send along).
// Its Leaf field holds the parsed leaf.
func (ca *CA) Issue(opts LeafOptions, chain ...*CA) (tls.Certificate, error) {
	cn := "leaf"
	if len(opts.DNSNames) > 0 {
		cn = opts.DNSNames[0]
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    opts.DNSNames,
		NotBefore:   opts.NotBefore,
		NotAfter:    opts.NotAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, ip := range opts.IPs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
	}
	leaf, key, err := create(tmpl, ca)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("leaf %q: %w", cn, err)
	}
	served := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		served.Certificate = append(served.Certificate, c.Cert.Raw)
	}
	return served, nil
}

// create signs tmpl, with a new key and a random serial number, by parent
// (self-signed when parent is nil) and returns the parsed certificate and
// its key.
func create(tmpl *x509.Certificate, parent *CA) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key: %w", err)
	}
	if tmpl.SerialNumber, err = rand.Int(rand.Reader, big.NewInt(1<<62)); err != nil {
		return nil, nil, fmt.Errorf("serial number: %w", err)
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.Cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		return nil, nil, fmt.Errorf("creating certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing certificate: %w", err)
	}
	return cert, key, nil
}
