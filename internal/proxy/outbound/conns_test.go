package outbound

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/proxy/conncount"
	"weft.dev/weft/internal/proxy/metrics"
	"weft.dev/weft/internal/proxy/metrics/metricstest"
	"weft.dev/weft/internal/proxy/transport"
)

// startH2CBackend starts an endpoint speaking HTTP/1.1 and h2c; each
// request is reported on the returned channel, then handled by handle.
func startH2CBackend(t *testing.T, handle func(w http.ResponseWriter, r *http.Request)) (string, <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{}, 16)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- struct{}{}
		handle(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), got
}

// serveOutbound serves an outbound proxy for api.demo with snap applied.
// Stopping it (the returned func) starts its drain and returns what
// Serve returned, or fails after a hang guard.
func serveOutbound(t *testing.T, snap *meshv1.DestinationSnapshot, drain time.Duration) (string, *metrics.Registry, func() error) {
	t.Helper()
	reg := metrics.New()
	s := New(Config{Authority: "api", Transport: &transport.Preamble{}, Namespace: "demo", Discovery: idleDiscovery(t), Metrics: reg, DrainTimeout: drain})
	s.apply(snap)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	stopped := false
	stop := func() error {
		cancel()
		if stopped {
			return nil
		}
		stopped = true
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second): // hang guard
			return errors.New("Serve did not return")
		}
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), reg, stop
}

// tcpMetrics returns the outbound TCP metrics of reg summed over their
// other labels, by metric name.
func tcpMetrics(t *testing.T, reg *metrics.Registry) map[string]float64 {
	t.Helper()
	mfs, err := metricstest.Gather(reg)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "direction" && l.GetValue() == "outbound" {
					out[mf.GetName()] += m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

// TestEveryConnectionCounted: the workload's HTTP/1.1 and HTTP/2
// connections count in the destination's TCP metrics, with their bytes.
func TestEveryConnectionCounted(t *testing.T) {
	app, _ := startH2CBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			addr, reg, _ := serveOutbound(t, snapshot(1, &meshv1.Endpoint{Address: app}), 0)
			var client *conncount.Conn
			var protos http.Protocols
			protos.SetHTTP1(!h2)
			protos.SetUnencryptedHTTP2(h2)
			tr := &http.Transport{Protocols: &protos, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
				if err != nil {
					return nil, err
				}
				client = conncount.New(c)
				return client, nil
			}}
			hc := &http.Client{Transport: tr, Timeout: time.Minute} // hang guard
			for range 3 {
				resp, err := hc.Get("http://api.demo/")
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(body) != "hello" {
					t.Fatalf("got %q, want hello", body)
				}
			}
			tr.CloseIdleConnections()

			var got map[string]float64
			received, sent := client.Counts()
			// The proxy counts a connection when it ends, and the
			// client's writer goroutine counts its last write late: wait
			// until every figure settles (hang guard: 10s). HTTP/2's
			// writer may also send its last frames after the connection's
			// bytes were taken, so its writes are only checked non-zero.
			settled := func() bool {
				w := got["weft_tcp_write_bytes_total"]
				return got["weft_tcp_open_total"] == 1 && got["weft_tcp_close_total"] == 1 && got["weft_tcp_open_connections"] == 0 &&
					got["weft_tcp_read_bytes_total"] == float64(sent) && received > 0 && w > 0 && (h2 || w == float64(received))
			}
			for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
				got = tcpMetrics(t, reg)
				received, sent = client.Counts()
				if settled() {
					break
				}
			}
			if !settled() {
				t.Errorf("got open_total %v, close_total %v, open_connections %v, read %v, written %v; want 1, 1, 0, the %d the client sent, the %d it received",
					got["weft_tcp_open_total"], got["weft_tcp_close_total"], got["weft_tcp_open_connections"],
					got["weft_tcp_read_bytes_total"], got["weft_tcp_write_bytes_total"], sent, received)
			}
		})
	}
}

// TestDrainTimeoutIsAHardBound: an endpoint that holds a request does not
// keep the outbound drain past its deadline.
func TestDrainTimeoutIsAHardBound(t *testing.T) {
	release := make(chan struct{})
	app, got := startH2CBackend(t, func(w http.ResponseWriter, r *http.Request) { <-release })
	t.Cleanup(func() { close(release) }) // before the backend closes
	addr, _, stop := serveOutbound(t, snapshot(1, &meshv1.Endpoint{Address: app}), 300*time.Millisecond)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute)) // hang guard
	if _, err := io.WriteString(c, "GET /held HTTP/1.1\r\nHost: api.demo\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(10 * time.Second): // hang guard
		t.Fatal("the endpoint never got the request")
	}
	if err := stop(); err != nil {
		t.Fatalf("Serve: %v (the drain waits for a request the endpoint holds)", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("the held client got %s, want its connection closed", resp.Status)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the held client still waits after the drain")
	}
}
