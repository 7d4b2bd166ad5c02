package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// FuzzScrapeTimeoutHeader: whatever a client writes in
// X-Prometheus-Scrape-Timeout-Seconds, the round's budget is either refused
// or in (0, 1h].
func FuzzScrapeTimeoutHeader(f *testing.F) {
	for _, v := range []string{"10", "0.51", "3600", "NaN", "+Inf", "-0", "1e-300", "0x1p-2", "1_0", " 10", "9.2e9"} {
		f.Add(v)
	}
	s := &server{timeoutOffset: 500 * time.Millisecond, defaultScrapeTimeout: 10 * time.Second}
	f.Fuzz(func(t *testing.T, v string) {
		r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		r.Header.Set(scrapeTimeoutHeader, v)
		budget, err := s.roundBudget(r)
		if err != nil {
			return
		}
		if budget <= 0 || budget > time.Hour {
			t.Fatalf("header %q: budget %v outside (0, 1h]", v, budget)
		}
	})
}
