package http1

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/proxy/proxyerr"
)

func TestDialErrors(t *testing.T) {
	tests := []struct {
		name   string
		dial   Dialer
		status int
		reason string
	}{
		{
			name: "timeout",
			dial: func(ctx context.Context) (net.Conn, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			},
			status: http.StatusGatewayTimeout, reason: "connect to 10.0.0.7:8080: timed out after 50ms",
		},
		{
			name:   "other",
			dial:   func(context.Context) (net.Conn, error) { return nil, errors.New("no route") },
			status: http.StatusBadGateway, reason: "connect to 10.0.0.7:8080: no route",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPool(PoolConfig{Addr: "10.0.0.7:8080", Dial: tt.dial, ConnectTimeout: 50 * time.Millisecond})
			defer p.Close()
			_, err := p.get(context.Background())
			var pe *proxyerr.Error
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, want a *proxyerr.Error", err)
			}
			if pe.Status != tt.status || pe.Reason != tt.reason {
				t.Errorf("got %d %q, want %d %q", pe.Status, pe.Reason, tt.status, tt.reason)
			}
		})
	}
}

func TestPoolIdleTimeoutAndClose(t *testing.T) {
	up := startUpstream(t, echoHandler())
	addr := up.Listener.Addr().String()
	p := NewPool(PoolConfig{Addr: addr, Dial: tcpDialer(addr), IdleTimeout: 50 * time.Millisecond, MaxIdle: 1})
	defer p.Close()
	a, err := p.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p.put(a)
	p.put(b) // beyond MaxIdle: closed
	if got := p.Idle(); got != 1 {
		t.Errorf("idle after two puts with MaxIdle 1: got %d, want 1", got)
	}
	deadline := time.Now().Add(hangGuard)
	for p.Idle() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("idle connection never expired")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c, err := p.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	p.put(c) // after Close: closed, not kept
	if got := p.Idle(); got != 0 {
		t.Errorf("idle after Close: got %d, want 0", got)
	}
	if _, err := p.get(context.Background()); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("get after Close: got %v, want a closed-pool error", err)
	}
}

func TestServerTimeouts(t *testing.T) {
	up := startUpstream(t, echoHandler())
	p := startProxy(t, up.Listener.Addr().String(), func(s *Server) {
		s.ReadHeaderTimeout = 100 * time.Millisecond
		s.IdleTimeout = 100 * time.Millisecond
	})
	t.Run("slow head", func(t *testing.T) {
		c := dialRaw(t, p.addr)
		c.send(t, "GET / HTTP/1.1\r\nHost: h\r\n")
		if _, err := c.br.ReadByte(); err != io.EOF {
			t.Errorf("got %v, want EOF after the head timeout", err)
		}
	})
	t.Run("idle", func(t *testing.T) {
		c := dialRaw(t, p.addr)
		c.send(t, "GET /echo HTTP/1.1\r\nHost: h\r\n\r\n")
		_, _ = io.Copy(io.Discard, c.response(t, "GET").Body)
		if _, err := c.br.ReadByte(); err != io.EOF {
			t.Errorf("got %v, want EOF after the idle timeout", err)
		}
	})
}
