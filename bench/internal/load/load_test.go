package load

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/goleak"

	"weft.dev/weft/bench/internal/echo"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunCountsAndChecksBodies(t *testing.T) {
	good := httptest.NewServer(echo.Handler())
	defer good.Close()
	// bad answers 200 with the body cut short.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("short"))
	}))
	defer bad.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusBadGateway)
	}))
	defer failing.Close()
	payload := bytes.Repeat([]byte("p"), 1024)
	tests := []struct {
		name                 string
		url                  string
		wantErrors, wantBad  bool
		wantReceivedPerReqst int64
	}{
		{"echo", good.URL, false, false, 1024},
		{"short body", bad.URL, false, true, 5},
		{"502", failing.URL, true, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := New(Options{URL: tt.url + "/", Connections: 4, Payload: payload})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			res := g.Run(context.Background(), 200, 250*time.Millisecond)
			if res.Requests == 0 {
				t.Fatal("got 0 requests, want some")
			}
			if got := res.Errors > 0; got != tt.wantErrors {
				t.Errorf("got %d errors of %d, want errors: %v", res.Errors, res.Requests, tt.wantErrors)
			}
			if got := res.BadBodies > 0; got != tt.wantBad {
				t.Errorf("got %d bad bodies of %d, want bad: %v", res.BadBodies, res.Requests, tt.wantBad)
			}
			if got, want := res.BytesSent, res.Requests*1024; got != want {
				t.Errorf("got %d bytes sent, want %d", got, want)
			}
			if got, want := res.BytesReceived, res.Requests*tt.wantReceivedPerReqst; got != want {
				t.Errorf("got %d bytes received, want %d", got, want)
			}
			if !tt.wantErrors && !tt.wantBad && int64(len(res.Latencies)) != res.Requests {
				t.Errorf("got %d latencies for %d requests", len(res.Latencies), res.Requests)
			}
		})
	}
}

func TestRunClosed(t *testing.T) {
	srv := httptest.NewServer(echo.Handler())
	defer srv.Close()
	payload := bytes.Repeat([]byte("c"), 1024)
	g, err := New(Options{URL: srv.URL + "/", Connections: 2, Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	res := g.RunClosed(context.Background(), 200*time.Millisecond)
	if res.Requests == 0 || res.Errors != 0 || res.BadBodies != 0 {
		t.Fatalf("got %d requests, %d errors, %d bad bodies (%s); want some requests and no failure",
			res.Requests, res.Errors, res.BadBodies, res.FirstError)
	}
	if got, want := res.BytesReceived, res.Requests*1024; got != want {
		t.Errorf("got %d bytes received, want %d", got, want)
	}
	if res.Rate != 0 || res.Achieved() <= 0 {
		t.Errorf("got rate %v and achieved %v, want 0 and above 0", res.Rate, res.Achieved())
	}
}

func TestPercentile(t *testing.T) {
	r := Result{}
	for i := 1; i <= 1000; i++ {
		r.Latencies = append(r.Latencies, time.Duration(i))
	}
	tests := []struct {
		p    float64
		want time.Duration
	}{{50, 500}, {90, 900}, {99, 990}, {99.9, 999}, {100, 1000}}
	for _, tt := range tests {
		if got := r.Percentile(tt.p); got != tt.want {
			t.Errorf("p%v: got %v, want %v", tt.p, got, tt.want)
		}
	}
}
