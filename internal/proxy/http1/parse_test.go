package http1

import (
	"bufio"
	"strings"
	"testing"
)

// readRequest runs the head reader and the parser the Server uses.
func readRequest(raw string) (*RequestHead, error) {
	br := bufio.NewReaderSize(strings.NewReader(raw), 4096)
	head, err := readHead(br, nil, DefaultMaxHeaderBytes, true)
	if err != nil {
		return nil, err
	}
	h := &RequestHead{}
	if err := parseRequest(string(head), h); err != nil {
		return nil, err
	}
	return h, nil
}

func statusOf(err error) int {
	if err == nil {
		return 0
	}
	if he, ok := errIsHead(err); ok {
		return he.status
	}
	return -1
}

func TestParseRequestValid(t *testing.T) {
	tests := []struct {
		name                        string
		raw                         string
		method, target, path, host  string
		proto                       string
		body                        bodyKind
		length                      int64
		keepAlive, expect, trailers bool
		upgrade                     string
	}{
		{name: "simple GET", raw: "GET /a/b?x=1 HTTP/1.1\r\nHost: api.default\r\n\r\n",
			method: "GET", target: "/a/b?x=1", path: "/a/b", host: "api.default", proto: "HTTP/1.1", keepAlive: true},
		{name: "leading empty line", raw: "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
			method: "GET", target: "/", path: "/", host: "h", proto: "HTTP/1.1", keepAlive: true},
		{name: "content length", raw: "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n",
			method: "POST", target: "/p", path: "/p", host: "h", proto: "HTTP/1.1", body: bodyLength, length: 12, keepAlive: true},
		{name: "identical content lengths", raw: "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5, 5\r\n\r\n",
			method: "POST", target: "/p", path: "/p", host: "h", proto: "HTTP/1.1", body: bodyLength, length: 5, keepAlive: true},
		{name: "zero content length", raw: "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
			method: "POST", target: "/p", path: "/p", host: "h", proto: "HTTP/1.1", keepAlive: true},
		{name: "chunked", raw: "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n",
			method: "POST", target: "/p", path: "/p", host: "h", proto: "HTTP/1.1", body: bodyChunked, keepAlive: true},
		{name: "connection close", raw: "GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, close\r\n\r\n",
			method: "GET", target: "/", path: "/", host: "h", proto: "HTTP/1.1"},
		{name: "HTTP/1.0 without keep-alive", raw: "GET / HTTP/1.0\r\n\r\n",
			method: "GET", target: "/", path: "/", proto: "HTTP/1.0"},
		{name: "HTTP/1.0 keep-alive", raw: "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: h\r\n\r\n",
			method: "GET", target: "/", path: "/", host: "h", proto: "HTTP/1.0", keepAlive: true},
		{name: "absolute form", raw: "GET http://books.default:8080/x?y HTTP/1.1\r\nHost: other\r\n\r\n",
			method: "GET", target: "http://books.default:8080/x?y", path: "/x", host: "books.default:8080", proto: "HTTP/1.1", keepAlive: true},
		{name: "absolute form without path", raw: "GET HTTPS://b HTTP/1.1\r\nHost: b\r\n\r\n",
			method: "GET", target: "HTTPS://b", path: "/", host: "b", proto: "HTTP/1.1", keepAlive: true},
		{name: "options asterisk", raw: "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
			method: "OPTIONS", target: "*", path: "*", host: "h", proto: "HTTP/1.1", keepAlive: true},
		{name: "connect", raw: "CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n",
			method: "CONNECT", target: "db:5432", host: "db:5432", proto: "HTTP/1.1", keepAlive: true},
		{name: "expect and te trailers", raw: "PUT /u HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nTE: trailers\r\nContent-Length: 3\r\n\r\n",
			method: "PUT", target: "/u", path: "/u", host: "h", proto: "HTTP/1.1", body: bodyLength, length: 3, keepAlive: true, expect: true, trailers: true},
		{name: "websocket upgrade", raw: "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
			method: "GET", target: "/ws", path: "/ws", host: "h", proto: "HTTP/1.1", keepAlive: true, upgrade: "websocket"},
		{name: "h2c upgrade stripped", raw: "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAA\r\n\r\n",
			method: "GET", target: "/", path: "/", host: "h", proto: "HTTP/1.1", keepAlive: true},
		{name: "upgrade without connection token", raw: "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
			method: "GET", target: "/", path: "/", host: "h", proto: "HTTP/1.1", keepAlive: true},
		{name: "obs-text and tabs in value", raw: "GET / HTTP/1.1\r\nHost: h\r\nX-A:\t v\xe9\tx \r\n\r\n",
			method: "GET", target: "/", path: "/", host: "h", proto: "HTTP/1.1", keepAlive: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := readRequest(tt.raw)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			got := []any{h.Method(), h.Target(), h.Path(), h.Host(), h.Proto(), h.body, h.contentLength, h.keepAlive, h.expectContinue, h.teTrailers, h.upgrade}
			want := []any{tt.method, tt.target, tt.path, tt.host, tt.proto, tt.body, tt.length, tt.keepAlive, tt.expect, tt.trailers, tt.upgrade}
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("field %d: got %v, want %v", i, got[i], want[i])
				}
			}
		})
	}
}

func TestParseRequestInvalid(t *testing.T) {
	tests := []struct {
		name   string
		raw    string
		status int
	}{
		{"CL and TE (CL.TE smuggling)", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"TE and CL (TE.CL smuggling)", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400},
		{"differing content lengths", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
		{"differing content length list", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n", 400},
		{"signed content length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", 400},
		{"negative content length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400},
		{"hex content length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\n", 400},
		{"empty content length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n", 400},
		{"overflowing content length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
		{"TE chunked, identity", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400},
		{"TE gzip, chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400},
		{"TE xchunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", 400},
		{"TE twice", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"TE identity", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", 400},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"TE with vertical tab", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\x0bchunked\r\n\r\n", 400},
		{"space before colon", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n", 400},
		{"tab before colon", "GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", 400},
		{"obs-fold with tab", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n", 400},
		{"bare LF line end", "GET / HTTP/1.1\nHost: h\r\n\r\n", 400},
		{"bare LF in header", "GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 400},
		{"bare LF end of head", "GET / HTTP/1.1\r\nHost: h\r\n\n", 400},
		{"bare CR in value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", 400},
		{"bare CR in request line", "GET /\r HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n", 400},
		{"invalid name char", "GET / HTTP/1.1\r\nHost: h\r\nX(A): a\r\n\r\n", 400},
		{"name with NUL", "GET / HTTP/1.1\r\nHost: h\r\nContent-Length\x00: 5\r\n\r\n", 400},
		{"empty name", "GET / HTTP/1.1\r\nHost: h\r\n: a\r\n\r\n", 400},
		{"no colon", "GET / HTTP/1.1\r\nHost: h\r\nfoo\r\n\r\n", 400},
		{"missing host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"invalid host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
		{"double space in request line", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"HTTP/0.9", "GET /\r\n\r\n", 400},
		{"lowercase version", "GET / http/1.1\r\nHost: h\r\n\r\n", 400},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505},
		{"trailing space after version", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400},
		{"invalid method", "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"relative target", "GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"fragment in target", "GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"non-ASCII target", "GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"asterisk with GET", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"authority form with GET", "GET h:80 HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"CONNECT with path", "CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"CONNECT with body", "CONNECT h:1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n", 400},
		{"userinfo in absolute form", "GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"empty authority", "GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"ftp scheme", "GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"invalid connection token", "GET / HTTP/1.1\r\nHost: h\r\nConnection: a b\r\n\r\n", 400},
		{"oversized head", "GET / HTTP/1.1\r\nHost: h\r\nX: " + strings.Repeat("a", DefaultMaxHeaderBytes) + "\r\n\r\n", 431},
		{"too many fields", "GET / HTTP/1.1\r\nHost: h\r\n" + strings.Repeat("X: y\r\n", 300) + "\r\n", 431},
		{"too many empty lines", strings.Repeat("\r\n", 10) + "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readRequest(tt.raw)
			if got := statusOf(err); got != tt.status {
				t.Fatalf("got status %d (err %v), want %d", got, err, tt.status)
			}
		})
	}
}

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		wantErr bool
		status  int
		reason  string
		length  int64
		chunked bool
		hasTE   bool
		close   bool
	}{
		{name: "ok", raw: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", status: 200, reason: "OK", length: 3},
		{name: "no reason", raw: "HTTP/1.1 204\r\n\r\n", status: 204},
		{name: "empty reason", raw: "HTTP/1.1 404 \r\n\r\n", status: 404},
		{name: "chunked", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", status: 200, reason: "OK", chunked: true, hasTE: true},
		{name: "te not chunked", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", status: 200, reason: "OK", hasTE: true},
		{name: "1.0 closes", raw: "HTTP/1.0 200 OK\r\n\r\n", status: 200, reason: "OK", close: true},
		{name: "1.0 keep-alive", raw: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", status: 200, reason: "OK"},
		{name: "connection close", raw: "HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\n", status: 500, reason: "Oops", close: true},
		{name: "CL and TE", raw: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", wantErr: true},
		{name: "differing CL", raw: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", wantErr: true},
		{name: "bad status", raw: "HTTP/1.1 2000 OK\r\n\r\n", wantErr: true},
		{name: "status 600", raw: "HTTP/1.1 600 X\r\n\r\n", wantErr: true},
		{name: "HTTP/2", raw: "HTTP/2.0 200 OK\r\n\r\n", wantErr: true},
		{name: "bare LF", raw: "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", wantErr: true},
		{name: "obs-fold", raw: "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", wantErr: true},
		{name: "space before colon", raw: "HTTP/1.1 200 OK\r\nContent-Length : 3\r\n\r\n", wantErr: true},
		{name: "CR in reason", raw: "HTTP/1.1 200 O\rK\r\n\r\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tt.raw))
			head, err := readHead(br, nil, DefaultMaxHeaderBytes, false)
			h := &ResponseHead{}
			if err == nil {
				err = parseResponse(string(head), h)
			}
			if got := err != nil; got != tt.wantErr {
				t.Fatalf("got err %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			got := []any{h.Status(), h.Reason(), h.contentLength, h.chunked, h.hasTE, h.close}
			want := []any{tt.status, tt.reason, tt.length, tt.chunked, tt.hasTE, tt.close}
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("field %d: got %v, want %v", i, got[i], want[i])
				}
			}
		})
	}
}

func TestHeaderAccessors(t *testing.T) {
	h, err := readRequest("GET / HTTP/1.1\r\nHost: h\r\nX-Multi: a\r\nx-multi: b\r\nAccept:  text/plain \r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := h.Header("ACCEPT"), "text/plain"; got != want {
		t.Errorf("Header: got %q, want %q", got, want)
	}
	if got, want := strings.Join(h.Values("X-MULTI"), ","), "a,b"; got != want {
		t.Errorf("Values: got %q, want %q", got, want)
	}
	if got := h.Header("Missing"); got != "" {
		t.Errorf("Header(Missing): got %q, want empty", got)
	}
}

// dechunk decodes a chunked body and its trailers.
func dechunk(raw string) (string, []field, error) {
	var out strings.Builder
	dst := bufio.NewWriter(&out)
	var trailers []field
	var c copier
	_, err := c.copyChunked(dst, bufio.NewReaderSize(strings.NewReader(raw), 64), false, 4096, func(f field) { trailers = append(trailers, f) })
	_ = dst.Flush()
	return out.String(), trailers, err
}

func TestChunked(t *testing.T) {
	tests := []struct {
		name     string
		raw      string
		want     string
		trailers int
		wantErr  bool
	}{
		{name: "simple", raw: "5\r\nhello\r\n0\r\n\r\n", want: "hello"},
		{name: "several chunks", raw: "1\r\na\r\nA\r\n0123456789\r\n0\r\n\r\n", want: "a0123456789"},
		{name: "extension", raw: "5;name=val\r\nhello\r\n0;x\r\n\r\n", want: "hello"},
		{name: "leading zeros", raw: "0005\r\nhello\r\n000\r\n\r\n", want: "hello"},
		{name: "trailers", raw: "5\r\nhello\r\n0\r\nX-Sum: abc\r\nContent-Length: 9\r\n\r\n", want: "hello", trailers: 1},
		{name: "empty", raw: "0\r\n\r\n", want: ""},
		{name: "size overflow", raw: "10000000000000005\r\nhello\r\n0\r\n\r\n", wantErr: true},
		{name: "negative size", raw: "-5\r\nhello\r\n0\r\n\r\n", wantErr: true},
		{name: "0x prefix", raw: "0x5\r\nhello\r\n0\r\n\r\n", wantErr: true},
		{name: "empty size", raw: "\r\nhello\r\n0\r\n\r\n", wantErr: true},
		{name: "space inside size", raw: "5 5\r\nhello\r\n0\r\n\r\n", wantErr: true},
		{name: "bare LF after size", raw: "5\nhello\r\n0\r\n\r\n", wantErr: true},
		{name: "data longer than size", raw: "3\r\nhello\r\n0\r\n\r\n", wantErr: true},
		{name: "bare LF after data", raw: "5\r\nhello\n0\r\n\r\n", wantErr: true},
		{name: "bare CR in extension", raw: "5;a\rb\r\nhello\r\n0\r\n\r\n", wantErr: true},
		{name: "truncated", raw: "5\r\nhel", wantErr: true},
		{name: "missing last chunk", raw: "5\r\nhello\r\n", wantErr: true},
		{name: "obs-fold in trailer", raw: "0\r\nX: a\r\n b\r\n\r\n", wantErr: true},
		{name: "bare LF ends trailers", raw: "0\r\nX: a\r\n\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, trailers, err := dechunk(tt.raw)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("got err %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if got != tt.want {
				t.Errorf("body: got %q, want %q", got, tt.want)
			}
			if len(trailers) != tt.trailers {
				t.Errorf("trailers: got %v, want %d", trailers, tt.trailers)
			}
		})
	}
}
