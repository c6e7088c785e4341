package mtls_test

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"weft.dev/weft/internal/mtls"
	"weft.dev/weft/internal/proxy/detect"
)

// TestInboundRecipe runs the inbound side as a proxy wires it: peek at the
// first record, terminate mesh TLS (ALPN weft/*), and hand anything else,
// replayed byte for byte, to protocol detection.
func TestInboundRecipe(t *testing.T) {
	good := newPKI(t, "good")
	srvCfg := mtls.ServerConfig(static(good.leaf(t, web)), good.bundle(t))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	type seen struct{ kind, proto, peer, first string }
	results := make(chan seen, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second)) // hang guard
				pc := detect.NewConn(c)
				b, err := pc.Peek(time.Now().Add(20*time.Second), mtls.HelloRecordComplete)
				if err != nil {
					results <- seen{kind: "error: " + err.Error()}
					return
				}
				if !mtls.IsMeshHello(b) {
					first := make([]byte, 3)
					_, _ = io.ReadFull(pc, first)
					results <- seen{kind: "not mesh", first: string(first)}
					return
				}
				tc := tls.Server(pc, srvCfg)
				if err := tc.Handshake(); err != nil {
					results <- seen{kind: "error: " + err.Error()}
					return
				}
				st := tc.ConnectionState()
				peer, _ := mtls.PeerIdentity(st)
				first := make([]byte, 3)
				_, _ = io.ReadFull(tc, first)
				results <- seen{kind: "mesh", proto: st.NegotiatedProtocol, peer: peer, first: string(first)}
			}()
		}
	}()

	send := func(wrap func(net.Conn) net.Conn, done chan<- struct{}) {
		defer close(done)
		raw, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Error(err)
			return
		}
		defer raw.Close()
		_ = raw.SetDeadline(time.Now().Add(20 * time.Second))
		c := wrap(raw)
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	}
	tests := []struct {
		name string
		wrap func(net.Conn) net.Conn
		want seen
	}{
		{"mesh", func(c net.Conn) net.Conn {
			return tls.Client(c, mtls.ClientConfig(static(good.leaf(t, api)), good.bundle(t), web, []string{mtls.ALPNHTTP1}))
		}, seen{kind: "mesh", proto: mtls.ALPNHTTP1, peer: api, first: "GET"}},
		{"plaintext", func(c net.Conn) net.Conn { return c }, seen{kind: "not mesh", first: "GET"}},
		{"application TLS", func(c net.Conn) net.Conn {
			return tls.Client(c, &tls.Config{ServerName: "web.example", NextProtos: []string{"http/1.1"}})
		}, seen{kind: "not mesh", first: "\x16\x03\x01"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan struct{})
			go send(tc.wrap, done)
			defer func() { <-done }()
			select {
			case got := <-results:
				if got != tc.want {
					t.Errorf("inbound saw %+v, want %+v", got, tc.want)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("no result (hang guard)")
			}
		})
	}
}
