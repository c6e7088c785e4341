package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"weft.dev/weft/examples/demo/internal/bookapi"
	"weft.dev/weft/examples/demo/internal/runtest"
)

func TestMain(m *testing.M) {
	runtest.Main(main)
	goleak.VerifyTestMain(m)
}

func TestParseFlags(t *testing.T) {
	t.Setenv("WEFT_WEB_ADDR", "127.0.0.1:7006")
	t.Setenv("WEFT_API_ADDR", "127.0.0.1:7007")
	defaults := config{target: "http://127.0.0.1:7006/", api: "http://127.0.0.1:7007", rps: 5,
		timeout: 10 * time.Second, report: 10 * time.Second, concurrency: 100}
	tests := []struct {
		name    string
		args    []string
		want    config
		wantErr bool
	}{
		{"defaults from env", nil, defaults, false},
		{"web only", []string{"--api", "", "--rps", "50", "--duration", "1m", "--count", "9"},
			config{target: "http://127.0.0.1:7006/", rps: 50, duration: time.Minute, count: 9,
				timeout: 10 * time.Second, report: 10 * time.Second, concurrency: 100}, false},
		{"nothing to load", []string{"--api", "", "--target", ""}, config{}, true},
		{"not a URL", []string{"--target", "localhost:1"}, config{}, true},
		{"zero rps", []string{"--rps", "0"}, config{}, true},
		{"negative duration", []string{"--duration", "-1s"}, config{}, true},
		{"negative count", []string{"--count", "-1"}, config{}, true},
		{"header without colon", []string{"--header", "x-canary"}, config{}, true},
		{"header with a bad name", []string{"--header", "x canary:1"}, config{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFlags(tt.args, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseFlags(%q) error = %v, want error: %v", tt.args, err, tt.wantErr)
			}
			if len(got.header) != 0 {
				t.Errorf("parseFlags(%q) headers %v, want none", tt.args, got.header)
			}
			got.header = nil
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseFlags(%q) = %+v, want %+v", tt.args, got, tt.want)
			}
		})
	}
}

// recorder counts the requests it receives by "METHOD path", and answers
// like the demo API (a real bookapi.API) for /api/ paths.
type recorder struct {
	api http.Handler

	mu sync.Mutex // guards seen
	// seen counts requests by "METHOD path", with book ids replaced by {id}.
	seen map[string]int
}

var idPath = regexp.MustCompile(`^/api/books/\d+$`)

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Method + " " + idPath.ReplaceAllString(r.URL.Path, "/api/books/{id}")
	rec.mu.Lock()
	rec.seen[key]++
	rec.mu.Unlock()
	if strings.HasPrefix(r.URL.Path, "/api/") {
		rec.api.ServeHTTP(w, r)
		return
	}
	io.WriteString(w, "<html>page</html>")
}

func startRecorder(t *testing.T) (*recorder, *httptest.Server) {
	t.Helper()
	api, err := bookapi.New(bookapi.Config{Version: bookapi.V2})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{api: api, seen: map[string]int{}}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	return rec, srv
}

// runGenerator runs a generator to its end and returns its log.
func runGenerator(t *testing.T, ctx context.Context, cfg config) string {
	t.Helper()
	var buf syncBuffer
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	done := make(chan struct{})
	go func() {
		defer close(done)
		newGenerator(cfg, &http.Client{Transport: transport}, slog.New(slog.NewTextHandler(&buf, nil))).Run(ctx)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute): // hang guard
		t.Fatalf("generator still running after a minute; log:\n%s", buf.String())
	}
	return buf.String()
}

type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testConfig(target, api string) config {
	return config{target: target, api: api, rps: 1000, timeout: time.Minute, report: time.Hour, concurrency: 100}
}

// finished returns the attributes of the "load finished" log line.
func finished(t *testing.T, log string) map[string]string {
	t.Helper()
	for line := range strings.Lines(log) {
		if strings.Contains(line, `msg="load finished"`) {
			attrs := map[string]string{}
			for _, m := range regexp.MustCompile(`(\w+)=("[^"]*"|\S+)`).FindAllStringSubmatch(line, -1) {
				attrs[m[1]] = strings.Trim(m[2], `"`)
			}
			return attrs
		}
	}
	t.Fatalf("no load finished line in log:\n%s", log)
	return nil
}

func TestCountAndMix(t *testing.T) {
	rec, srv := startRecorder(t)
	cfg := testConfig(srv.URL+"/", srv.URL)
	cfg.count = 50
	log := runGenerator(t, t.Context(), cfg)

	got := rec.seen
	want := map[string]int{
		"GET /": 25, "GET /api/books": 5, "GET /api/quote": 5, "GET /api/books/{id}": 5, "POST /api/books": 5,
		"GET /api/quotes": 5,
	}
	if len(got) != len(want) {
		t.Errorf("requests seen = %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s seen %d times, want %d", k, got[k], n)
		}
	}
	attrs := finished(t, log)
	// The recorder's API has no quotes backend: /api/quote(s) answer 503.
	for k, v := range map[string]string{"sent": "50", "ok": "40", "http_5xx": "10", "errors": "0", "api_versions": "v2=25"} {
		if attrs[k] != v {
			t.Errorf("summary %s = %q, want %q; log:\n%s", k, attrs[k], v, log)
		}
	}
}

func TestHeaderFlag(t *testing.T) {
	c, err := parseFlags([]string{"--api", "http://127.0.0.1:1", "--header", "x-canary: true", "--header", "X-Canary:again", "--header", "x-user:ann"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.header.Values("X-Canary"); len(got) != 2 || got[0] != "true" || got[1] != "again" || c.header.Get("x-user") != "ann" {
		t.Errorf("headers %v", c.header)
	}
	// Every request carries the headers.
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[strings.Join(r.Header.Values("X-Canary"), ",")]++
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	cfg := testConfig(srv.URL+"/", "")
	cfg.count, cfg.header = 20, c.header
	runGenerator(t, t.Context(), cfg)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen["true,again"] != 20 {
		t.Errorf("X-Canary values seen %v, want true,again on all 20 requests", seen)
	}
}

func TestPostsValidBooks(t *testing.T) {
	var bodies []string
	var mu sync.Mutex // guards bodies
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
	}))
	defer srv.Close()
	cfg := testConfig("", srv.URL)
	cfg.count = 10
	runGenerator(t, t.Context(), cfg)
	var posts int
	for _, b := range bodies {
		if b == "" {
			continue
		}
		posts++
		var nb bookapi.NewBook
		if err := json.Unmarshal([]byte(b), &nb); err != nil {
			t.Fatalf("POST body %q: %v", b, err)
		}
		if err := nb.Validate(); err != nil {
			t.Errorf("POST body %q is not a valid book: %v", b, err)
		}
	}
	if posts != 2 {
		t.Errorf("got %d POSTs, want 2", posts)
	}
}

func TestDurationBoundsTheRun(t *testing.T) {
	rec, srv := startRecorder(t)
	cfg := testConfig(srv.URL+"/", "")
	cfg.rps = 20
	cfg.duration = 300 * time.Millisecond
	log := runGenerator(t, t.Context(), cfg)
	// A ticker never fires early: at most one request at the start and one
	// per 50ms tick, however slow the machine.
	sent, _ := strconv.Atoi(finished(t, log)["sent"])
	if got := rec.seen["GET /"]; got != sent || got < 1 || got > 7 {
		t.Errorf("server saw %d requests and the summary says %d sent; want the same, from 1 to 7", got, sent)
	}
}

func TestCancelCountsCanceled(t *testing.T) {
	entered := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-entered
		cancel()
	}()
	cfg := testConfig(srv.URL+"/", "")
	cfg.rps = 1
	log := runGenerator(t, ctx, cfg)
	attrs := finished(t, log)
	for k, v := range map[string]string{"sent": "1", "canceled": "1", "errors": "0"} {
		if attrs[k] != v {
			t.Errorf("summary %s = %q, want %q; log:\n%s", k, attrs[k], v, log)
		}
	}
}

func TestTimeoutIsAnError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer srv.Close()
	cfg := testConfig(srv.URL+"/", "")
	cfg.count = 1
	cfg.timeout = 10 * time.Millisecond
	attrs := finished(t, runGenerator(t, t.Context(), cfg))
	if attrs["errors"] != "1" || attrs["success"] != "0.0%" {
		t.Errorf("summary = %v, want errors=1 success=0.0%%", attrs)
	}
}

// TestProgram runs the load program as `weft up` does (targets from
// WEFT_WEB_ADDR and WEFT_API_ADDR) and stops it with SIGTERM.
func TestProgram(t *testing.T) {
	got := make(chan string, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- r.Method + " " + r.URL.Path:
		default:
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	p := runtest.Start(t, []string{"WEFT_WEB_ADDR=" + addr, "WEFT_API_ADDR=" + addr}, "--rps", "50")
	if first := <-got; first != "GET /" {
		t.Errorf("first request = %q, want %q", first, "GET /")
	}
	if second := <-got; second != "GET /api/books" {
		t.Errorf("second request = %q, want %q", second, "GET /api/books")
	}
	if code := p.Stop(t); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0; log:\n%s", code, p.Log())
	}
	if !strings.Contains(p.Log(), `msg="load finished"`) {
		t.Errorf("log has no final summary:\n%s", p.Log())
	}
}

func TestLastFailureSaysWho(t *testing.T) {
	tests := []struct {
		name   string
		header http.Header
		status int
		want   string
	}{
		{"proxy", http.Header{"Weft-Proxy-Error": {"no endpoints for web.default"}}, 503,
			"503 Service Unavailable from the proxy: no endpoints for web.default"},
		{"injected", http.Header{"Demo-Injected-Failure": {"true"}}, 500,
			"500 Internal Server Error (injected by --fail-rate)"},
		{"program", nil, 502, "502 Bad Gateway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header()[k] = v
				}
				w.WriteHeader(tt.status)
			}))
			defer srv.Close()
			cfg := testConfig(srv.URL+"/", "")
			cfg.count = 1
			attrs := finished(t, runGenerator(t, t.Context(), cfg))
			if got, want := attrs["last_failure"], "GET "+srv.URL+"/: "+tt.want; got != want {
				t.Errorf("last_failure = %q, want %q", got, want)
			}
		})
	}
}
