package bookapi

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"weft.dev/weft/examples/demo/internal/chaos"
	"weft.dev/weft/examples/demo/internal/quotes"
	"weft.dev/weft/examples/demo/quotes/quotespb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
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

func startAPI(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return srv
}

// do sends a request and returns the status, the decoded JSON body and the
// raw body.
func do(t *testing.T, srv *httptest.Server, method, path, body string) (int, map[string]any, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: body %q is not a JSON object: %v", method, path, raw, err)
	}
	return resp.StatusCode, m, string(raw)
}

func TestNewRejectsUnknownVersion(t *testing.T) {
	if _, err := New(Config{Version: "v3"}); err == nil {
		t.Error("New(v3) succeeded, want an error")
	}
}

func TestEndpoints(t *testing.T) {
	client := startQuotes(t, chaos.Config{})
	tests := []struct {
		name       string
		version    string
		method     string
		path       string
		body       string
		wantStatus int
		wantIn     string // a substring of the raw body
	}{
		{"list v1", V1, "GET", "/api/books", "", 200, `"title":"Release It!"`},
		{"get v1", V1, "GET", "/api/books/1", "", 200, `"title":"Designing Data-Intensive Applications"`},
		{"get v2 has rating", V2, "GET", "/api/books/1", "", 200, `"rating":4.8`},
		{"get missing", V1, "GET", "/api/books/999", "", 404, `no book with id 999`},
		{"get bad id", V1, "GET", "/api/books/abc", "", 400, `not a positive integer`},
		{"add", V1, "POST", "/api/books", `{"title":"Go in Practice","author":"Matt Butcher","year":2016}`, 201, `"title":"Go in Practice"`},
		{"add v2 keeps rating", V2, "POST", "/api/books", `{"title":"T","author":"A","rating":3.5}`, 201, `"rating":3.5`},
		{"add without title", V1, "POST", "/api/books", `{"author":"A"}`, 422, `title is required`},
		{"add bad rating", V1, "POST", "/api/books", `{"title":"T","author":"A","rating":9}`, 422, `rating 9 is out of range`},
		{"add unknown field", V1, "POST", "/api/books", `{"title":"T","author":"A","pages":3}`, 400, `unknown field`},
		{"add not JSON", V1, "POST", "/api/books", `title=T`, 400, `invalid JSON body`},
		{"quote", V1, "GET", "/api/quote?topic=failure", "", 200, `"author":`},
		{"quote unknown topic", V2, "GET", "/api/quote?topic=cooking", "", 404, `known topics are code, failure, simplicity`},
		{"quotes stream", V2, "GET", "/api/quotes?count=4", "", 200, `"quotes":[{"text":`},
		{"quotes stream default", V1, "GET", "/api/quotes", "", 200, `"quotes":[{"text":`},
		{"quotes stream count too large", V1, "GET", "/api/quotes?count=101", "", 400, `is not a number from 1 to 100`},
		{"health", V2, "GET", "/healthz", "", 200, `"status":"ok"`},
		{"unknown route", V1, "GET", "/nope", "", 404, `no route for GET /nope`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startAPI(t, Config{Version: tt.version, Quotes: client})
			status, m, raw := do(t, srv, tt.method, tt.path, tt.body)
			if status != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", status, tt.wantStatus, raw)
			}
			if got := m["version"]; got != tt.version {
				t.Errorf("version = %v, want %q", got, tt.version)
			}
			if !strings.Contains(raw, tt.wantIn) {
				t.Errorf("body %s does not contain %s", raw, tt.wantIn)
			}
		})
	}
}

func TestQuotesCount(t *testing.T) {
	srv := startAPI(t, Config{Quotes: startQuotes(t, chaos.Config{})})
	tests := []struct {
		query string
		want  int
	}{
		{"", 3},
		{"?count=1", 1},
		{"?count=100", 100},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			_, m, raw := do(t, srv, "GET", "/api/quotes"+tt.query, "")
			qs, _ := m["quotes"].([]any)
			if got := len(qs); got != tt.want {
				t.Errorf("GET /api/quotes%s gave %d quotes, want %d (%s)", tt.query, got, tt.want, raw)
			}
		})
	}
}

func TestV1HidesRating(t *testing.T) {
	srv := startAPI(t, Config{Version: V1})
	_, _, raw := do(t, srv, "GET", "/api/books", "")
	if strings.Contains(raw, "rating") {
		t.Errorf("v1 body %s shows a rating", raw)
	}
	srv2 := startAPI(t, Config{Version: V2})
	_, _, raw = do(t, srv2, "GET", "/api/books", "")
	if got, want := strings.Count(raw, `"rating"`), len(seed); got != want {
		t.Errorf("v2 shows %d ratings, want %d", got, want)
	}
}

func TestAddedBookIsListed(t *testing.T) {
	srv := startAPI(t, Config{})
	status, m, raw := do(t, srv, "POST", "/api/books", `{"title":"New","author":"Me"}`)
	if status != http.StatusCreated {
		t.Fatalf("POST status = %d (%s), want 201", status, raw)
	}
	id := int(m["book"].(map[string]any)["id"].(float64))
	if id != len(seed)+1 {
		t.Errorf("new id = %d, want %d", id, len(seed)+1)
	}
	_, _, raw = do(t, srv, "GET", "/api/books/7", "")
	if !strings.Contains(raw, `"title":"New"`) {
		t.Errorf("GET /api/books/7 = %s, want the added book", raw)
	}
}

func TestStoreForgetsOldestAdded(t *testing.T) {
	s := newStore()
	for range MaxAdded + 5 {
		s.add(NewBook{Title: "t", Author: "a"})
	}
	if got, want := len(s.list()), len(seed)+MaxAdded; got != want {
		t.Errorf("store holds %d books, want %d", got, want)
	}
	if _, ok := s.get(1); !ok {
		t.Error("seed book 1 was forgotten")
	}
	if _, ok := s.get(len(seed) + 1); ok {
		t.Error("oldest added book is still there")
	}
	if _, ok := s.get(len(seed) + MaxAdded + 5); !ok {
		t.Error("newest added book is missing")
	}
}

func TestQuoteBackendFailures(t *testing.T) {
	tests := []struct {
		name       string
		client     quotespb.QuotesClient
		wantStatus int
		wantIn     string
	}{
		{"no backend", nil, 503, "--quotes"},
		{"backend fails", startQuotes(t, chaos.Config{FailRate: 1}), 502, "Unavailable: injected failure"},
		{"backend unreachable", unreachable(t), 502, "quotes backend"},
	}
	for _, tt := range tests {
		for _, path := range []string{"/api/quote", "/api/quotes"} {
			t.Run(tt.name+path, func(t *testing.T) {
				srv := startAPI(t, Config{Quotes: tt.client})
				status, _, raw := do(t, srv, "GET", path, "")
				if status != tt.wantStatus {
					t.Errorf("status = %d, want %d (body %s)", status, tt.wantStatus, raw)
				}
				if !strings.Contains(raw, tt.wantIn) {
					t.Errorf("body %s does not contain %q", raw, tt.wantIn)
				}
			})
		}
	}
}

// unreachable returns a client of a loopback port nobody listens on.
func unreachable(t *testing.T) quotespb.QuotesClient {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return quotespb.NewQuotesClient(conn)
}

func TestQuoteTimeout(t *testing.T) {
	// The backend delays for an hour; the API gives up after its timeout
	// (a hang guard would fire long before an hour).
	client := startQuotes(t, chaos.Config{Latency: time.Hour})
	srv := startAPI(t, Config{Quotes: client, QuoteTimeout: 50 * time.Millisecond})
	status, _, raw := do(t, srv, "GET", "/api/quote", "")
	if status != http.StatusGatewayTimeout {
		t.Errorf("status = %d, want 504 (body %s)", status, raw)
	}
}

// recordingQuotes answers GetQuote and records the metadata it received.
type recordingQuotes struct {
	quotespb.UnimplementedQuotesServer
	got chan metadata.MD
}

func (r recordingQuotes) GetQuote(ctx context.Context, _ *quotespb.GetQuoteRequest) (*quotespb.Quote, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	r.got <- md
	return &quotespb.Quote{Text: "t", Author: "a"}, nil
}

func TestQuoteForwardsTracing(t *testing.T) {
	rec := recordingQuotes{got: make(chan metadata.MD, 1)}
	gs := grpc.NewServer()
	quotespb.RegisterQuotesServer(gs, rec)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	defer gs.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	srv := startAPI(t, Config{Quotes: quotespb.NewQuotesClient(conn)})

	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	req, err := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/api/quote", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Traceparent", tp)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	md := <-rec.got
	if got := md.Get("traceparent"); len(got) != 1 || got[0] != tp {
		t.Errorf("quotes service saw traceparent %q, want %q", got, tp)
	}
}
