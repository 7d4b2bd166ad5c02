// Over 400 lines on purpose: namespaces, Run and the links built in them share the safety checks described below, kept in one file to read together.

// Package netlab builds small networks of Linux network namespaces for tests:
// namespaces, veth pairs, a bridge, addresses and routes, all inside
// namespaces the test creates and deletes again.
//
// Safety: the root network namespace of a test machine routes off the
// machine, so no test may send a packet to a non-loopback address from it.
// Nothing netlab builds touches the root namespace: every link is created
// directly inside a lab namespace (the peer of a veth pair too), and Run, the
// one way to run code inside a namespace, refuses unless the calling thread
// ends up in a namespace this process created, different from the root one.
//
// Every lab needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); New skips the test
// otherwise (fails it with $CI set). Namespaces are named "lbpt-<pid>-<n>-<label>" and deleted by
// t.Cleanup, also when the test fails; New also deletes namespaces left by
// test processes that no longer run (killed by a timeout, say).
package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/lbprobe/lbprobe/test/needroot"
	"github.com/lbprobe/lbprobe/test/poll"
)

// namePrefix starts the name of every namespace netlab creates.
const namePrefix = "lbpt-"

// runDir is where named namespaces are bind-mounted (as by `ip netns add`).
const runDir = "/run/netns"

// maxIfName is the longest interface name Linux accepts (IFNAMSIZ - 1).
const maxIfName = 15

var (
	// seq numbers the namespaces of this process.
	seq atomic.Uint64

	// created maps the name of each namespace this process created and has
	// not deleted yet to its inode.
	createdMu sync.Mutex
	created   = map[string]uint64{}

	// startIno is the inode of the network namespace this process started
	// in, a second witness besides /proc/1/ns/net of the root namespace.
	startIno, startErr = nsInode("/proc/self/ns/net")
)

// Lab is one test's set of namespaces. Its methods fail the test on error
// and must be called from the test's goroutine.
type Lab struct {
	t testing.TB
}

// New returns an empty lab for t, or skips t when not run as root (fails it
// with $CI set, see [needroot.Root]). It
// deletes namespaces left behind by test processes that have exited.
func New(t testing.TB) *Lab {
	t.Helper()
	needroot.Root(t, "netlab creates network namespaces (CAP_SYS_ADMIN, CAP_NET_ADMIN)")
	if startErr != nil {
		t.Fatalf("netlab: cannot tell which network namespace this process started in: %v", startErr)
	}
	sweepStale(t)
	return &Lab{t: t}
}

// Namespace is a named network namespace that a Lab created.
type Namespace struct {
	Name string // full name, as in `ip netns list`
	lab  *Lab
	h    *netlink.Handle // netlink socket inside the namespace
}

// Namespace creates a network namespace with loopback up. label is a short
// tag for humans (e.g. "prober", "node1"); the name is unique per process.
// The namespace is deleted when the test ends.
func (l *Lab) Namespace(label string) *Namespace {
	l.t.Helper()
	name := fmt.Sprintf("%s%d-%d-%s", namePrefix, os.Getpid(), seq.Add(1), label)
	ino, err := create(name)
	if err != nil {
		l.t.Fatalf("netlab: create namespace %s: %v", name, err)
	}
	l.t.Cleanup(func() {
		if err := Delete(name); err != nil {
			l.t.Errorf("netlab: %v", err)
		}
	})
	l.t.Logf("netlab: created namespace %s (inode %d)", name, ino)

	nsh, err := netns.GetFromName(name)
	if err != nil {
		l.t.Fatalf("netlab: open namespace %s: %v", name, err)
	}
	h, err := netlink.NewHandleAt(nsh)
	nsh.Close()
	if err != nil {
		l.t.Fatalf("netlab: netlink handle in %s: %v", name, err)
	}
	l.t.Cleanup(h.Close)
	ns := &Namespace{Name: name, lab: l, h: h}
	ns.Up("lo")
	return ns
}

// create makes a named namespace on a locked thread and switches that thread
// back; it returns the new namespace's inode.
func create(name string) (uint64, error) {
	type result struct {
		ino uint64
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("current namespace: %w", err)}
			return
		}
		defer orig.Close()
		newNS, err := netns.NewNamed(name)
		var ino uint64
		if err == nil {
			ino, err = nsInode("/proc/thread-self/ns/net")
			newNS.Close()
		} else if path := filepath.Join(runDir, name); fileExists(path) {
			// NewNamed failed after creating the mount point.
			_ = syscall.Unmount(path, syscall.MNT_DETACH)
			_ = os.Remove(path)
		}
		if rerr := netns.Set(orig); rerr != nil {
			// Leave the thread locked: it dies with this goroutine
			// rather than serve others from inside a lab namespace.
			done <- result{err: errors.Join(err, fmt.Errorf("restore namespace: %w", rerr))}
			return
		}
		runtime.UnlockOSThread()
		if err == nil {
			createdMu.Lock()
			created[name] = ino
			createdMu.Unlock()
		}
		done <- result{ino, err}
	}()
	r := <-done
	return r.ino, r.err
}

// Delete deletes a namespace this process created. Links inside it go with
// it (and so do both ends of veth pairs with one end in it).
func Delete(name string) error {
	createdMu.Lock()
	_, ok := created[name]
	delete(created, name)
	createdMu.Unlock()
	if !ok {
		return fmt.Errorf("delete namespace %s: not created by this process", name)
	}
	if err := netns.DeleteNamed(name); err != nil {
		return fmt.Errorf("delete namespace %s: %w", name, err)
	}
	return nil
}

// sweepStale deletes namespaces named by netlab for a process that no longer
// exists.
func sweepStale(t testing.TB) {
	entries, err := os.ReadDir(runDir)
	if err != nil {
		return // no namespaces yet
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), namePrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() || fileExists(fmt.Sprintf("/proc/%d", pid)) {
			continue
		}
		if err := netns.DeleteNamed(e.Name()); err != nil {
			t.Logf("netlab: delete stale namespace %s: %v", e.Name(), err)
		} else {
			t.Logf("netlab: deleted stale namespace %s", e.Name())
		}
	}
}

// Run runs f inside the namespace ns, which this process must have created
// with a Lab, on a goroutine locked to an OS thread switched into it. It
// refuses (and does not call f) unless that thread is then in the
// namespace's own inode, which is neither the root namespace's
// (/proc/1/ns/net, when readable) nor the one this process started in. f must report
// failures by returning an error, not with t.Fatal; goroutines f starts
// run outside the namespace. A panic in f is raised again in the caller.
//
// The thread is switched back afterwards; when that fails it stays locked,
// and so ends with the goroutine instead of running other code in ns.
func Run(ns string, f func() error) error {
	createdMu.Lock()
	want, ok := created[ns]
	createdMu.Unlock()
	if !ok {
		return fmt.Errorf("netlab: refusing to run in namespace %q: not created by this process", ns)
	}
	target, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("netlab: open namespace %s: %w", ns, err)
	}
	defer target.Close()

	type result struct {
		err   error
		panic any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("netlab: current namespace: %w", err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("netlab: enter namespace %s: %w", ns, err)}
			return
		}
		var r result
		func() {
			defer func() { r.panic = recover() }()
			if err := checkInside(ns, want); err != nil {
				r.err = err
				return
			}
			r.err = f()
		}()
		if err := netns.Set(orig); err != nil {
			r.err = errors.Join(r.err, fmt.Errorf("netlab: leave namespace %s (thread discarded): %w", ns, err))
			done <- r // the thread stays locked and ends with this goroutine
			return
		}
		runtime.UnlockOSThread()
		done <- r
	}()
	r := <-done
	if r.panic != nil {
		panic(r.panic)
	}
	return r.err
}

// checkInside returns an error unless the current thread is in the
// namespace with inode want, which is not the root namespace.
func checkInside(ns string, want uint64) error {
	cur, err := nsInode("/proc/thread-self/ns/net")
	if err != nil {
		return fmt.Errorf("netlab: refusing to run: %w", err)
	}
	// Reading PID 1's namespace needs CAP_SYS_PTRACE over it, which a
	// root in a container may lack; the namespace this process started in
	// is checked regardless.
	root, err := nsInode("/proc/1/ns/net")
	if err != nil {
		root = startIno
	}
	switch {
	case cur == root, cur == startIno:
		return fmt.Errorf("netlab: refusing to run: thread is in the root network namespace (inode %d), not in %s", cur, ns)
	case cur != want:
		return fmt.Errorf("netlab: refusing to run: thread is in namespace inode %d, want %s's %d", cur, ns, want)
	}
	return nil
}

// nsInode returns the inode of a namespace file.
func nsInode(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return st.Ino, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Run runs f inside the namespace; see the package-level Run.
func (ns *Namespace) Run(f func() error) error { return Run(ns.Name, f) }

// fatalf fails the lab's test with the namespace's name.
func (ns *Namespace) fatalf(format string, args ...any) {
	ns.lab.t.Helper()
	ns.lab.t.Fatalf("netlab: %s: %s", ns.Name, fmt.Sprintf(format, args...))
}

// link returns the link named name inside the namespace.
func (ns *Namespace) link(name string) netlink.Link {
	ns.lab.t.Helper()
	l, err := ns.h.LinkByName(name)
	if err != nil {
		ns.fatalf("link %s: %v", name, err)
	}
	return l
}

// Veth creates a veth pair with end aName in a and end bName in b, both up.
// Interface names are per namespace, so "eth0" may repeat across a lab.
func (l *Lab) Veth(a *Namespace, aName string, b *Namespace, bName string) {
	l.t.Helper()
	checkIfName(l.t, aName)
	checkIfName(l.t, bName)
	peerNS, err := netns.GetFromName(b.Name)
	if err != nil {
		l.t.Fatalf("netlab: open namespace %s: %v", b.Name, err)
	}
	defer peerNS.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: aName},
		PeerName:      bName,
		PeerNamespace: netlink.NsFd(peerNS),
	}
	if err := a.h.LinkAdd(veth); err != nil {
		a.fatalf("add veth %s (peer %s in %s): %v", aName, bName, b.Name, err)
	}
	a.Up(aName)
	b.Up(bName)
}

// Bridge creates a Linux bridge named name (STP off), up.
func (ns *Namespace) Bridge(name string) {
	ns.lab.t.Helper()
	checkIfName(ns.lab.t, name)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := ns.h.LinkAdd(br); err != nil {
		ns.fatalf("add bridge %s: %v", name, err)
	}
	ns.Up(name)
}

// Connect plugs host into the bridge named bridge in ns (which holds it) by
// a veth pair: hostIf in host, port (an interface of ns) in the bridge.
// Each prefix (e.g. "10.99.0.1/24") is added to hostIf.
func (ns *Namespace) Connect(bridge, port string, host *Namespace, hostIf string, prefixes ...string) {
	ns.lab.t.Helper()
	ns.lab.Veth(ns, port, host, hostIf)
	if err := ns.h.LinkSetMaster(ns.link(port), ns.link(bridge)); err != nil {
		ns.fatalf("enslave %s to %s: %v", port, bridge, err)
	}
	for _, p := range prefixes {
		host.Addr(hostIf, p)
	}
}

// Up sets the link named dev up.
func (ns *Namespace) Up(dev string) {
	ns.lab.t.Helper()
	if err := ns.h.LinkSetUp(ns.link(dev)); err != nil {
		ns.fatalf("set %s up: %v", dev, err)
	}
}

// Addr adds prefix (e.g. "10.99.0.1/24", or "10.99.0.10/32") to dev.
func (ns *Namespace) Addr(dev, prefix string) {
	ns.lab.t.Helper()
	p, err := netlink.ParseAddr(prefix)
	if err != nil {
		ns.fatalf("address %q: %v", prefix, err)
	}
	if p.IP.To4() == nil {
		p.Flags |= syscall.IFA_F_NODAD // usable at once
	}
	if err := ns.h.AddrAdd(ns.link(dev), p); err != nil {
		ns.fatalf("add %s to %s: %v", prefix, dev, err)
	}
}

// Route adds a route to dst ("10.11.80.0/24", or "default") out of dev,
// via the gateway gw, or on-link when gw is empty.
func (ns *Namespace) Route(dst, gw, dev string) {
	ns.lab.t.Helper()
	r := &netlink.Route{LinkIndex: ns.link(dev).Attrs().Index}
	if dst != "default" {
		p, err := netip.ParsePrefix(dst)
		if err != nil {
			ns.fatalf("route destination %q: %v", dst, err)
		}
		r.Dst = &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
	}
	if gw != "" {
		a, err := netip.ParseAddr(gw)
		if err != nil {
			ns.fatalf("gateway %q: %v", gw, err)
		}
		r.Gw = a.AsSlice()
	}
	if err := ns.h.RouteAdd(r); err != nil {
		ns.fatalf("add route %s via %q dev %s: %v", dst, gw, dev, err)
	}
}

// MAC returns the hardware address of dev.
func (ns *Namespace) MAC(dev string) net.HardwareAddr {
	ns.lab.t.Helper()
	return ns.link(dev).Attrs().HardwareAddr
}

// WaitUp waits up to 5s until every named link is operationally up (a
// veth is when its peer is up too; a bridge when a port forwards).
func (ns *Namespace) WaitUp(devs ...string) {
	ns.lab.t.Helper()
	err := poll.Until(context.Background(), 5*time.Second, 10*time.Millisecond, func() error {
		for _, dev := range devs {
			if state := ns.link(dev).Attrs().OperState; state != netlink.OperUp {
				return fmt.Errorf("%s is %s, not up", dev, state)
			}
		}
		return nil
	})
	if err != nil {
		ns.fatalf("%v", err)
	}
}

// Sysctl writes value to the namespace's sysctl key, e.g.
// "net.ipv4.conf.all.arp_ignore".
func (ns *Namespace) Sysctl(key, value string) {
	ns.lab.t.Helper()
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	if err := ns.Run(func() error { return os.WriteFile(path, []byte(value), 0o644) }); err != nil {
		ns.fatalf("sysctl %s=%s: %v", key, value, err)
	}
}

func checkIfName(t testing.TB, name string) {
	t.Helper()
	if name == "" || len(name) > maxIfName || strings.ContainsAny(name, "/ \t\n:") {
		t.Fatalf("netlab: invalid interface name %q (1 to %d characters, no '/', ':' or spaces)", name, maxIfName)
	}
}
