package main

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// HTTP server limits. A scrape is one request on a kept-alive connection;
// hostile or careless clients must not be able to hold every file
// descriptor, goroutine and megabyte with idle or stalled connections.
const (
	// readHeaderTimeout bounds the time to send a request's headers.
	readHeaderTimeout = 10 * time.Second
	// idleTimeout closes a kept-alive connection that sends no request for
	// this long: longer than a 1m scrape interval, so that Prometheus keeps
	// its connection.
	idleTimeout = 90 * time.Second
	// writeGrace is added to a request's round budget for its write
	// deadline: the time to send the response.
	writeGrace = 5 * time.Second
	// defaultMaxConns is the open-connection cap when the file-descriptor
	// limit does not impose a lower one.
	defaultMaxConns = 1024
)

// maxConns is the most connections served at once: defaultMaxConns, or half
// the soft file-descriptor limit when that is lower (the probes need the
// other half).
func maxConns() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur/2 < defaultMaxConns {
		return max(int(lim.Cur/2), 16)
	}
	return defaultMaxConns
}

// connGuard caps the open connections of an http.Server through its
// ConnState hook. When a new connection goes over the cap, the oldest idle
// connections are closed to make room: a client that opens idle keep-alive
// connections cannot keep scrapes out. A connection over the cap when no
// idle one is left is closed at once.
type connGuard struct {
	max    int
	logger *slog.Logger

	mu      sync.Mutex
	open    int                    // connections not yet in StateClosed
	idle    map[net.Conn]time.Time // idle connections, since when
	closing map[net.Conn]bool      // closed by the guard, StateClosed to come
	warned  time.Time
}

func newConnGuard(max int, logger *slog.Logger) *connGuard {
	return &connGuard{max: max, logger: logger, idle: make(map[net.Conn]time.Time), closing: make(map[net.Conn]bool)}
}

// track is the http.Server.ConnState hook.
func (g *connGuard) track(c net.Conn, state http.ConnState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch state {
	case http.StateNew:
		g.open++
		for g.open-len(g.closing) > g.max && len(g.idle) > 0 {
			g.closeOldestIdle()
		}
		if g.open-len(g.closing) > g.max {
			g.warn("closing a new connection: every connection is busy")
			g.closing[c] = true
			_ = c.Close()
		}
	case http.StateIdle:
		g.idle[c] = time.Now()
	case http.StateActive:
		delete(g.idle, c)
	case http.StateHijacked, http.StateClosed:
		delete(g.idle, c)
		delete(g.closing, c)
		g.open--
	}
}

// closeOldestIdle closes the connection idle the longest. Called with g.mu
// held.
func (g *connGuard) closeOldestIdle() {
	var oldest net.Conn
	var since time.Time
	for c, t := range g.idle {
		if oldest == nil || t.Before(since) {
			oldest, since = c, t
		}
	}
	delete(g.idle, oldest)
	g.closing[oldest] = true
	g.warn("closing idle connections: too many connections open")
	_ = oldest.Close()
}

// warn logs at most once a minute.
func (g *connGuard) warn(msg string) {
	if now := time.Now(); now.Sub(g.warned) > time.Minute {
		g.warned = now
		g.logger.Warn(msg, "max_connections", g.max)
	}
}
