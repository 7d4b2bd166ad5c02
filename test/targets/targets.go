// Package targets starts real peers on loopback for tests and for `make run`:
// TCP listeners, a DNS server answering from a table, a TLS server with a
// generated certificate. Everything binds to 127.0.0.0/8 only.
package targets

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// checkLoopback refuses any address outside 127.0.0.0/8 and ::1.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("address %q: targets bind to loopback addresses only", addr)
	}
	return nil
}

// TCP accepts connections on addr (e.g. "127.0.0.1:0") and closes them at
// once, until ctx ends. It returns the bound address.
func TCP(ctx context.Context, addr string) (netip.AddrPort, error) {
	if err := checkLoopback(addr); err != nil {
		return netip.AddrPort{}, err
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("listening on %s: %w", addr, err)
	}
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return netip.MustParseAddrPort(l.Addr().String()), nil
}

// Records is a DNS table: lower-case FQDN (with trailing dot) to addresses.
// A name mapped to nil answers NOERROR with no records; a name absent
// answers NXDOMAIN. Set is safe while the server runs.
type Records struct {
	mu sync.RWMutex
	m  map[string][]netip.Addr
}

// NewRecords returns a table from name -> addresses (names without the
// trailing dot are accepted).
func NewRecords(m map[string][]string) *Records {
	r := &Records{m: make(map[string][]netip.Addr)}
	for name, addrs := range m {
		r.Set(name, addrs...)
	}
	return r
}

// Set replaces the addresses of name.
func (r *Records) Set(name string, addrs ...string) {
	ips := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		ips = append(ips, netip.MustParseAddr(a))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[dns.Fqdn(strings.ToLower(name))] = ips
}

func (r *Records) lookup(name string) ([]netip.Addr, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ips, ok := r.m[strings.ToLower(name)]
	return ips, ok
}

// ServeDNS implements dns.Handler.
func (r *Records) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	if len(req.Question) != 1 {
		resp.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(resp)
		return
	}
	q := req.Question[0]
	ips, ok := r.lookup(q.Name)
	if !ok {
		resp.Rcode = dns.RcodeNameError
		_ = w.WriteMsg(resp)
		return
	}
	for _, ip := range ips {
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 5}
		switch {
		case q.Qtype == dns.TypeA && ip.Is4():
			hdr.Rrtype = dns.TypeA
			resp.Answer = append(resp.Answer, &dns.A{Hdr: hdr, A: ip.AsSlice()})
		case q.Qtype == dns.TypeAAAA && ip.Is6():
			hdr.Rrtype = dns.TypeAAAA
			resp.Answer = append(resp.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()})
		}
	}
	_ = w.WriteMsg(resp)
}

// DNS serves records over UDP and TCP on the same loopback address until
// ctx ends, and returns that address. With port 0 it retries until it finds
// a port free for both UDP and TCP.
func DNS(ctx context.Context, addr string, records dns.Handler) (netip.AddrPort, error) {
	if err := checkLoopback(addr); err != nil {
		return netip.AddrPort{}, err
	}
	_, port, _ := net.SplitHostPort(addr)
	var (
		pc  net.PacketConn
		l   net.Listener
		err error
	)
	for attempt := 0; ; attempt++ {
		pc, l, err = listenUDPAndTCP(ctx, addr)
		if err == nil || port != "0" || !errors.Is(err, syscall.EADDRINUSE) || attempt == 20 {
			break
		}
	}
	if err != nil {
		return netip.AddrPort{}, err
	}
	udp := &dns.Server{PacketConn: pc, Handler: records}
	tcp := &dns.Server{Listener: l, Handler: records}
	started := make(chan struct{}, 2)
	udp.NotifyStartedFunc = func() { started <- struct{}{} }
	tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	for range 2 {
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			return netip.AddrPort{}, errors.New("dns server did not start within 5s")
		}
	}
	go func() {
		<-ctx.Done()
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
	}()
	return netip.MustParseAddrPort(pc.LocalAddr().String()), nil
}

// listenUDPAndTCP binds UDP on addr, then TCP on the port UDP got.
func listenUDPAndTCP(ctx context.Context, addr string) (net.PacketConn, net.Listener, error) {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listening on udp %s: %w", addr, err)
	}
	bound := pc.LocalAddr().String()
	l, err := lc.Listen(ctx, "tcp", bound)
	if err != nil {
		pc.Close()
		return nil, nil, fmt.Errorf("listening on tcp %s: %w", bound, err)
	}
	return pc, l, nil
}

// Certificate is a generated CA and a leaf certificate signed by it.
type Certificate struct {
	CAPEM []byte
	Leaf  tls.Certificate
}

// NewCertificate makes a CA and a leaf for names valid between notBefore and
// notAfter.
func NewCertificate(names []string, notBefore, notAfter time.Time) (*Certificate, error) {
	ca, err := NewCA("lbprobe test CA", nil)
	if err != nil {
		return nil, err
	}
	leaf, err := ca.Issue(LeafOptions{DNSNames: names, NotBefore: notBefore, NotAfter: notAfter})
	if err != nil {
		return nil, err
	}
	return &Certificate{CAPEM: ca.PEM(), Leaf: leaf}, nil
}

// pemCert encodes a DER certificate as PEM.
func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TLS serves TLS handshakes with cert on addr until ctx ends; each
// connection is closed right after its handshake.
func TLS(ctx context.Context, addr string, cert tls.Certificate) (netip.AddrPort, error) {
	if err := checkLoopback(addr); err != nil {
		return netip.AddrPort{}, err
	}
	var lc net.ListenConfig
	inner, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("listening on %s: %w", addr, err)
	}
	l := tls.NewListener(inner, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
	return netip.MustParseAddrPort(inner.Addr().String()), nil
}

// SilentUDP reads and discards datagrams on addr until ctx ends: a DNS
// server that never answers. It returns the bound address.
func SilentUDP(ctx context.Context, addr string) (netip.AddrPort, error) {
	if err := checkLoopback(addr); err != nil {
		return netip.AddrPort{}, err
	}
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("listening on udp %s: %w", addr, err)
	}
	go func() {
		<-ctx.Done()
		pc.Close()
	}()
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return netip.MustParseAddrPort(pc.LocalAddr().String()), nil
}

// ClosedTCP reserves a TCP port on a loopback IPv4 address without
// listening on it, until ctx ends: connections to it are refused, and no
// other socket can take the port meanwhile.
func ClosedTCP(ctx context.Context, ip string) (netip.AddrPort, error) {
	fd, ap, err := boundTCP(ip, false)
	if err != nil {
		return netip.AddrPort{}, err
	}
	go func() {
		<-ctx.Done()
		syscall.Close(fd)
	}()
	return ap, nil
}

// boundTCP binds a TCP socket to a port of a loopback IPv4 address and,
// with listen, listens with backlog 0 (a queue of one connection).
func boundTCP(ip string, listen bool) (int, netip.AddrPort, error) {
	addr, err := netip.ParseAddr(ip)
	if err != nil || !addr.Is4() || !addr.IsLoopback() {
		return 0, netip.AddrPort{}, fmt.Errorf("address %q: a loopback IPv4 address is needed", ip)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, netip.AddrPort{}, fmt.Errorf("socket: %w", err)
	}
	fail := func(what string, err error) (int, netip.AddrPort, error) {
		syscall.Close(fd)
		return 0, netip.AddrPort{}, fmt.Errorf("%s: %w", what, err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: addr.As4()}); err != nil {
		return fail("bind "+ip, err)
	}
	if listen {
		if err := syscall.Listen(fd, 0); err != nil {
			return fail("listen", err)
		}
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	return fd, netip.AddrPortFrom(addr, uint16(sa.(*syscall.SockaddrInet4).Port)), nil
}

// BlackholedTCP listens on a loopback IPv4 address with an accept queue
// that is full and never drained, until ctx ends: the kernel drops every
// further SYN, so a connect neither succeeds nor is refused, it times out
// (a host that does not answer).
func BlackholedTCP(ctx context.Context, ip string) (netip.AddrPort, error) {
	fd, ap, err := boundTCP(ip, true)
	if err != nil {
		return netip.AddrPort{}, err
	}
	// Fill the queue: connections that complete until one does not.
	var fill []net.Conn
	for range 4 {
		c, err := net.DialTimeout("tcp", ap.String(), 100*time.Millisecond)
		if err != nil {
			break
		}
		fill = append(fill, c)
	}
	go func() {
		<-ctx.Done()
		for _, c := range fill {
			c.Close()
		}
		syscall.Close(fd)
	}()
	return ap, nil
}
