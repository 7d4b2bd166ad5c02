package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/lbprobe/lbprobe/test/poll"
	"github.com/lbprobe/lbprobe/test/seed"
	"github.com/lbprobe/lbprobe/test/targets"
)

// servePorts serves HTTP (plain TCP accept) and HTTPS (TLS with a
// certificate for *.sbbh.cloud from a sandbox CA, written to Dir) on the
// Gateways' addresses. Nothing serves apps/legacy.
func (s *Sandbox) servePorts() error {
	now := time.Now()
	cert, err := targets.NewCertificate([]string{"*." + seed.Domain, seed.Domain}, now.Add(-time.Hour), now.Add(60*24*time.Hour))
	if err != nil {
		return err
	}
	s.cert = cert.Leaf
	s.CAFile = filepath.Join(s.Dir, "sandbox-ca.pem")
	if err := os.WriteFile(s.CAFile, cert.CAPEM, 0o644); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The seed's Gateways listen on https only.
	for _, ip := range []netip.Addr{s.Addrs.External, s.Addrs.Internal} {
		ap := netip.AddrPortFrom(ip, uint16(s.Ports.HTTPS))
		s.listeners[ap] = &listener{tls: true}
		if err := s.serve(ap, s.listeners[ap]); err != nil {
			return err
		}
	}
	return nil
}

// serve starts l on ap. s.mu is held.
func (s *Sandbox) serve(ap netip.AddrPort, l *listener) error {
	ctx, cancel := context.WithCancel(s.ctx)
	var err error
	if l.tls {
		_, err = targets.TLS(ctx, ap.String(), s.cert)
	} else {
		_, err = targets.TCP(ctx, ap.String())
	}
	if err != nil {
		cancel()
		return err
	}
	l.cancel = cancel
	return nil
}

// lookup returns the listener on ap. s.mu is held.
func (s *Sandbox) lookup(ap netip.AddrPort) (*listener, error) {
	l, ok := s.listeners[ap]
	if !ok {
		return nil, fmt.Errorf("sandbox: no listener on %s", ap)
	}
	return l, nil
}

// StopListener closes the sandbox's listener on ap (one of the Gateways'
// HTTP or HTTPS ports) and returns once connections to ap are refused.
// Stopping a stopped listener does nothing.
func (s *Sandbox) StopListener(ap netip.AddrPort) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, err := s.lookup(ap)
	if err != nil {
		return err
	}
	if l.cancel == nil {
		return nil
	}
	l.cancel()
	l.cancel = nil
	// targets closes the listener in a goroutine: wait until it is gone.
	err = poll.Until(context.Background(), 5*time.Second, 10*time.Millisecond, func() error {
		c, err := net.DialTimeout("tcp", ap.String(), time.Second)
		switch {
		case err == nil:
			c.Close()
			return errors.New("still accepts connections")
		case errors.Is(err, syscall.ECONNREFUSED):
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("sandbox: %s after its listener was stopped: %w", ap, err)
	}
	return nil
}

// StartListener serves ap again after [Sandbox.StopListener], as before:
// plain TCP for an HTTP port, TLS with the same certificate for an HTTPS
// port. Starting a running listener does nothing.
func (s *Sandbox) StartListener(ap netip.AddrPort) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, err := s.lookup(ap)
	if err != nil {
		return err
	}
	if l.cancel != nil {
		return nil
	}
	if s.ctx.Err() != nil {
		return errors.New("sandbox: stopped")
	}
	// The port may still be in use for a moment after StopListener.
	var serveErr error
	err = poll.Until(s.ctx, 3*time.Second, 50*time.Millisecond, func() error {
		if serveErr = s.serve(ap, l); errors.Is(serveErr, syscall.EADDRINUSE) {
			return serveErr
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sandbox: serving %s again: %w", ap, err)
	}
	return serveErr
}
