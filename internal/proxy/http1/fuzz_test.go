package http1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
)

var requestSeeds = []string{
	"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
	"\r\nPOST /p?q HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\nConnection: x, close\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
	"GET http://a:1/b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
	"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c, websocket\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
	"GET / HTTP/1.1\nHost: h\n\n",
}

// serializeRequest writes a parsed head back in canonical form.
func serializeRequest(h *RequestHead) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s\r\n", h.method, h.target, h.proto)
	for _, f := range h.fields {
		fmt.Fprintf(&b, "%s: %s\r\n", f.name, f.value)
	}
	b.WriteString("\r\n")
	return b.String()
}

// requestView is what a parsed request means, for comparisons.
func requestView(h *RequestHead) []any {
	return []any{h.method, h.target, h.path, h.host, h.proto, h.hasHost, h.body, h.contentLength,
		h.keepAlive, h.expectContinue, h.teTrailers, h.upgrade, fmt.Sprint(h.fields), fmt.Sprint(h.connTokens)}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(strings.NewReader(string(data)), 64)
		head, err := readHead(br, nil, 4096, true)
		if err != nil {
			if _, ok := errIsHead(err); !ok && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("readHead: unexpected error kind %T: %v", err, err)
			}
			return
		}
		h := &RequestHead{}
		if err := parseRequest(string(head), h); err != nil {
			if _, ok := errIsHead(err); !ok {
				t.Fatalf("parse: error is not a head refusal: %v", err)
			}
			return
		}
		// A parsed request never contains what makes hops disagree.
		if h.body == bodyChunked && h.Header("Content-Length") != "" {
			t.Fatalf("accepted CL and TE together: %q", head)
		}
		again := &RequestHead{}
		if err := parseRequest(serializeRequest(h), again); err != nil {
			t.Fatalf("re-serialised head does not parse: %v\n%q", err, serializeRequest(h))
		}
		if got, want := requestView(again), requestView(h); !reflect.DeepEqual(got, want) {
			t.Fatalf("re-parse differs:\ngot  %v\nwant %v", got, want)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
		"HTTP/1.0 204\r\nConnection: keep-alive\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(strings.NewReader(string(data)), 64)
		head, err := readHead(br, nil, 4096, false)
		if err != nil {
			return
		}
		h := &ResponseHead{}
		if err := parseResponse(string(head), h); err != nil {
			return
		}
		if h.status < 100 || h.status > 599 || h.hasTE && h.hasLength {
			t.Fatalf("accepted status %d, TE %v, CL %v", h.status, h.hasTE, h.hasLength)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s %03d %s\r\n", h.proto, h.status, h.reason)
		for _, f := range h.fields {
			fmt.Fprintf(&b, "%s: %s\r\n", f.name, f.value)
		}
		b.WriteString("\r\n")
		again := &ResponseHead{}
		if err := parseResponse(b.String(), again); err != nil {
			t.Fatalf("re-serialised head does not parse: %v\n%q", err, b.String())
		}
		got := []any{again.status, again.reason, again.contentLength, again.chunked, again.hasTE, again.close, fmt.Sprint(again.fields)}
		want := []any{h.status, h.reason, h.contentLength, h.chunked, h.hasTE, h.close, fmt.Sprint(h.fields)}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("re-parse differs:\ngot  %v\nwant %v", got, want)
		}
	})
}

func FuzzChunked(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"1;a=b\r\nx\r\n0\r\nX-T: v\r\n\r\n",
		"fffffffffffffffff\r\n",
		"3\r\nhello\r\n0\r\n\r\n",
		"0\r\nX: a\r\n b\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		body, trailers, err := dechunk(string(data))
		if err != nil {
			return
		}
		// Re-framing (what the proxy sends on) decodes to the same body
		// and trailers.
		var out strings.Builder
		dst := bufio.NewWriter(&out)
		var c copier
		if _, err := c.copyChunked(dst, bufio.NewReaderSize(strings.NewReader(string(data)), 64), true, 4096, nil); err != nil {
			t.Fatalf("re-frame: %v", err)
		}
		_ = dst.Flush()
		body2, trailers2, err := dechunk(out.String())
		if err != nil {
			t.Fatalf("re-framed body does not decode: %v\n%q", err, out.String())
		}
		if body2 != body || !reflect.DeepEqual(trailers2, trailers) {
			t.Fatalf("re-framed body differs: got %q %v, want %q %v", body2, trailers2, body, trailers)
		}
	})
}
