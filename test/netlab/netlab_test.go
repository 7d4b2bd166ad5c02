package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunRefusesForeignNamespace(t *testing.T) {
	t.Parallel()
	called := false
	err := Run("not-ours", func() error { called = true; return nil })
	if err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("Run in a namespace netlab did not create = %v, want a refusal", err)
	}
	if called {
		t.Error("Run called f anyway")
	}
}

func TestCheckInsideRefusesRoot(t *testing.T) {
	t.Parallel()
	// This goroutine's thread is in the namespace the process started in.
	err := checkInside("x", startIno)
	if err == nil || !strings.Contains(err.Error(), "root network namespace") {
		t.Errorf("checkInside in the root namespace = %v, want a refusal", err)
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	lab := New(t)
	ns := lab.Namespace("run")
	var inside uint64
	if err := ns.Run(func() error {
		var err error
		inside, err = nsInode("/proc/thread-self/ns/net")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside == startIno {
		t.Errorf("f ran in the starting namespace (inode %d)", inside)
	}

	wantErr := errors.New("from f")
	if err := ns.Run(func() error { return wantErr }); !errors.Is(err, wantErr) {
		t.Errorf("Run = %v, want f's error", err)
	}

	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want f's panic", r)
			}
		}()
		_ = ns.Run(func() error { panic("boom") })
	}()

	// The caller's thread never moved.
	if cur, err := nsInode("/proc/thread-self/ns/net"); err != nil || cur != startIno {
		t.Errorf("caller's namespace inode = %d (%v), want %d", cur, err, startIno)
	}
}

// TestBridge connects two namespaces through a bridge in a third and makes
// a TCP connection across.
func TestBridge(t *testing.T) {
	t.Parallel()
	lab := New(t)
	sw := lab.Namespace("sw")
	a := lab.Namespace("a")
	b := lab.Namespace("b")
	sw.Bridge("br0")
	sw.Connect("br0", "pa", a, "eth0", "10.99.0.1/24")
	sw.Connect("br0", "pb", b, "eth0", "10.99.0.2/24")
	a.WaitUp("eth0")
	b.WaitUp("eth0")
	sw.WaitUp("br0", "pa", "pb")
	if a.MAC("eth0").String() == b.MAC("eth0").String() {
		t.Errorf("both ends have MAC %s", a.MAC("eth0"))
	}

	var ln net.Listener
	if err := b.Run(func() error {
		var err error
		ln, err = net.Listen("tcp", "10.99.0.2:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	if err := a.Run(func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		return c.Close()
	}); err != nil {
		t.Fatalf("connect across the bridge: %v", err)
	}
	if err := <-accepted; err != nil {
		t.Fatalf("accept: %v", err)
	}
}

func TestRoute(t *testing.T) {
	t.Parallel()
	lab := New(t)
	a := lab.Namespace("a")
	b := lab.Namespace("b")
	lab.Veth(a, "eth0", b, "eth0")
	a.Addr("eth0", "192.168.7.2/24")
	a.Route("10.11.0.0/16", "192.168.7.1", "eth0")
	a.Route("default", "192.168.7.1", "eth0")
	a.Sysctl("net.ipv4.conf.all.arp_ignore", "1")
	if err := a.Run(func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/conf/all/arp_ignore")
		if err == nil && strings.TrimSpace(string(b)) != "1" {
			err = fmt.Errorf("arp_ignore = %q, want 1", b)
		}
		return err
	}); err != nil {
		t.Error(err)
	}
}

// childEnv makes TestNothingLeftBehind's child run the failing helper tests.
const childEnv = "LBPROBE_NETLAB_FAILING_CHILD"

// TestFailingChild fails or panics after creating namespaces; it runs only
// in the child that TestNothingLeftBehind starts.
func TestFailingChild(t *testing.T) {
	mode := os.Getenv(childEnv)
	if mode == "" {
		t.Skip("runs only as TestNothingLeftBehind's child")
	}
	lab := New(t)
	a := lab.Namespace("x")
	b := lab.Namespace("y")
	lab.Veth(a, "eth0", b, "eth0")
	switch mode {
	case "fatal":
		t.Fatal("failing on purpose")
	case "panic":
		panic("panicking on purpose")
	case "panic-in-run":
		_ = a.Run(func() error { panic("panicking in Run on purpose") })
	}
}

// TestNothingLeftBehind runs tests that fail or panic after building a lab,
// and checks that their namespaces are gone.
func TestNothingLeftBehind(t *testing.T) {
	t.Parallel()
	New(t) // skips when not root
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"fatal", "panic", "panic-in-run"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), self, "-test.run=^TestFailingChild$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), childEnv+"="+mode)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("child passed, want a failure:\n%s", out)
			}
			if !strings.Contains(string(out), "netlab: created namespace") {
				t.Fatalf("child created no namespace:\n%s", out)
			}
			left, _ := filepath.Glob(filepath.Join(runDir, fmt.Sprintf("%s%d-*", namePrefix, cmd.Process.Pid)))
			if len(left) > 0 {
				t.Errorf("left behind: %v\nchild output:\n%s", left, out)
			}
		})
	}
}
