package inbound

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/proxy/metrics"
	"weft.dev/weft/internal/proxy/transport"
)

// startHoldingApp starts an application (HTTP/1.1 and h2c) that never
// answers: each request is reported on the returned channel and held
// until the test ends.
func startHoldingApp(t *testing.T) (string, <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 16)
	release := make(chan struct{})
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Proto
		<-release
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	t.Cleanup(func() { close(release) }) // runs first: the handlers return
	return ln.Addr().String(), got
}

// TestDrainTimeoutIsAHardBound: a request the application holds does not
// keep the drain past its deadline; the held client's connection is
// closed and Serve returns.
func TestDrainTimeoutIsAHardBound(t *testing.T) {
	tests := []struct {
		name  string
		proto config.Protocol
		// hold sends a request on a new connection to addr and returns
		// what the client got once the proxy ended it.
		hold func(t *testing.T, addr string) error
	}{
		{"http1", config.ProtocolHTTP1, holdRaw},
		{"opaque tcp", config.ProtocolTCP, holdRaw},
		{"http2", config.ProtocolHTTP2, holdH2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app, got := startHoldingApp(t)
			s := New(Config{App: app, Service: "api.default", Protocol: tt.proto, Metrics: metrics.New(),
				Transport: &transport.Preamble{}, DrainTimeout: 300 * time.Millisecond})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			served := make(chan error, 1)
			go func() { served <- s.Serve(ctx, ln) }()

			held := make(chan error, 1)
			go func() { held <- tt.hold(t, ln.Addr().String()) }()
			select {
			case <-got:
			case err := <-held:
				t.Fatalf("the client finished before the application got its request: %v", err)
			case <-time.After(10 * time.Second): // hang guard
				t.Fatal("the application never got the request")
			}

			cancel()
			select {
			case err := <-served:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(10 * time.Second): // hang guard
				t.Fatal("Serve did not return: the drain waits for a request the application holds")
			}
			select {
			case err := <-held:
				if err == nil {
					t.Error("the held client got a response, want its connection closed")
				}
			case <-time.After(10 * time.Second): // hang guard
				t.Fatal("the held client still waits after the drain")
			}
		})
	}
}

// holdRaw writes an HTTP/1.1 request on a plain connection and reads
// until the connection ends; it returns nil only if a response came.
func holdRaw(t *testing.T, addr string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute)) // hang guard
	if _, err := io.WriteString(c, "GET /held HTTP/1.1\r\nHost: api\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Error("hang guard: no answer and no close within a minute")
		}
		return fmt.Errorf("connection ended: %w", err)
	}
	resp.Body.Close()
	return nil
}

// holdH2 sends an h2c request; it returns nil only if a response came.
func holdH2(t *testing.T, addr string) error {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute} // hang guard
	resp, err := client.Get("http://" + addr + "/held")
	if err != nil {
		if strings.Contains(err.Error(), "Client.Timeout") {
			t.Error("hang guard: no answer and no close within a minute")
		}
		return err
	}
	resp.Body.Close()
	return nil
}
