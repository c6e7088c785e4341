package inbound

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/proxy/metrics"
	"weft.dev/weft/internal/proxy/metrics/metricstest"
	"weft.dev/weft/internal/proxy/proxyerr"
	"weft.dev/weft/internal/proxy/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// peerTransport is a test transport whose client announces its identity
// in a first line "peer=<id>\n"; Accept trusts it. It stands in for
// mutual TLS, which proves the same identity.
type peerTransport struct{}

func (peerTransport) Dial(context.Context, string, string, transport.Proto) (net.Conn, error) {
	return nil, errors.New("not used")
}

func (peerTransport) Accept(c net.Conn, deadline time.Time) (transport.Accepted, error) {
	_ = c.SetReadDeadline(deadline)
	var line []byte
	b := make([]byte, 1)
	for {
		if _, err := c.Read(b); err != nil {
			return transport.Accepted{}, err
		}
		if b[0] == '\n' {
			break
		}
		line = append(line, b[0])
	}
	_ = c.SetReadDeadline(time.Time{})
	return transport.Accepted{Proto: transport.HTTP1, Conn: c, Peer: strings.TrimPrefix(string(line), "peer=")}, nil
}

// clientAs returns an HTTP client whose connections announce peer.
func clientAs(peer string) (*http.Client, func()) {
	tr := &http.Transport{MaxIdleConnsPerHost: 8, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if _, err := io.WriteString(c, "peer="+peer+"\n"); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}}
	return &http.Client{Transport: tr, Timeout: time.Minute}, tr.CloseIdleConnections
}

func startApp(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.Add(1) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), &n
}

func startInbound(t *testing.T, app string, rl *meshv1.RateLimit) (string, *metrics.Registry) {
	t.Helper()
	reg := metrics.New()
	s := New(Config{App: app, Service: "api.default", Transport: peerTransport{}, Metrics: reg,
		RateLimit: func() *meshv1.RateLimit { return rl }})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), reg
}

type tally struct {
	allowed, limited int
	retryAfter       string
	reason           string
}

// burst sends requests from workers clients announcing peer, until
// enough were allowed (or n were sent, a hang guard), and counts the
// answers.
func burst(t *testing.T, addr, peer string, n, workers, enough int) tally {
	t.Helper()
	client, done := clientAs(peer)
	defer done()
	var mu sync.Mutex
	var out tally
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				mu.Lock()
				stop := out.allowed >= enough
				mu.Unlock()
				if stop {
					return
				}
				resp, err := client.Get("http://" + addr + "/")
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				switch resp.StatusCode {
				case 200:
					out.allowed++
				case 429:
					out.limited++
					out.retryAfter = resp.Header.Get("Retry-After")
					out.reason = resp.Header.Get(proxyerr.Header)
				default:
					t.Errorf("got %d, want 200 or 429", resp.StatusCode)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

func TestRateLimitHoldsItsRate(t *testing.T) {
	const (
		n       = 200_000 // a hang guard: the run stops once refills were seen
		rate    = 100.0
		bucket  = 20
		vip     = "spiffe://cluster.local/ns/default/sa/batch"
		vipRate = 400.0
	)
	app, served := startApp(t)
	addr, reg := startInbound(t, app, &meshv1.RateLimit{
		Name: "RateLimit/default/api-limit", RequestsPerSecond: rate, Burst: bucket,
		Overrides: []*meshv1.RateLimitOverride{{Identities: []string{vip}, RequestsPerSecond: vipRate, Burst: bucket}},
	})
	tests := []struct {
		name string
		peer string
		rate float64
	}{
		{"every client shares the default bucket", "spiffe://cluster.local/ns/default/sa/web", rate},
		{"an override has its own bucket and rate", vip, vipRate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			// Run until the bucket refilled 30 times over its burst: the
			// run then spans at least 30/rate seconds.
			got := burst(t, addr, tt.peer, n, 4, bucket+30)
			elapsed := time.Since(start)
			bound := tt.rate*elapsed.Seconds() + bucket
			t.Logf("%d allowed, %d limited in %s (at most %.0f allowed)", got.allowed, got.limited, elapsed, bound)
			if float64(got.allowed) > bound {
				t.Errorf("%d requests allowed in %s, want at most rate×elapsed+burst = %.0f", got.allowed, elapsed, bound)
			}
			if got.allowed < bucket+30 {
				t.Errorf("%d requests allowed, want the burst %d and 30 refills", got.allowed, bucket)
			}
			if bound < n && (got.limited == 0 || got.retryAfter == "" || !strings.HasPrefix(got.reason, "rate limited by RateLimit/default/api-limit")) {
				t.Errorf("limited %d, Retry-After %q, reason %q: want 429s with Retry-After and the policy named", got.limited, got.retryAfter, got.reason)
			}
		})
	}
	if got, want := served.Load(), int64(0); got == want {
		t.Error("the application received nothing")
	}
	mfs, _ := metricstest.Gather(reg)
	limited := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "weft_rate_limited_total" {
			for _, m := range mf.GetMetric() {
				limited += m.GetCounter().GetValue()
			}
		}
	}
	if limited == 0 {
		t.Error("weft_rate_limited_total = 0")
	}
}
