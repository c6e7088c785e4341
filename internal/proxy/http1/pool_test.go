package http1

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
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

// TestPoolIdleConnHoldsNoBuffers checks that a connection handed back to
// the pool gives its buffers back, and gets them again, on the same
// connection, with the next exchange.
func TestPoolIdleConnHoldsNoBuffers(t *testing.T) {
	up := startUpstream(t, echoHandler())
	addr := up.Listener.Addr().String()
	p := NewPool(PoolConfig{Addr: addr, Dial: tcpDialer(addr)})
	defer p.Close()
	exchange := func(uc *upstreamConn, body string) {
		t.Helper()
		if _, err := io.WriteString(uc.bw, "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body); err != nil {
			t.Fatal(err)
		}
		if err := uc.bw.Flush(); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(uc.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.Header.Get("X-Req-Len") != strconv.Itoa(len(body)) {
			t.Fatalf("the upstream saw a body of %s bytes (%v), want %d", resp.Header.Get("X-Req-Len"), err, len(body))
		}
	}
	uc, err := p.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	exchange(uc, "one")
	conn := uc.conn
	p.put(uc)
	if uc.br != nil || uc.bw != nil {
		t.Error("an idle connection still holds its buffers")
	}
	uc, err = p.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if uc.conn != conn || !uc.reused {
		t.Fatal("the idle connection was not reused")
	}
	exchange(uc, "two")
	p.put(uc)
	if p.Idle() != 1 {
		t.Errorf("idle: got %d, want 1", p.Idle())
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
