package admin

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEndpoints(t *testing.T) {
	var ready atomic.Bool
	s := New(Config{
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "weft_requests_total 1\n") }),
		Ready: func() (bool, string) {
			if ready.Load() {
				return true, ""
			}
			return false, "no inbound configuration from the controller yet"
		},
		Status: func() Status {
			return Status{ID: "web-0", Service: "web.default", Ready: ready.Load(), InboundVersion: 4,
				Destinations: map[string]DestinationStatus{"api.default": {Version: 7, Endpoints: 2}}}
		},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	base := "http://" + ln.Addr().String()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	tests := []struct {
		name       string
		ready      bool
		path       string
		wantStatus int
		wantBody   string
	}{
		{"live", false, "/live", 200, "live"},
		{"metrics", false, "/metrics", 200, "weft_requests_total 1"},
		{"not ready says why", false, "/ready", 503, "no inbound configuration"},
		{"ready", true, "/ready", 200, "ready"},
		{"unknown path", true, "/nope", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready.Store(tt.ready)
			gotStatus, gotBody := get(tt.path)
			if gotStatus != tt.wantStatus || !strings.Contains(gotBody, tt.wantBody) {
				t.Errorf("GET %s = %d %q, want %d containing %q", tt.path, gotStatus, gotBody, tt.wantStatus, tt.wantBody)
			}
		})
	}

	ready.Store(true)
	code, body := get("/status")
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": "web-0", "service": "web.default", "ready": true, "inbound_version": 4.0,
		"destinations": map[string]any{"api.default": map[string]any{"version": 7.0, "endpoints": 2.0}}}
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("status = %s, want %s", gotJSON, wantJSON)
	}
}
