package http1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestTrailers(t *testing.T) {
	up := startUpstream(t, echoHandler())
	p := startProxy(t, up.Listener.Addr().String(), nil)
	c := dialRaw(t, p.addr)
	c.send(t, "POST /echo?size=300&chunked=1 HTTP/1.1\r\nHost: h\r\nTE: trailers\r\nTrailer: X-Trailer\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t1\r\nContent-Length: 99\r\n\r\n")
	resp := c.response(t, "POST")
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(body), 300; got != want {
		t.Errorf("response body: got %d bytes, want %d", got, want)
	}
	if got, want := resp.Header.Get("X-Req-Sha256"), sum([]byte("hello world")); got != want {
		t.Errorf("request body at upstream: got %s, want hash of %q", got, "hello world")
	}
	if got, want := resp.Header.Get("X-Req-Trailer"), "t1"; got != want {
		t.Errorf("request trailer at upstream: got %q, want %q", got, want)
	}
	if got, want := resp.Trailer.Get("X-Resp-Trailer"), "done"; got != want {
		t.Errorf("response trailer at client: got %q, want %q", got, want)
	}
}

func TestPipelining(t *testing.T) {
	up := startUpstream(t, echoHandler())
	p := startProxy(t, up.Listener.Addr().String(), nil)
	c := dialRaw(t, p.addr)
	c.send(t, "GET /echo?size=1 HTTP/1.1\r\nHost: h\r\n\r\n"+
		"POST /echo?size=2 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nabcde"+
		"GET /echo?size=3 HTTP/1.1\r\nHost: h\r\n\r\n")
	for i, want := range []struct{ size, reqLen int }{{1, 0}, {2, 5}, {3, 0}} {
		resp := c.response(t, "GET")
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		got := fmt.Sprintf("%d/%s", len(body), resp.Header.Get("X-Req-Len"))
		if w := fmt.Sprintf("%d/%d", want.size, want.reqLen); got != w {
			t.Errorf("response %d: got size/request length %s, want %s", i, got, w)
		}
	}
	if got := up.conns.Load(); got != 1 {
		t.Errorf("upstream connections: got %d, want 1", got)
	}
}

func TestHopByHop(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Req-Host", r.Host)
		w.Header().Set("X-Req-Settings", r.Header.Get("HTTP2-Settings"))
		w.Header().Set("X-Req-Proxy-Connection", r.Header.Get("Proxy-Connection"))
		w.Header().Set("X-Req-TE", r.Header.Get("TE"))
		w.Header().Set("X-Req-End", r.Header.Get("X-End-To-End"))
		w.Header().Set("Connection", "X-Secret-Hop")
		w.Header().Set("X-Secret-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
	}))
	p := startProxy(t, up.Listener.Addr().String(), nil)
	c := dialRaw(t, p.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost: books\r\nConnection: Upgrade, HTTP2-Settings, Host, X-Custom\r\nUpgrade: h2c\r\n"+
		"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nProxy-Connection: keep-alive\r\nTE: trailers, deflate\r\nX-Custom: x\r\nX-End-To-End: e\r\n\r\n")
	resp := c.response(t, "GET")
	_, _ = io.Copy(io.Discard, resp.Body)
	tests := []struct{ name, got, want string }{
		{"status", resp.Status, "200 OK"},
		{"Host kept though listed in Connection", resp.Header.Get("X-Req-Host"), "books"},
		{"h2c upgrade settings dropped", resp.Header.Get("X-Req-Settings"), ""},
		{"Proxy-Connection dropped", resp.Header.Get("X-Req-Proxy-Connection"), ""},
		{"TE reduced to trailers", resp.Header.Get("X-Req-TE"), "trailers"},
		{"end-to-end kept", resp.Header.Get("X-Req-End"), "e"},
		{"response Connection-listed dropped", resp.Header.Get("X-Secret-Hop"), ""},
		{"response Keep-Alive dropped", resp.Header.Get("Keep-Alive"), ""},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

// wsEcho answers an Upgrade: websocket request with 101 and echoes bytes
// until the connection closes.
func wsEcho() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		conn, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n")
		_ = rw.Flush()
		buf := make([]byte, 1024)
		for {
			n, err := rw.Read(buf)
			if n > 0 {
				if _, err := conn.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
}

func TestWebSocketUpgrade(t *testing.T) {
	up := startUpstream(t, wsEcho())
	p := startProxy(t, up.Listener.Addr().String(), nil)
	c := dialRaw(t, p.addr)
	// The first frame travels in the same packet as the request head.
	c.send(t, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\nearly")
	resp := c.response(t, "GET")
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status: got %d, want 101", resp.StatusCode)
	}
	if got := resp.Header.Get("Upgrade"); got != "websocket" {
		t.Errorf("Upgrade: got %q, want websocket", got)
	}
	for _, msg := range []string{"early", "ping-1", strings.Repeat("x", 5000)} {
		if msg != "early" {
			c.send(t, msg)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c.br, got); err != nil {
			t.Fatalf("echo of %d bytes: %v", len(msg), err)
		}
		if string(got) != msg {
			t.Errorf("echo: got %q, want %q", got[:min(len(got), 20)], msg[:min(len(msg), 20)])
		}
	}
	_ = c.Close()
	p.stop()
	calls := p.router.doneCalls()
	if len(calls) != 1 || calls[0].status != http.StatusSwitchingProtocols {
		t.Errorf("Done: got %+v, want one call with 101", calls)
	}
}

func TestConnect(t *testing.T) {
	up := startRawUpstream(t, func(_ int, c net.Conn, br *bufio.Reader) {
		req, err := readRequestHeadRaw(br)
		if err != nil || req.Method() != "CONNECT" {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 Connection Established\r\n\r\n")
		_, _ = io.Copy(c, br)
	})
	p := startProxy(t, up.addr(), nil)
	c := dialRaw(t, p.addr)
	c.send(t, "CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n")
	if resp := c.response(t, "CONNECT"); resp.StatusCode != 200 {
		t.Fatalf("status: got %d, want 200", resp.StatusCode)
	}
	c.send(t, "opaque bytes")
	got := make([]byte, len("opaque bytes"))
	if _, err := io.ReadFull(c.br, got); err != nil || string(got) != "opaque bytes" {
		t.Errorf("tunnel echo: got %q, %v", got, err)
	}
}

func TestRejectedRequests(t *testing.T) {
	tests := []struct {
		name   string
		raw    string
		status int
	}{
		{"CL.TE smuggling", "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"TE obfuscation", "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400},
		{"whitespace before colon", "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\nhello", 400},
		{"bad chunk size", "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nx\r\n0\r\n\r\n", 400},
		{"oversized head", "GET /a HTTP/1.1\r\nHost: h\r\nX: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", 431},
		{"HTTP/2.0 line", "GET /a HTTP/2.0\r\nHost: h\r\n\r\n", 505},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startRawUpstream(t, func(_ int, c net.Conn, br *bufio.Reader) {
				// A chunked request passes the head check; its body
				// is refused mid-stream and must not be completed.
				_, _ = io.Copy(io.Discard, br)
			})
			p := startProxy(t, up.addr(), nil)
			c := dialRaw(t, p.addr)
			c.send(t, tt.raw)
			resp := c.response(t, "POST")
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status: got %d, want %d (%s)", resp.StatusCode, tt.status, body)
			}
			reason := resp.Header.Get("Weft-Proxy-Error")
			if !strings.HasPrefix(reason, "invalid request: ") || string(body) != reason+"\n" {
				t.Errorf("reason: got header %q body %q, want matching \"invalid request: ...\"", reason, body)
			}
			if !resp.Close {
				t.Errorf("connection not closed after a rejected request")
			}
			if _, err := c.br.ReadByte(); err != io.EOF {
				t.Errorf("after the answer: got %v, want EOF", err)
			}
			p.stop()
			for _, s := range p.router.seen {
				if strings.Contains(s, "smuggled") {
					t.Errorf("smuggled request was routed: %s", s)
				}
			}
		})
	}
}

func TestHTTP10(t *testing.T) {
	up := startUpstream(t, echoHandler())
	p := startProxy(t, up.Listener.Addr().String(), nil)
	t.Run("closes by default", func(t *testing.T) {
		c := dialRaw(t, p.addr)
		c.send(t, "GET /echo?size=100&chunked=1 HTTP/1.0\r\n\r\n")
		resp := c.response(t, "GET")
		body, err := io.ReadAll(resp.Body)
		if err != nil || len(body) != 100 {
			t.Fatalf("body: got %d bytes, %v; want 100", len(body), err)
		}
		if len(resp.TransferEncoding) != 0 {
			t.Errorf("chunked sent to an HTTP/1.0 client: %v", resp.TransferEncoding)
		}
		if _, err := c.br.ReadByte(); err != io.EOF {
			t.Errorf("after the response: got %v, want EOF", err)
		}
	})
	t.Run("keep-alive when asked", func(t *testing.T) {
		c := dialRaw(t, p.addr)
		for i := range 2 {
			c.send(t, "GET /echo?size=10 HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n")
			resp := c.response(t, "GET")
			body, _ := io.ReadAll(resp.Body)
			if len(body) != 10 || resp.Header.Get("Connection") != "keep-alive" {
				t.Errorf("request %d: got %d bytes, Connection %q; want 10, keep-alive", i, len(body), resp.Header.Get("Connection"))
			}
		}
	})
}

func TestUpstreamFailures(t *testing.T) {
	tests := []struct {
		name     string
		upstream func(n int, c net.Conn, br *bufio.Reader)
		// check inspects the client's view.
		status     int
		reason     string
		body       string
		bodyErr    bool
		clientOpen bool
		doneErr    bool
	}{
		{
			name: "body until close",
			upstream: func(_ int, c net.Conn, br *bufio.Reader) {
				_, _ = readRequestHeadRaw(br)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\nhello until close")
			},
			status: 200, body: "hello until close",
		},
		{
			name: "closes mid-body",
			upstream: func(_ int, c net.Conn, br *bufio.Reader) {
				_, _ = readRequestHeadRaw(br)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
			},
			status: 200, bodyErr: true, doneErr: true,
		},
		{
			name: "closes before the head",
			upstream: func(_ int, _ net.Conn, br *bufio.Reader) {
				_, _ = readRequestHeadRaw(br)
			},
			status: 502, reason: "closed the connection before responding", clientOpen: true, doneErr: true,
		},
		{
			name: "invalid response",
			upstream: func(_ int, c net.Conn, br *bufio.Reader) {
				_, _ = readRequestHeadRaw(br)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
			},
			status: 502, reason: "sent an invalid response: both Content-Length and Transfer-Encoding", clientOpen: true, doneErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startRawUpstream(t, tt.upstream)
			p := startProxy(t, up.addr(), nil)
			c := dialRaw(t, p.addr)
			c.send(t, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
			resp := c.response(t, "GET")
			body, err := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status: got %d, want %d", resp.StatusCode, tt.status)
			}
			if got := err != nil; got != tt.bodyErr {
				t.Errorf("body error: got %v, want error %v", err, tt.bodyErr)
			}
			if tt.body != "" && string(body) != tt.body {
				t.Errorf("body: got %q, want %q", body, tt.body)
			}
			if got := resp.Header.Get("Weft-Proxy-Error"); !strings.Contains(got, tt.reason) {
				t.Errorf("Weft-Proxy-Error: got %q, want it to contain %q", got, tt.reason)
			}
			if tt.clientOpen {
				// The client connection survives a proxy answer.
				c.send(t, "GET /y HTTP/1.1\r\nHost: h\r\n\r\n")
				second := c.response(t, "GET")
				_, _ = io.Copy(io.Discard, second.Body)
			} else if _, err := c.br.ReadByte(); err == nil {
				t.Errorf("client connection open after a response without length or a broken body")
			}
			p.stop()
			calls := p.router.doneCalls()
			if len(calls) == 0 || calls[0].status != tt.status || (calls[0].err != nil) != tt.doneErr {
				t.Errorf("Done: got %+v, want status %d, error %v", calls, tt.status, tt.doneErr)
			}
		})
	}
}

// staleUpstream answers one request per connection with a keep-alive
// response and then closes it, as a server with a short idle timeout does.
func staleUpstream(t *testing.T) *rawUpstream {
	return startRawUpstream(t, func(n int, c net.Conn, br *bufio.Reader) {
		req, err := readRequestHeadRaw(br)
		if err != nil {
			return
		}
		_, _ = br.Discard(int(req.ContentLength()))
		_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d", n)
	})
}

func TestStaleConnectionRetry(t *testing.T) {
	t.Run("bodyless request is retried", func(t *testing.T) {
		up := staleUpstream(t)
		p := startProxy(t, up.addr(), nil)
		c := dialRaw(t, p.addr)
		for i := range 2 {
			c.send(t, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
			resp := c.response(t, "GET")
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(body) != fmt.Sprint(i+1) {
				t.Errorf("request %d: got %d %q, want 200 from upstream connection %d", i, resp.StatusCode, body, i+1)
			}
			waitIdleClosed(t, up, i+1)
		}
		if got := up.accepts.Load(); got != 2 {
			t.Errorf("upstream connections: got %d, want 2", got)
		}
	})
	t.Run("request with a body is not retried", func(t *testing.T) {
		up := staleUpstream(t)
		p := startProxy(t, up.addr(), nil)
		c := dialRaw(t, p.addr)
		c.send(t, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
		_, _ = io.Copy(io.Discard, c.response(t, "GET").Body)
		waitIdleClosed(t, up, 1)
		c.send(t, "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
		resp := c.response(t, "POST")
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("status: got %d, want 502", resp.StatusCode)
		}
		if got := up.accepts.Load(); got != 1 {
			t.Errorf("upstream connections: got %d, want 1 (no retry)", got)
		}
	})
}

// waitIdleClosed waits until upstream connection n has been handled (and
// so closed), so the proxy's pooled connection to it is stale.
func waitIdleClosed(t *testing.T, up *rawUpstream, n int) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for up.accepts.Load() < int32(n) {
		if time.Now().After(deadline) {
			t.Fatal("upstream never accepted")
		}
		time.Sleep(time.Millisecond)
	}
	// The handler closes right after writing: give the FIN a moment to
	// reach the proxy's side. Either way the retry path is taken.
	time.Sleep(20 * time.Millisecond)
}

func TestGracefulDrain(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	}))
	p := startProxy(t, up.Listener.Addr().String(), nil)

	idle := dialRaw(t, p.addr)
	idle.send(t, "GET /fast HTTP/1.1\r\nHost: h\r\n\r\n")
	_, _ = io.Copy(io.Discard, idle.response(t, "GET").Body)

	busy := dialRaw(t, p.addr)
	busy.send(t, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
	<-entered
	p.cancel()

	// The idle connection closes at once, without an answer.
	if _, err := idle.br.ReadByte(); err != io.EOF {
		t.Errorf("idle connection after drain: got %v, want EOF", err)
	}
	close(release)
	resp := busy.response(t, "GET")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Errorf("in-flight request: got %d %q, want 200 ok", resp.StatusCode, body)
	}
	if !resp.Close {
		t.Errorf("in-flight response lacks Connection: close")
	}
	if _, err := busy.br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("busy connection after its response: got %v, want EOF", err)
	}
}

func TestResponseTimeout(t *testing.T) {
	release := make(chan struct{})
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	p := startProxy(t, up.Listener.Addr().String(), nil)
	p.router.setTimeout(100 * time.Millisecond)
	c := dialRaw(t, p.addr)
	c.send(t, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
	resp := c.response(t, "GET")
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status: got %d, want 504", resp.StatusCode)
	}
	if got, want := resp.Header.Get("Weft-Proxy-Error"), "did not respond within 100ms"; !strings.Contains(got, want) {
		t.Errorf("Weft-Proxy-Error: got %q, want it to contain %q", got, want)
	}
}

func TestEarlyResponse(t *testing.T) {
	// The upstream refuses a large body before reading it.
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	}))
	p := startProxy(t, up.Listener.Addr().String(), nil)
	c := dialRaw(t, p.addr)
	body := testPayload(10 << 20)
	errc := make(chan error, 1)
	go func() {
		_, err := fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		errc <- err
	}()
	resp := c.response(t, "POST")
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(got), "too large") {
		t.Errorf("got %d %q, want the upstream's 413", resp.StatusCode, got)
	}
	if !resp.Close {
		t.Errorf("the unread body leaves the connection unusable; want Connection: close")
	}
	_ = c.Close()
	<-errc
}

func TestStaleConnectionExpectContinue(t *testing.T) {
	// With Expect: 100-continue the body is still at the client when the
	// stale connection fails, so the request is sent again.
	up := startRawUpstream(t, func(n int, c net.Conn, br *bufio.Reader) {
		req, err := readRequestHeadRaw(br)
		if err != nil {
			return
		}
		if req.expectContinue {
			_, _ = io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
		}
		_, _ = br.Discard(int(req.ContentLength()))
		_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d", n)
	})
	p := startProxy(t, up.addr(), nil)
	c := dialRaw(t, p.addr)
	c.send(t, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
	_, _ = io.Copy(io.Discard, c.response(t, "GET").Body)
	waitIdleClosed(t, up, 1)
	c.send(t, "PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	if interim := c.response(t, "PUT"); interim.StatusCode != http.StatusContinue {
		t.Fatalf("interim status: got %d, want 100", interim.StatusCode)
	}
	c.send(t, "hello")
	resp := c.response(t, "PUT")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "2" {
		t.Errorf("got %d %q, want 200 from upstream connection 2", resp.StatusCode, body)
	}
}

func TestProxyAnswerToHead(t *testing.T) {
	up := startUpstream(t, echoHandler())
	p := startProxy(t, up.Listener.Addr().String(), nil)
	p.router.setErr(errNoEndpoints)
	c := dialRaw(t, p.addr)
	c.send(t, "HEAD /x HTTP/1.1\r\nHost: h\r\n\r\nHEAD /y HTTP/1.1\r\nHost: h\r\n\r\n")
	for i := range 2 {
		resp := c.response(t, "HEAD")
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Weft-Proxy-Error") == "" {
			t.Errorf("answer %d: got %d, want 503 with a reason", i, resp.StatusCode)
		}
	}
}
