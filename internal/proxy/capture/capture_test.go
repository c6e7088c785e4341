package capture

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type countingServer struct{ made *atomic.Int32 }

func (s countingServer) Serve(ctx context.Context, ln net.Listener) error {
	<-ctx.Done()
	return ln.Close()
}

// TestRefusesDirectConnections: a connection that iptables did not
// redirect (sent to the capture port itself) is closed without reaching a
// server; TestTransparentCapture in cmd/weft-proxy covers redirected ones.
func TestRefusesDirectConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var made atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, Config{
			Name: "test capture",
			Key:  func(dst netip.AddrPort) (string, error) { return dst.String(), nil },
			New:  func(string) Server { made.Add(1); return countingServer{&made} },
		})
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(time.Minute))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read %d bytes, %v; want the connection closed", n, err)
	}
	c.Close()
	if made.Load() != 0 {
		t.Errorf("a server was made for a connection that was not redirected")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
