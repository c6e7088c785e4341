package tcp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// connPair returns both ends of a loopback TCP connection.
func connPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestForwardHalfClose(t *testing.T) {
	tests := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"1 KiB", 1 << 10},
		{"10 MiB", 10 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, downProxy := connPair(t)
			upProxy, server := connPair(t)
			// server: read everything, then answer with its SHA-256 and close.
			go func() {
				h := sha256.New()
				io.Copy(h, server)
				server.Write(h.Sum(nil))
				server.Close()
			}()
			type result struct {
				from, to int64
				err      error
			}
			done := make(chan result, 1)
			go func() {
				f, to, err := Forward(context.Background(), downProxy, upProxy)
				done <- result{f, to, err}
			}()
			payload := make([]byte, tt.size)
			rand.Read(payload)
			go func() {
				client.Write(payload)
				client.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(client)
			if err != nil {
				t.Fatal(err)
			}
			want := sha256.Sum256(payload)
			if !bytes.Equal(got, want[:]) {
				t.Fatalf("answer %x, want %x", got, want)
			}
			r := <-done
			if r.err != nil || r.from != int64(tt.size) || r.to != sha256.Size {
				t.Fatalf("Forward = %d, %d, %v; want %d, %d, nil", r.from, r.to, r.err, tt.size, sha256.Size)
			}
		})
	}
}

func TestForwardStopsOnCancel(t *testing.T) {
	_, downProxy := connPair(t)
	upProxy, _ := connPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		Forward(ctx, downProxy, upProxy)
		close(done)
	}()
	cancel()
	<-done
}
