package main

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"weft.dev/weft/examples/demo/internal/bookapi"
	"weft.dev/weft/examples/demo/internal/chaos"
	"weft.dev/weft/examples/demo/internal/quotes"
	"weft.dev/weft/examples/demo/internal/runtest"
	"weft.dev/weft/examples/demo/quotes/quotespb"
)

func TestMain(m *testing.M) {
	runtest.Main(main)
	goleak.VerifyTestMain(m)
}

func TestParseFlags(t *testing.T) {
	t.Setenv("PORT", "7004")
	t.Setenv("WEFT_API_ADDR", "127.0.0.1:7005")
	tests := []struct {
		name    string
		args    []string
		want    config
		wantErr bool
	}{
		{"defaults from env", nil, config{listen: "127.0.0.1:7004", api: "http://127.0.0.1:7005", timeout: 3 * time.Second}, false},
		{"explicit", []string{"--listen", "127.0.0.1:1", "--api", "http://a:2", "--fail-rate", "0.1"},
			config{listen: "127.0.0.1:1", api: "http://a:2", timeout: 3 * time.Second, chaos: chaos.Config{FailRate: 0.1}}, false},
		{"api not a URL", []string{"--api", "127.0.0.1:2"}, config{}, true},
		{"bad latency", []string{"--latency", "-1s"}, config{}, true},
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

func TestParseFlagsNeedsAPI(t *testing.T) {
	t.Setenv("WEFT_API_ADDR", "")
	if _, err := parseFlags(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "WEFT_API_ADDR") {
		t.Errorf("parseFlags without API = %v, want an error naming WEFT_API_ADDR", err)
	}
}

// startQuotes serves a real quotes server on loopback and returns a client.
func startQuotes(t *testing.T, cfg chaos.Config) quotespb.QuotesClient {
	t.Helper()
	srv := quotes.NewGRPCServer(t.Context(), chaos.New(cfg))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return quotespb.NewQuotesClient(conn)
}

// startAPI serves the real demo API on loopback.
func startAPI(t *testing.T, version string, fail chaos.Config, qc quotespb.QuotesClient) *httptest.Server {
	t.Helper()
	a, err := bookapi.New(bookapi.Config{Version: version, Quotes: qc})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(chaos.New(fail).HTTP(a))
	t.Cleanup(srv.Close)
	return srv
}

// startWeb serves the front end on loopback against api.
func startWeb(t *testing.T, api string) *httptest.Server {
	t.Helper()
	u, err := url.Parse(api)
	if err != nil {
		t.Fatal(err)
	}
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	f := newFrontend(u, &http.Client{Transport: transport}, time.Minute, "test", slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, path string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := srv.Client().Do(req)
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

func TestPage(t *testing.T) {
	qc := startQuotes(t, chaos.Config{})
	tests := []struct {
		name       string
		api        *httptest.Server
		path       string
		wantStatus int
		wantIn     []string
		wantNotIn  []string
	}{
		{"v1", startAPI(t, "v1", chaos.Config{}, qc), "/", 200,
			[]string{"Designing Data-Intensive Applications", "Martin Kleppmann", "books from api v1", "quote from api v1", "<blockquote>"},
			[]string{"Rating", "4.8", `class="error"`}},
		{"v2 shows ratings", startAPI(t, "v2", chaos.Config{}, qc), "/", 200,
			[]string{"Release It!", "books from api v2", "<th>Rating</th>", "4.8 ★"}, nil},
		{"quote of a topic", startAPI(t, "v1", chaos.Config{}, qc), "/?topic=simplicity", 200,
			[]string{"<blockquote>"}, []string{"No quote"}},
		{"unknown topic degrades the page", startAPI(t, "v1", chaos.Config{}, qc), "/?topic=cooking", 200,
			[]string{"No quote this time", "known topics are", "Release It!"}, nil},
		{"quotes down degrades the page", startAPI(t, "v1", chaos.Config{}, startQuotes(t, chaos.Config{FailRate: 1})), "/", 200,
			[]string{"No quote this time", "502 Bad Gateway", "injected failure", "Release It!"}, []string{"<blockquote>"}},
		{"api down fails the page", startAPI(t, "v1", chaos.Config{FailRate: 1}, qc), "/", 502,
			[]string{"The book list is unavailable", "500 Internal Server Error"}, []string{"Release It!"}},
		{"health", startAPI(t, "v1", chaos.Config{FailRate: 1}, qc), "/healthz", 200, []string{"ok"}, nil},
		{"unknown page", startAPI(t, "v1", chaos.Config{}, qc), "/nope", 404, []string{"no page GET /nope"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			web := startWeb(t, tt.api.URL)
			status, body := get(t, web, tt.path, nil)
			if status != tt.wantStatus {
				t.Errorf("GET %s status = %d, want %d", tt.path, status, tt.wantStatus)
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(body, s) {
					t.Errorf("page does not contain %q:\n%s", s, body)
				}
			}
			for _, s := range tt.wantNotIn {
				if strings.Contains(body, s) {
					t.Errorf("page contains %q:\n%s", s, body)
				}
			}
		})
	}
}

func TestPageEscapesAPIData(t *testing.T) {
	api := startAPI(t, "v1", chaos.Config{}, nil)
	resp, err := api.Client().Post(api.URL+"/api/books", "application/json",
		strings.NewReader(`{"title":"<script>alert(1)</script>","author":"Mallory"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, body := get(t, startWeb(t, api.URL), "/", nil)
	if strings.Contains(body, "<script>alert") {
		t.Error("page contains the API's markup unescaped")
	}
	if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("page does not show the escaped title:\n%s", body)
	}
}

func TestPageForwardsTracing(t *testing.T) {
	got := make(chan string, 2)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Traceparent")
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"version":"v1","books":[],"quote":{"text":"t","author":"a"}}`)
	}))
	defer api.Close()
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	status, _ := get(t, startWeb(t, api.URL), "/", http.Header{"Traceparent": {tp}})
	if status != 200 {
		t.Fatalf("status = %d, want 200", status)
	}
	for range 2 {
		if h := <-got; h != tp {
			t.Errorf("API saw traceparent %q, want %q", h, tp)
		}
	}
}

// TestProgram runs the web program as `weft up` does (API address from
// WEFT_API_ADDR) and stops it with SIGTERM.
func TestProgram(t *testing.T) {
	api := startAPI(t, "v2", chaos.Config{}, startQuotes(t, chaos.Config{}))
	p := runtest.Start(t, []string{"WEFT_API_ADDR=" + strings.TrimPrefix(api.URL, "http://")}, "--listen", "127.0.0.1:0")
	client := &http.Client{Transport: &http.Transport{}, Timeout: time.Minute}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + p.Addr(t) + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "books from api v2") {
		t.Errorf("GET / = %d:\n%s\nwant 200 with the v2 book list", resp.StatusCode, body)
	}
	client.CloseIdleConnections()
	if got := p.Stop(t); got != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0; log:\n%s", got, p.Log())
	}
}
