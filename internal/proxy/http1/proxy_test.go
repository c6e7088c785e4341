package http1

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"weft.dev/weft/internal/proxy/proxyerr"
)

const curlPath = "/usr/bin/curl"

var (
	payloadOnce sync.Once
	payload     []byte
)

// testPayload returns n deterministic pseudo-random bytes.
func testPayload(n int) []byte {
	payloadOnce.Do(func() {
		r := rand.New(rand.NewChaCha8([32]byte{'w', 'e', 'f', 't'}))
		payload = make([]byte, 10<<20)
		for i := range payload {
			payload[i] = byte(r.Uint32())
		}
	})
	return payload[:n]
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// echoHandler answers with the SHA-256 and length of the request body in
// headers, the request's view of hop-by-hop fields, and a body of
// ?size= bytes, chunked if ?chunked=1.
func echoHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Req-Sha256", sum(body))
		w.Header().Set("X-Req-Len", strconv.Itoa(len(body)))
		w.Header().Set("X-Req-TE", strings.Join(r.TransferEncoding, ","))
		w.Header().Set("X-Req-Upgrade", r.Header.Get("Upgrade"))
		w.Header().Set("X-Req-Connection", r.Header.Get("Connection"))
		w.Header().Set("X-Req-Keep-Alive", r.Header.Get("Keep-Alive"))
		w.Header().Set("X-Req-Custom", r.Header.Get("X-Custom"))
		w.Header().Set("X-Req-Trailer", r.Trailer.Get("X-Trailer"))
		size, _ := strconv.Atoi(r.URL.Query().Get("size"))
		out := testPayload(size)
		if r.URL.Query().Get("chunked") == "1" {
			w.Header().Set("Trailer", "X-Resp-Trailer")
			w.WriteHeader(http.StatusOK)
			for len(out) > 0 {
				n := min(len(out), 100<<10)
				_, _ = w.Write(out[:n])
				out = out[n:]
				w.(http.Flusher).Flush()
			}
			w.Header().Set("X-Resp-Trailer", "done")
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
		_, _ = w.Write(out)
	})
}

type curlResult struct {
	status  int
	headers string // all response heads curl saw, raw
	body    []byte
	stderr  string
}

// curl runs the real curl against url with extra arguments.
func curl(t *testing.T, args ...string) curlResult {
	t.Helper()
	dir := t.TempDir()
	hdr, out := filepath.Join(dir, "headers"), filepath.Join(dir, "body")
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	full := append([]string{"-sS", "--max-time", "20", "-D", hdr, "-o", out, "-w", "%{http_code}"}, args...)
	cmd := exec.CommandContext(ctx, curlPath, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("curl %v: %v: %s", args, err, stderr.String())
	}
	h, _ := os.ReadFile(hdr)
	b, _ := os.ReadFile(out)
	status, _ := strconv.Atoi(strings.TrimSpace(stdout.String()))
	return curlResult{status: status, headers: string(h), body: b, stderr: stderr.String()}
}

func headerOf(raw, name string) string {
	for _, line := range strings.Split(raw, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func TestCurlKeepAliveReuse(t *testing.T) {
	up := startUpstream(t, echoHandler())
	p := startProxy(t, up.Listener.Addr().String(), nil)
	const n = 5
	var urls []string
	for i := range n {
		urls = append(urls, fmt.Sprintf("http://%s/echo?size=%d", p.addr, i))
	}
	dir := t.TempDir()
	args := []string{"-sS", "--max-time", "20", "-w", "%{num_connects} "}
	for _, u := range urls {
		args = append(args, "-o", filepath.Join(dir, "out"), u)
	}
	out, err := exec.Command(curlPath, args...).Output()
	if err != nil {
		t.Fatalf("curl: %v", err)
	}
	if got, want := strings.Fields(string(out)), []string{"1", "0", "0", "0", "0"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("client connects per request: got %v, want %v", got, want)
	}
	if got, want := up.conns.Load(), int32(1); got != want {
		t.Errorf("upstream connections: got %d, want %d", got, want)
	}
	p.stop()
	calls := p.router.doneCalls()
	if len(calls) != n {
		t.Fatalf("Done calls: got %d, want %d", len(calls), n)
	}
	for _, c := range calls {
		if c.status != 200 || c.err != nil {
			t.Errorf("Done: got (%d, %v), want (200, nil)", c.status, c.err)
		}
	}
}

func TestCurlBodies(t *testing.T) {
	up := startUpstream(t, echoHandler())
	p := startProxy(t, up.Listener.Addr().String(), nil)
	dir := t.TempDir()
	tests := []struct {
		name        string
		size        int
		reqChunked  bool
		respChunked bool
	}{
		{"empty", 0, false, false},
		{"1 KiB", 1 << 10, false, false},
		{"10 MiB", 10 << 20, false, false},
		{"empty chunked", 0, true, true},
		{"1 KiB chunked", 1 << 10, true, true},
		{"10 MiB chunked", 10 << 20, true, true},
		{"10 MiB chunked up, length down", 10 << 20, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := testPayload(tt.size)
			file := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			if err := os.WriteFile(file, body, 0o600); err != nil {
				t.Fatal(err)
			}
			url := fmt.Sprintf("http://%s/echo?size=%d", p.addr, tt.size)
			if tt.respChunked {
				url += "&chunked=1"
			}
			args := []string{"-H", "Expect:", "--data-binary", "@" + file, url}
			if tt.reqChunked {
				args = append([]string{"-H", "Transfer-Encoding: chunked"}, args...)
			}
			r := curl(t, args...)
			if r.status != 200 {
				t.Fatalf("status: got %d, want 200; headers %s", r.status, r.headers)
			}
			if got, want := headerOf(r.headers, "X-Req-Sha256"), sum(body); got != want {
				t.Errorf("request body hash at upstream: got %s, want %s", got, want)
			}
			if got, want := sum(r.body), sum(body); got != want {
				t.Errorf("response body hash at client: got %s (%d bytes), want %s", got, len(r.body), want)
			}
			wantTE := ""
			if tt.reqChunked {
				wantTE = "chunked"
			}
			if got := headerOf(r.headers, "X-Req-TE"); got != wantTE {
				t.Errorf("request framing at upstream: got TE %q, want %q", got, wantTE)
			}
			gotChunked := strings.EqualFold(headerOf(r.headers, "Transfer-Encoding"), "chunked")
			if gotChunked != tt.respChunked {
				t.Errorf("response chunked at client: got %v, want %v", gotChunked, tt.respChunked)
			}
		})
	}
}

func TestCurlExpectContinue(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/deny" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		echoHandler().ServeHTTP(w, r)
	}))
	p := startProxy(t, up.Listener.Addr().String(), nil)
	body := testPayload(64 << 10)
	file := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("accepted", func(t *testing.T) {
		r := curl(t, "-H", "Expect: 100-continue", "--expect100-timeout", "15", "--data-binary", "@"+file, "http://"+p.addr+"/echo")
		if r.status != 200 {
			t.Fatalf("status: got %d, want 200", r.status)
		}
		if !strings.Contains(r.headers, "HTTP/1.1 100 Continue") {
			t.Errorf("interim 100 Continue not relayed; heads:\n%s", r.headers)
		}
		if got, want := headerOf(r.headers, "X-Req-Sha256"), sum(body); got != want {
			t.Errorf("body at upstream: got %s, want %s", got, want)
		}
	})
	t.Run("refused before the body", func(t *testing.T) {
		r := curl(t, "-H", "Expect: 100-continue", "--expect100-timeout", "15", "--data-binary", "@"+file, "http://"+p.addr+"/deny")
		if r.status != http.StatusUnauthorized {
			t.Fatalf("status: got %d, want 401", r.status)
		}
		if strings.Contains(r.headers, "100 Continue") {
			t.Errorf("got a 100 Continue for a refused request:\n%s", r.headers)
		}
	})
}

func TestCurlHeadAndNoContent(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.Header().Set("ETag", `"x"`)
			w.WriteHeader(http.StatusNotModified)
		default:
			w.Header().Set("Content-Length", "1234")
			if r.Method != http.MethodHead {
				_, _ = w.Write(testPayload(1234))
			}
		}
	}))
	p := startProxy(t, up.Listener.Addr().String(), nil)
	base := "http://" + p.addr
	// One curl run over one connection: a body-less answer that the
	// proxy mis-framed would desync every request after it.
	dir := t.TempDir()
	out, err := exec.Command(curlPath, "-sS", "--max-time", "20",
		"-w", "%{http_code}:%{size_download}:%{num_connects} ",
		"-I", "-o", filepath.Join(dir, "a"), base+"/x",
		"--next", "-o", filepath.Join(dir, "b"), "-w", "%{http_code}:%{size_download}:%{num_connects} ", base+"/204",
		"--next", "-o", filepath.Join(dir, "c"), "-w", "%{http_code}:%{size_download}:%{num_connects} ", base+"/304",
		"--next", "-o", filepath.Join(dir, "d"), "-w", "%{http_code}:%{size_download}:%{num_connects} ", base+"/x",
	).Output()
	if err != nil {
		t.Fatalf("curl: %v", err)
	}
	if got, want := strings.TrimSpace(string(out)), "200:0:1 204:0:0 304:0:0 200:1234:0"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	head, _ := os.ReadFile(filepath.Join(dir, "a"))
	if got := headerOf(string(head), "Content-Length"); got != "1234" {
		t.Errorf("HEAD Content-Length: got %q, want 1234", got)
	}
}

func TestCurlErrors(t *testing.T) {
	t.Run("refused upstream", func(t *testing.T) {
		// A port that was just released: nothing listens on it.
		up := startUpstream(t, echoHandler())
		addr := up.Listener.Addr().String()
		up.Close()
		p := startProxy(t, addr, nil)
		r := curl(t, "http://"+p.addr+"/x")
		if r.status != http.StatusBadGateway {
			t.Fatalf("status: got %d, want 502", r.status)
		}
		reason := headerOf(r.headers, "Weft-Proxy-Error")
		if !strings.Contains(reason, "connect to "+addr+": refused") {
			t.Errorf("Weft-Proxy-Error: got %q, want it to say the connect to %s was refused", reason, addr)
		}
		if !strings.HasPrefix(string(r.body), reason) {
			t.Errorf("body: got %q, want it to start with the reason %q", r.body, reason)
		}
		if got := headerOf(r.headers, "Content-Type"); !strings.HasPrefix(got, "text/plain") {
			t.Errorf("Content-Type: got %q, want text/plain", got)
		}
		p.stop()
		calls := p.router.doneCalls()
		if len(calls) != 1 || calls[0].status != 502 || calls[0].err == nil {
			t.Errorf("Done: got %+v, want one call with 502 and an error", calls)
		}
	})
	t.Run("router error", func(t *testing.T) {
		up := startUpstream(t, echoHandler())
		p := startProxy(t, up.Listener.Addr().String(), nil)
		p.router.setErr(errNoEndpoints)
		r := curl(t, "http://"+p.addr+"/x")
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("status: got %d, want 503", r.status)
		}
		if got, want := headerOf(r.headers, "Weft-Proxy-Error"), "no endpoints for api.default"; got != want {
			t.Errorf("Weft-Proxy-Error: got %q, want %q", got, want)
		}
		if got, want := string(r.body), "no endpoints for api.default\n"; got != want {
			t.Errorf("body: got %q, want %q", got, want)
		}
		if got := up.conns.Load(); got != 0 {
			t.Errorf("upstream connections: got %d, want 0", got)
		}
	})
}

var errNoEndpoints = proxyerr.New(http.StatusServiceUnavailable, "no endpoints for api.default")
