package upstream

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"

	"weft.dev/weft/internal/proxy/balance"
	"weft.dev/weft/internal/proxy/transport"
)

func TestAcquireRemove(t *testing.T) {
	u := New("127.0.0.1:1", "", false, nil, nil)
	for range 2 {
		if !u.Acquire() {
			t.Fatal("Acquire failed on a live upstream")
		}
	}
	u.Remove()
	if u.Acquire() {
		t.Fatal("Acquire succeeded after Remove")
	}
	u.Release()
	if got := u.users.Load(); got != removedBit|1 {
		t.Fatalf("users = %x, want one exchange left", got)
	}
	u.Release()
	if got := u.users.Load(); got != removedBit {
		t.Fatalf("users = %x, want none left", got)
	}
}

func TestDialReportsConnectOutcomes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	refused := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}()
	b := balance.New(balance.Config{FailureThreshold: 2})
	tests := []struct {
		name        string
		addr        string
		meshed      bool
		wantErr     bool
		wantEjected bool
	}{
		{"plain ok", ln.Addr().String(), false, false, false},
		{"meshed ok", ln.Addr().String(), true, false, false},
		{"refused twice ejects", refused, false, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := b.Endpoint(tt.addr)
			u := New(tt.addr, "", tt.meshed, &transport.Preamble{}, ep)
			for range 2 {
				c, err := u.Dial(context.Background(), transport.HTTP1)
				if (err != nil) != tt.wantErr {
					t.Fatalf("Dial: %v", err)
				}
				if err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
					t.Fatalf("Dial error %v does not wrap ECONNREFUSED", err)
				}
				if c != nil {
					c.Close()
				}
			}
			if got := ep.Ejected(); got != tt.wantEjected {
				t.Fatalf("ejected = %v, want %v", got, tt.wantEjected)
			}
		})
	}
}
