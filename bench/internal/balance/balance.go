// Package balance measures how a client-side proxy's load balancer copes with one slow endpoint:
// three echo endpoints, one of them answering Delay later, behind Weft's client proxy (its own
// balancer) and behind a round-robin Go reverse proxy (the baseline), under the same open-loop
// HTTP/1.1 load. The endpoints are unmeshed echo servers in the harness process; each proxy is a
// process of its own with GOMAXPROCS=1.
//
// Only the benchmark harness and its tests import balance. Run is safe to call concurrently
// with other work; it starts and stops everything it uses.
package balance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"weft.dev/weft/bench/internal/echo"
	"weft.dev/weft/bench/internal/load"
	"weft.dev/weft/bench/internal/peer"
	"weft.dev/weft/bench/internal/role"
)

// Config is one run.
type Config struct {
	// Delay added by the slow endpoint (one of three).
	Delay time.Duration
	// Rate (requests per second), Connections, Duration of the measured window; Warmup is
	// discarded before it.
	Rate        float64
	Connections int
	Duration    time.Duration
	Warmup      time.Duration
	// Self is the harness's executable; Logger receives progress (never nil).
	Self   string       `json:"-"`
	Logger *slog.Logger `json:"-"`
}

// Quick is a smoke configuration.
func Quick(cfg Config) Config {
	cfg.Delay, cfg.Rate, cfg.Connections, cfg.Duration, cfg.Warmup = 20*time.Millisecond, 200, 8, 2*time.Second, 0
	return cfg
}

// Names of the balancers.
const (
	Weft       = "weft (client proxy)"
	RoundRobin = "go round robin"
)

// Window is what one balancer measured.
type Window struct {
	Balancer string `json:"balancer"`
	// Requests sent, Errors, BadBodies (answers that differ from the request), bytes.
	Requests, Errors, BadBodies int64
	BytesSent, BytesReceived    int64
	FirstError                  string  `json:"first_error,omitempty"`
	Achieved                    float64 `json:"achieved_rps"`
	// Latency percentiles from the intended send time, ms.
	P50, P90, P99, P999 float64
	// Share of the requests each endpoint answered, the slow one first.
	Share [3]float64 `json:"share"`
}

// Run measures both balancers.
func Run(ctx context.Context, cfg Config) ([]*Window, error) {
	var counts [3]atomic.Int64
	var addrs []string
	var srvs []*http.Server
	var wg sync.WaitGroup
	defer func() {
		for _, s := range srvs {
			_ = s.Close()
		}
		wg.Wait()
	}()
	for i := range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		h := echo.Handler()
		srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			counts[i].Add(1)
			if i == 0 {
				time.Sleep(cfg.Delay)
			}
			h.ServeHTTP(w, r)
		})}
		srvs = append(srvs, srv)
		addrs = append(addrs, ln.Addr().String())
		wg.Go(func() { _ = srv.Serve(ln) })
	}
	dir, err := os.MkdirTemp("", "weftbench-balance-")
	if err != nil {
		return nil, fmt.Errorf("create directory: %w", err)
	}
	defer os.RemoveAll(dir)
	env := peer.Env{Dir: dir, Self: cfg.Self, Logger: cfg.Logger}

	var out []*Window
	for _, name := range []string{Weft, RoundRobin} {
		var url string
		var stop func() error
		switch name {
		case Weft:
			pair, err := peer.Weft{Endpoints: addrs}.Start(ctx, env)
			if err != nil {
				return out, fmt.Errorf("%s: %w", name, err)
			}
			url, stop = "http://"+pair.URL+"/", pair.Stop
		case RoundRobin:
			listen, err := peer.FreePort()
			if err != nil {
				return out, err
			}
			p, err := peer.StartProc("round-robin", dir, cfg.Self, nil, []string{
				"GOMAXPROCS=1", role.EnvRole + "=" + role.GoRoundRobin, role.EnvListen + "=" + listen,
				role.EnvUpstream + "=" + strings.Join(addrs, ","),
			})
			if err != nil {
				return out, err
			}
			url, stop = "http://"+listen+"/", p.Stop
			if err := peer.WaitReady(ctx, url, p); err != nil {
				_ = stop()
				return out, err
			}
		}
		w, err := measure(ctx, cfg, url, &counts)
		_ = stop()
		if err != nil {
			return out, fmt.Errorf("%s: %w", name, err)
		}
		w.Balancer = name
		cfg.Logger.Info("balancer window", "balancer", name, "p50_ms", w.P50, "p99_ms", w.P99, "errors", w.Errors, "share", w.Share)
		out = append(out, w)
	}
	return out, nil
}

func measure(ctx context.Context, cfg Config, url string, counts *[3]atomic.Int64) (*Window, error) {
	payload := bytes.Repeat([]byte("b"), 1024)
	// A ready proxy may still be learning its endpoints: wait for one good answer.
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Post(url, "application/octet-stream", bytes.NewReader(payload))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no good answer through %s in 20s: %w", url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	g, err := load.New(load.Options{URL: url, Connections: cfg.Connections, Payload: payload})
	if err != nil {
		return nil, err
	}
	defer g.Close()
	if cfg.Warmup > 0 {
		g.Run(ctx, cfg.Rate, cfg.Warmup)
	}
	var before [3]int64
	for i := range counts {
		before[i] = counts[i].Load()
	}
	r := g.Run(ctx, cfg.Rate, cfg.Duration)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	w := &Window{Requests: r.Requests, Errors: r.Errors, BadBodies: r.BadBodies, BytesSent: r.BytesSent,
		BytesReceived: r.BytesReceived, FirstError: r.FirstError, Achieved: r.Achieved(),
		P50: ms(r.Percentile(50)), P90: ms(r.Percentile(90)), P99: ms(r.Percentile(99)), P999: ms(r.Percentile(99.9))}
	var total int64
	var got [3]int64
	for i := range counts {
		got[i] = counts[i].Load() - before[i]
		total += got[i]
	}
	for i := range got {
		if total > 0 {
			w.Share[i] = float64(got[i]) / float64(total)
		}
	}
	return w, nil
}
