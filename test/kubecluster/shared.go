package kubecluster

import (
	"context"
	"sync"
	"testing"
	"time"
)

// sharedStartTimeout bounds the start of the shared cluster, including a first build of the
// binaries by hack/tool.sh.
const sharedStartTimeout = 15 * time.Minute

var shared struct {
	opts *Options // set by Shared before any test runs
	once sync.Once
	c    *Cluster
	err  error
}

// Shared runs a test binary's tests with one cluster for the whole package, to be called from
// TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(kubecluster.Shared(m, kubecluster.Options{...})) }
//
// The cluster starts on the first call of [Get], so that runs selecting no test that needs it
// (go test -run, -list) start nothing, and is stopped when the tests are done. Tests that stop
// or restart its API server must not run in parallel with other tests using it.
func Shared(m *testing.M, opts Options) int {
	shared.opts = &opts
	code := m.Run()
	shared.once.Do(func() {}) // waits for a start in progress, prevents later ones
	if shared.c != nil {
		shared.c.Stop()
	}
	return code
}

// Get returns the package's shared cluster, starting it on the first call. The test fails (it is
// not skipped: a missing cluster is a broken test setup) if the cluster could not start, or if
// TestMain does not call [Shared].
func Get(t testing.TB) *Cluster {
	t.Helper()
	if shared.opts == nil {
		t.Fatal("kubecluster.Get: TestMain must call kubecluster.Shared")
	}
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), sharedStartTimeout)
		defer cancel()
		shared.c, shared.err = Start(ctx, *shared.opts)
	})
	if shared.err != nil {
		t.Fatalf("kubecluster: the shared cluster could not start: %v", shared.err)
	}
	return shared.c
}
