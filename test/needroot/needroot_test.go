package needroot

import (
	"errors"
	"strings"
	"testing"
)

// recorder is a testing.TB that notes whether it was failed or skipped.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()                        {}
func (r *recorder) Fatalf(format string, a ...any) { r.fatal = format }
func (r *recorder) Skip(a ...any)                  { r.skip = a[0].(string) }

func TestAllowed(t *testing.T) {
	tests := []struct {
		name      string
		ci        string
		err       error
		wantFatal bool
		wantSkip  bool
	}{
		{name: "allowed", err: nil},
		{name: "refused, not CI", err: errors.New("operation not permitted"), wantSkip: true},
		{name: "refused in CI", ci: "true", err: errors.New("operation not permitted"), wantFatal: true},
		{name: "allowed in CI", ci: "true", err: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(CIEnv, tc.ci)
			r := &recorder{TB: t}
			Allowed(r, tc.err, "raw socket")
			if (r.fatal != "") != tc.wantFatal || (r.skip != "") != tc.wantSkip {
				t.Fatalf("fatal %q, skip %q; want fatal %v, skip %v", r.fatal, r.skip, tc.wantFatal, tc.wantSkip)
			}
			if tc.wantSkip && !strings.Contains(r.skip, "operation not permitted") {
				t.Errorf("skip message %q does not say why", r.skip)
			}
		})
	}
}
