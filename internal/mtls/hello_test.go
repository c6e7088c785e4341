package mtls_test

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"weft.dev/weft/internal/mtls"
)

// clientHello captures the first bytes a TLS client with cfg sends.
func clientHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := tls.Client(b, cfg)
		_ = c.Handshake() // fails when a closes
		b.Close()
	}()
	_ = a.SetReadDeadline(time.Now().Add(20 * time.Second)) // hang guard
	var got []byte
	buf := make([]byte, 16<<10)
	for !mtls.HelloRecordComplete(got) {
		n, err := a.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("read ClientHello: %v", err)
		}
	}
	a.Close()
	<-done
	return got
}

func TestIsMeshHello(t *testing.T) {
	good := newPKI(t, "good")
	mesh := func(alpn ...string) []byte {
		return clientHello(t, mtls.ClientConfig(static(good.leaf(t, api)), good.bundle(t), web, alpn))
	}
	app := func(alpn ...string) []byte {
		return clientHello(t, &tls.Config{ServerName: "web.example", NextProtos: alpn})
	}
	full := mesh(mtls.ALPNHTTP2)
	tests := []struct {
		name string
		b    []byte
		want bool
	}{
		{"mesh h1", mesh(mtls.ALPNHTTP1), true},
		{"mesh h2", full, true},
		{"mesh tcp", mesh(mtls.ALPNTCP), true},
		{"application TLS with h2", app("h2", "http/1.1"), false},
		{"application TLS without ALPN", app(), false},
		{"truncated mesh hello", full[:len(full)-1], false},
		{"HTTP request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false},
		{"old preamble", []byte("WEFT\x01\x01\x00\x00"), false},
		{"empty", nil, false},
		{"record header only", []byte{0x16, 0x03, 0x01, 0x00, 0x00}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := mtls.IsMeshHello(tc.b); got != tc.want {
				t.Errorf("IsMeshHello = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHelloRecordComplete(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want bool
	}{
		{"empty", nil, false},
		{"plaintext first byte", []byte("G"), true},
		{"partial header", []byte{0x16, 0x03}, false},
		{"header announcing 3 bytes, 2 present", []byte{0x16, 3, 1, 0, 3, 1, 2}, false},
		{"complete", []byte{0x16, 3, 1, 0, 3, 1, 2, 3}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := mtls.HelloRecordComplete(tc.b); got != tc.want {
				t.Errorf("HelloRecordComplete = %v, want %v", got, tc.want)
			}
		})
	}
}

func FuzzIsMeshHello(f *testing.F) {
	f.Add([]byte{0x16, 3, 1, 0, 3, 1, 2, 3})
	f.Add(clientHello(f, &tls.Config{NextProtos: []string{mtls.ALPNHTTP2}, InsecureSkipVerify: true}))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = mtls.IsMeshHello(b) // must not panic or hang
	})
}
