package inbound

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/proxy/conncount"
	"weft.dev/weft/internal/proxy/metrics"
	"weft.dev/weft/internal/proxy/metrics/metricstest"
	"weft.dev/weft/internal/proxy/transport"
)

// startAnsweringApp starts an application speaking HTTP/1.1 and h2c that
// answers every request "hello".
func startAnsweringApp(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// tcpMetrics returns the TCP metrics of reg for direction, summed over
// their other labels, by metric name.
func tcpMetrics(t *testing.T, reg *metrics.Registry, direction string) map[string]float64 {
	t.Helper()
	mfs, err := metricstest.Gather(reg)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			dir := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "direction" {
					dir = l.GetValue()
				}
			}
			if dir != direction {
				continue
			}
			out[mf.GetName()] += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return out
}

// TestEveryConnectionCounted: HTTP/1.1, HTTP/2 and opaque connections all
// count in the TCP metrics, with the bytes the client sent and received.
func TestEveryConnectionCounted(t *testing.T) {
	app := startAnsweringApp(t)
	tests := []struct {
		name  string
		proto config.Protocol
		h2    bool
	}{
		{"http1", config.ProtocolHTTP1, false},
		{"http1 detected", config.ProtocolDetect, false},
		{"http2", config.ProtocolHTTP2, true},
		{"http2 detected", config.ProtocolDetect, true},
		{"opaque", config.ProtocolTCP, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := metrics.New()
			s := New(Config{App: app, Service: "api.default", Protocol: tt.proto, Metrics: reg, Transport: &transport.Preamble{}})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- s.Serve(ctx, ln) }()
			defer func() {
				cancel()
				if err := <-served; err != nil {
					t.Errorf("Serve: %v", err)
				}
			}()

			// The client counts its own bytes: the proxy read what it
			// wrote and wrote what it read.
			// The transport may dial more than once (HTTP/2 races a
			// second dial at times): count every connection it made.
			var mu sync.Mutex // guards clients
			var clients []*conncount.Conn
			dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
				if err != nil {
					return nil, err
				}
				cc := conncount.New(c)
				mu.Lock()
				clients = append(clients, cc)
				mu.Unlock()
				return cc, nil
			}
			counts := func() (received, sent int64, n int) {
				mu.Lock()
				defer mu.Unlock()
				for _, c := range clients {
					r, w := c.Counts()
					received, sent = received+r, sent+w
				}
				return received, sent, len(clients)
			}
			var protos http.Protocols
			if tt.h2 {
				protos.SetUnencryptedHTTP2(true)
			} else {
				protos.SetHTTP1(true)
			}
			tr := &http.Transport{Protocols: &protos, DialContext: dial, DisableKeepAlives: !tt.h2}
			hc := &http.Client{Transport: tr, Timeout: time.Minute} // hang guard
			for range 3 {
				resp, err := hc.Get("http://api/")
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(body) != "hello" {
					t.Fatalf("got %q, want hello", body)
				}
				if !tt.h2 {
					break // one connection per request
				}
			}
			tr.CloseIdleConnections()

			_, _, dialed := counts()
			n := float64(dialed)
			var got map[string]float64
			var received, sent int64
			// The proxy counts a connection when it ends, and the
			// client's writer goroutine counts its last write late: wait
			// until every figure settles (hang guard: 10s). HTTP/2's
			// writer may also send its last frames after the connection's
			// bytes were taken, so its writes are only checked non-zero.
			settled := func() bool {
				w := got["weft_tcp_write_bytes_total"]
				return got["weft_tcp_open_total"] == n && got["weft_tcp_close_total"] == n && got["weft_tcp_open_connections"] == 0 &&
					got["weft_tcp_read_bytes_total"] == float64(sent) && received > 0 && w > 0 && (tt.h2 || w == float64(received))
			}
			for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
				got = tcpMetrics(t, reg, "inbound")
				received, sent, _ = counts()
				if settled() {
					break
				}
			}
			if !settled() {
				t.Errorf("got open_total %v, close_total %v, open_connections %v, read %v, written %v; want %v, %v, 0, the %d the client sent, the %d it received",
					got["weft_tcp_open_total"], got["weft_tcp_close_total"], got["weft_tcp_open_connections"],
					got["weft_tcp_read_bytes_total"], got["weft_tcp_write_bytes_total"], n, n, sent, received)
			}
		})
	}
}
