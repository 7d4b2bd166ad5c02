package targets

import (
	"errors"
	"net"
	"testing"
	"time"
)

// A black-holed port neither accepts nor refuses: a connect times out.
func TestBlackholedTCP(t *testing.T) {
	ap, err := BlackholedTCP(t.Context(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c, err := net.DialTimeout("tcp", ap.String(), 300*time.Millisecond)
		if err == nil {
			c.Close()
			t.Fatalf("connect to %s succeeded", ap)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("connect to %s: %v, want a timeout", ap, err)
		}
	}
}
