package poll_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lbprobe/lbprobe/test/poll"
)

var errNotYet = errors.New("not yet")

func TestUntil(t *testing.T) {
	canceled, cancel := context.WithCancelCause(t.Context())
	cancel(errors.New("the process exited"))
	tests := []struct {
		name      string
		ctx       context.Context
		passAfter int // calls that fail before check passes; -1: never
		wantErr   string
		minCalls  int
	}{
		{name: "passes at once", ctx: t.Context(), passAfter: 0, minCalls: 1},
		{name: "passes later", ctx: t.Context(), passAfter: 3, minCalls: 4},
		{name: "never passes", ctx: t.Context(), passAfter: -1, wantErr: "still failing after", minCalls: 2},
		{name: "context ends", ctx: canceled, passAfter: -1, wantErr: "(the process exited): not yet", minCalls: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := poll.Until(tc.ctx, 200*time.Millisecond, 5*time.Millisecond, func() error {
				calls++
				if tc.passAfter >= 0 && calls > tc.passAfter {
					return nil
				}
				return errNotYet
			})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Until: %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, errNotYet)):
				t.Fatalf("Until: %v, want an error wrapping %q and containing %q", err, errNotYet, tc.wantErr)
			}
			if calls < tc.minCalls {
				t.Errorf("check called %d times, want at least %d", calls, tc.minCalls)
			}
		})
	}
}
