package pki

import (
	"crypto/tls"
	"testing"
)

func TestMutualTLSHandshake(t *testing.T) {
	f, err := Generate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := f.ServerTLS()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := f.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	noCert := cli.Clone()
	noCert.Certificates = nil
	wrongName := cli.Clone()
	wrongName.ServerName = "other.bench.local"
	tests := []struct {
		name    string
		client  *tls.Config
		wantErr bool
	}{
		{"client certificate", cli, false},
		{"no client certificate", noCert, true},
		{"wrong server name", wrongName, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			done := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					done <- err
					return
				}
				defer c.Close()
				err = c.(*tls.Conn).Handshake()
				if err == nil {
					_, err = c.Write([]byte("x")) // lets a TLS 1.3 client see a rejected certificate
				}
				done <- err
			}()
			c, err := tls.Dial("tcp", ln.Addr().String(), tt.client)
			if err == nil {
				st := c.ConnectionState()
				if st.Version != tls.VersionTLS13 || st.CurveID != tls.X25519 {
					t.Errorf("got version %x curve %v, want TLS 1.3 with X25519", st.Version, st.CurveID)
				}
				_, err = c.Read(make([]byte, 1))
				c.Close()
			}
			serr := <-done
			if got := err != nil || serr != nil; got != tt.wantErr {
				t.Errorf("got client error %v, server error %v; want failure: %v", err, serr, tt.wantErr)
			}
		})
	}
}
