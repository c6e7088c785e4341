package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"weft.dev/weft/examples/demo/internal/chaos"
	"weft.dev/weft/examples/demo/internal/quotes"
	"weft.dev/weft/examples/demo/internal/runtest"
)

func TestMain(m *testing.M) {
	runtest.Main(main)
	goleak.VerifyTestMain(m)
}

func TestParseFlags(t *testing.T) {
	t.Setenv("PORT", "7002")
	t.Setenv("WEFT_QUOTES_ADDR", "127.0.0.1:7003")
	tests := []struct {
		name    string
		args    []string
		want    config
		wantErr bool
	}{
		{"defaults from env", nil, config{listen: "127.0.0.1:7002", version: "v1", quotes: "127.0.0.1:7003", quoteTimeout: 2 * time.Second}, false},
		{"v2 with chaos", []string{"--version", "v2", "--quotes", "q:1", "--latency", "1ms", "--latency-jitter", "2ms"},
			config{listen: "127.0.0.1:7002", version: "v2", quotes: "q:1", quoteTimeout: 2 * time.Second,
				chaos: chaos.Config{Latency: time.Millisecond, Jitter: 2 * time.Millisecond}}, false},
		{"unknown version", []string{"--version", "v3"}, config{}, true},
		{"zero timeout", []string{"--quote-timeout", "0s"}, config{}, true},
		{"bad fail rate", []string{"--fail-rate", "1.1"}, config{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFlags(tt.args, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseFlags(%q) error = %v, want error: %v", tt.args, err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("parseFlags(%q) = %+v, want %+v", tt.args, got, tt.want)
			}
		})
	}
}

// startQuotes serves a real quotes server on loopback.
func startQuotes(t *testing.T) string {
	t.Helper()
	srv := quotes.NewGRPCServer(t.Context(), chaos.New(chaos.Config{}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func get(t *testing.T, client *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestProgram runs the api program against a real quotes server, as `weft
// up` does (address from WEFT_QUOTES_ADDR), and stops it with SIGTERM.
func TestProgram(t *testing.T) {
	p := runtest.Start(t, []string{"WEFT_QUOTES_ADDR=" + startQuotes(t)}, "--listen", "127.0.0.1:0", "--version", "v2")
	base := "http://" + p.Addr(t)
	client := &http.Client{Transport: &http.Transport{}, Timeout: time.Minute}
	defer client.CloseIdleConnections()

	status, body := get(t, client, base+"/api/quote")
	var q struct {
		Version string
		Quote   struct{ Text, Author string }
	}
	if err := json.Unmarshal([]byte(body), &q); err != nil {
		t.Fatalf("GET /api/quote body %q: %v", body, err)
	}
	if status != 200 || q.Version != "v2" || q.Quote.Text == "" || q.Quote.Author == "" {
		t.Errorf("GET /api/quote = %d %s, want 200 with a v2 quote", status, body)
	}
	status, body = get(t, client, base+"/api/books")
	if status != 200 || !strings.Contains(body, `"rating"`) {
		t.Errorf("GET /api/books = %d %s, want 200 with ratings", status, body)
	}
	client.CloseIdleConnections()
	if got := p.Stop(t); got != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0; log:\n%s", got, p.Log())
	}
}

func TestProgramFailRate(t *testing.T) {
	p := runtest.Start(t, nil, "--listen", "127.0.0.1:0", "--fail-rate", "1")
	base := "http://" + p.Addr(t)
	client := &http.Client{Transport: &http.Transport{}, Timeout: time.Minute}
	defer client.CloseIdleConnections()
	if status, body := get(t, client, base+"/api/books"); status != 500 {
		t.Errorf("GET /api/books = %d %s, want 500", status, body)
	}
	if status, body := get(t, client, base+"/healthz"); status != 200 {
		t.Errorf("GET /healthz = %d %s, want 200: health is never failed", status, body)
	}
	client.CloseIdleConnections()
	if got := p.Stop(t); got != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0; log:\n%s", got, p.Log())
	}
}
