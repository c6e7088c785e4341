package peer

import (
	"context"
	"crypto/tls"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"weft.dev/weft/bench/internal/echo"
	"weft.dev/weft/bench/internal/goproxy"
	"weft.dev/weft/bench/internal/pki"
)

func TestVerifyMutualTLS(t *testing.T) {
	files, err := pki.Generate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	app := httptest.NewServer(echo.Handler())
	defer app.Close()
	appAddr := app.Listener.Addr().String()

	// A TLS server that does not ask for a client certificate.
	srvTLS, err := files.ServerTLS()
	if err != nil {
		t.Fatal(err)
	}
	srvTLS.ClientAuth = tls.NoClientCert
	oneWay := httptest.NewUnstartedServer(echo.Handler())
	oneWay.TLS = srvTLS
	oneWay.StartTLS()
	defer oneWay.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mutual, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- goproxy.Run(ctx, goproxy.Config{Side: goproxy.Server, Listen: mutual, Upstream: appAddr, PKI: files})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("goproxy.Run: %v", err)
		}
	}()
	waitListening(t, mutual)

	tests := []struct {
		name    string
		addr    string
		wantErr bool
	}{
		{"mutual TLS", mutual, false},
		{"plain HTTP", appAddr, true},
		{"TLS without client certificates", oneWay.Listener.Addr().String(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyMutualTLS(context.Background(), tt.addr, files)
			if (err != nil) != tt.wantErr {
				t.Errorf("got %v, want error: %v", err, tt.wantErr)
			}
		})
	}
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
