package lab

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"

	"github.com/lbprobe/lbprobe/test/netlab"
)

// apiProxy forwards TCP connections from a listener inside a lab namespace
// to the real API server on loopback in the root namespace. TLS passes
// through untouched.
type apiProxy struct {
	ln      net.Listener
	backend netip.AddrPort
	logf    func(string, ...any)

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	paused bool // an API outage: connections are closed at once
	wg     sync.WaitGroup
}

// setPaused starts (true) or ends an outage: while paused, every
// connection is closed as soon as it is accepted, and pausing closes those
// open.
func (p *apiProxy) setPaused(paused bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = paused
	if paused {
		for c := range p.conns {
			c.Close()
		}
	}
}

// startProxy listens on listen inside ns and forwards to backend, which must
// be a loopback address (dialled from the root namespace).
func startProxy(ns *netlab.Namespace, listen, backend netip.AddrPort, logf func(string, ...any)) (*apiProxy, error) {
	if !backend.Addr().IsLoopback() {
		return nil, fmt.Errorf("API proxy: backend %s is not loopback", backend)
	}
	p := &apiProxy{backend: backend, logf: logf, conns: map[net.Conn]struct{}{}}
	if err := ns.Run(func() error {
		var err error
		p.ln, err = net.Listen("tcp4", listen.String())
		return err
	}); err != nil {
		return nil, fmt.Errorf("API proxy: listen on %s in %s: %w", listen, ns.Name, err)
	}
	p.wg.Go(p.accept)
	return p, nil
}

func (p *apiProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.logf("lab: API proxy: accept: %v", err)
			}
			return
		}
		if p.isPaused() {
			c.Close()
			continue
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Go(func() { p.forward(c) })
	}
}

func (p *apiProxy) isPaused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// track records c for stop; false when the proxy is stopping.
func (p *apiProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}

	p.conns[c] = struct{}{}
	return true
}

func (p *apiProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// forward copies between the lab client c and a new loopback connection.
func (p *apiProxy) forward(c net.Conn) {
	defer p.untrack(c)
	// Loopback (checked in startProxy), from the root namespace: safe.
	b, err := net.Dial("tcp4", p.backend.String())
	if err != nil {
		p.logf("lab: API proxy: dial %s: %v", p.backend, err)
		return
	}
	if !p.track(b) {
		b.Close()
		return
	}
	defer p.untrack(b)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(b, c)
	go pipe(c, b)
	<-done
	<-done
}

// stop closes the listener and every connection and waits for the
// forwarding goroutines.
func (p *apiProxy) stop() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}
