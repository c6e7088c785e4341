package detect

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestClassify(t *testing.T) {
	clientHello := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc}
	tests := []struct {
		name     string
		in       []byte
		wantP    Protocol
		wantDone bool
	}{
		{"empty", nil, Opaque, false},
		{"get", []byte("GET / HTTP/1.1\r\n"), HTTP1, true},
		{"get prefix", []byte("GE"), Opaque, false},
		{"post", []byte("POST /x HTTP/1.1\r\n"), HTTP1, true},
		{"put starts like preface", []byte("PUT /x"), HTTP1, true},
		{"patch", []byte("PATCH /x"), HTTP1, true},
		{"preface", []byte(Preface), HTTP2, true},
		{"preface prefix", []byte("PRI * HTTP/2"), Opaque, false},
		{"PRI as a method", []byte("PRI * HTTP/1.1\r\n"), HTTP1, true},
		{"tls client hello", clientHello, TLS, true},
		{"tls prefix", clientHello[:3], Opaque, false},
		{"tls server hello", []byte{0x16, 0x03, 0x03, 0x00, 0x10, 0x02}, Opaque, true},
		{"tls bad version", []byte{0x16, 0x05}, Opaque, true},
		{"mysql-ish binary", []byte{0x4a, 0x00, 0x00, 0x00, 0x0a}, Opaque, true},
		{"leading space", []byte(" GET /"), Opaque, true},
		{"redis inline", []byte("PING\r\n"), Opaque, true},
		{"too long method", bytes.Repeat([]byte("A"), 40), Opaque, true},
		{"weft preamble", []byte("WEFT\x01\x01\x00\x00"), Opaque, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotP, gotDone := Classify(tt.in)
			if gotP != tt.wantP || gotDone != tt.wantDone {
				t.Errorf("Classify(%q) = %v, %v; want %v, %v", tt.in, gotP, gotDone, tt.wantP, tt.wantDone)
			}
		})
	}
}

func FuzzClassify(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add([]byte(Preface))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x10, 0x01})
	f.Add([]byte("WEFT\x01\x02\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, done := Classify(b)
		if done {
			// A decision never changes when more bytes arrive.
			p2, done2 := Classify(append(bytes.Clone(b), "more bytes"...))
			if p2 != p || !done2 {
				t.Fatalf("Classify(%q) = %v, done; with more bytes %v, %v", b, p, p2, done2)
			}
		}
		if p == HTTP2 && !bytes.HasPrefix(b, []byte(Preface)) {
			t.Fatalf("HTTP2 without preface: %q", b)
		}
	})
}

// pipe returns the two ends of a loopback TCP connection.
func pipe(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestDetectReplaysBytes(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   Protocol
	}{
		{"http1 in one write", []string{"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"}, HTTP1},
		{"http1 split", []string{"G", "ET / HTTP/1.1\r\n\r\n"}, HTTP1},
		{"h2 preface split", []string{"PRI * HTTP/2.0\r\n", "\r\nSM\r\n\r\nrest"}, HTTP2},
		{"opaque", []string{"\x00\x01binary"}, Opaque},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := pipe(t)
			all := ""
			go func() {
				for _, c := range tt.chunks {
					client.Write([]byte(c))
					time.Sleep(10 * time.Millisecond)
				}
				client.(*net.TCPConn).CloseWrite()
			}()
			for _, c := range tt.chunks {
				all += c
			}
			res, err := Detect(context.Background(), server, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if res.Protocol != tt.want {
				t.Errorf("got %v, want %v", res.Protocol, tt.want)
			}
			got, err := io.ReadAll(res.Conn)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != all {
				t.Errorf("replayed %q, want %q", got, all)
			}
		})
	}
}

func TestDetectSilentClientIsOpaque(t *testing.T) {
	client, server := pipe(t)
	res, err := Detect(context.Background(), server, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.Protocol != Opaque || !res.TimedOut {
		t.Fatalf("got %v timedOut=%v, want opaque after timeout", res.Protocol, res.TimedOut)
	}
	// The connection still works after the deadline passed.
	go client.Write([]byte("hello"))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(res.Conn, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != "hello" {
		t.Fatalf("got %q", buf)
	}
}

func TestDetectClosedBeforeAnyByte(t *testing.T) {
	client, server := pipe(t)
	client.Close()
	if _, err := Detect(context.Background(), server, 10*time.Second); err == nil {
		t.Fatal("got nil error for a connection closed before any byte")
	}
}

func TestConnReadFrom(t *testing.T) {
	client, server := pipe(t)
	pc := NewConn(server)
	go func() {
		pc.ReadFrom(bytes.NewReader([]byte("written through ReadFrom")))
		pc.CloseWrite()
	}()
	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "written through ReadFrom" {
		t.Fatalf("got %q", got)
	}
}
