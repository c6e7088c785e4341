package transport

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"weft.dev/weft/internal/proxy/detect"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		wantP   Proto
		wantOK  bool
		wantErr bool
	}{
		{"http1", []byte("WEFT\x01\x01\x00\x00GET"), HTTP1, true, false},
		{"http2", []byte("WEFT\x01\x02\x00\x00"), HTTP2, true, false},
		{"tcp", []byte("WEFT\x01\x04\x00\x00"), TCP, true, false},
		{"short", []byte("WEFT\x01"), None, false, false},
		{"http request", []byte("GET / HTTP/1.1\r\n"), None, false, false},
		{"bad version", []byte("WEFT\x02\x01\x00\x00"), None, false, true},
		{"bad proto", []byte("WEFT\x01\x03\x00\x00"), None, false, true},
		{"nonzero reserved", []byte("WEFT\x01\x01\x00\x01"), None, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotP, gotOK, err := Parse(tt.in)
			if gotP != tt.wantP || gotOK != tt.wantOK || (err != nil) != tt.wantErr {
				t.Errorf("Parse(%q) = %v, %v, %v; want %v, %v, err=%v", tt.in, gotP, gotOK, err, tt.wantP, tt.wantOK, tt.wantErr)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("WEFT\x01\x01\x00\x00"))
	f.Add([]byte("GET / HTTP/1.1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, ok, err := Parse(b)
		if ok && (err != nil || !p.valid()) {
			t.Fatalf("Parse(%q) = %v, %v, %v", b, p, ok, err)
		}
		if ok {
			pre := Encode(p)
			if !bytes.Equal(pre[:], b[:PreambleLen]) {
				t.Fatalf("Encode(%v) = %q, parsed from %q", p, pre, b)
			}
		}
	})
}

func TestDialAccept(t *testing.T) {
	tests := []struct {
		name      string
		meshed    bool
		proto     Proto
		payload   string
		wantProto Proto
	}{
		{"meshed http1", true, HTTP1, "GET / HTTP/1.1\r\n\r\n", HTTP1},
		{"meshed tcp", true, TCP, "\x00binary", TCP},
		{"meshed empty payload", true, HTTP2, "", HTTP2},
		{"plain http1", false, None, "GET / HTTP/1.1\r\n\r\n", None},
		{"plain looks like magic prefix", false, None, "WEF!xxxxxx", None},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			var tr Preamble
			errc := make(chan error, 1)
			go func() {
				var c net.Conn
				var err error
				if tt.meshed {
					c, err = tr.Dial(context.Background(), ln.Addr().String(), "", tt.proto)
				} else {
					c, err = net.Dial("tcp", ln.Addr().String())
				}
				if err == nil {
					_, err = c.Write([]byte(tt.payload))
					c.Close()
				}
				errc <- err
			}()
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			acc, err := tr.Accept(c, time.Now().Add(10*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			gotProto := acc.Proto
			got, err := io.ReadAll(acc.Conn)
			if err != nil {
				t.Fatal(err)
			}
			if gotProto != tt.wantProto || string(got) != tt.payload {
				t.Errorf("got %v %q, want %v %q", gotProto, got, tt.wantProto, tt.payload)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestAcceptSilentClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var tr Preamble
	acc, err := tr.Accept(c, time.Now().Add(20*time.Millisecond))
	if err != nil || acc.Proto != None || len(detect.NewConn(acc.Conn).Peeked()) != 0 {
		t.Fatalf("got %+v, %v; want None, no bytes, nil", acc, err)
	}
}
