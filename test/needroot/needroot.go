// Package needroot is the one way tests that need root (network
// namespaces, raw and packet sockets) give up when they do not have it:
// they skip, or fail when $CI is set, since CI runs as root and a skip
// there would hide that the test never ran.
package needroot

import (
	"os"
	"testing"
)

// CIEnv names the environment variable that turns these skips into failures.
const CIEnv = "CI"

// Root stops t unless the process runs as root; why says what needs root.
func Root(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		stop(t, why+": needs root")
	}
}

// Allowed stops t when err, from trying what needs privileges (opening a
// raw socket, say), is not nil; why says what was tried.
func Allowed(t testing.TB, err error, why string) {
	t.Helper()
	if err != nil {
		stop(t, why+": "+err.Error())
	}
}

// stop fails t with $CI set, else skips it.
func stop(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(CIEnv) != "" {
		t.Fatalf("%s (with $%s set this fails instead of skipping)", msg, CIEnv)
	} else {
		t.Skip(msg + "; CI runs as root")
	}
}
