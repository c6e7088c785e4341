package protocols

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"weft.dev/weft/bench/internal/peer"
	"weft.dev/weft/bench/internal/procstat"
	"weft.dev/weft/internal/config"
)

// Direct is the name of the baseline without proxies.
const Direct = "direct"

// Config is one run of the protocol scenarios.
type Config struct {
	// Kinds to run; empty means HTTP2, GRPCUnary, GRPCStream and TCPBulk.
	Kinds []string
	// Rate (requests per second), Conns and Duration of each paced window; Warmup is a
	// discarded window before it.
	Rate     float64
	Conns    int
	Duration time.Duration
	Warmup   time.Duration
	// BulkBytes sent (and echoed) through one connection by TCPBulk.
	BulkBytes int64
	// Self is the harness's executable; Logger receives progress (never nil).
	Self   string       `json:"-"`
	Logger *slog.Logger `json:"-"`
}

// Quick is a smoke configuration: short windows, a small transfer.
func Quick(cfg Config) Config {
	cfg.Rate, cfg.Conns, cfg.Duration, cfg.Warmup, cfg.BulkBytes = 200, 4, time.Second, 0, 8<<20
	return cfg
}

// route is where one kind's traffic goes and how the Weft pairs speak it.
type route struct {
	app   func(*Apps) string
	proto config.Protocol
}

var routes = map[string]route{
	HTTP2:      {func(a *Apps) string { return a.H2 }, config.ProtocolHTTP2},
	GRPCUnary:  {func(a *Apps) string { return a.GRPC }, config.ProtocolGRPC},
	GRPCStream: {func(a *Apps) string { return a.GRPC }, config.ProtocolGRPC},
	TCPBulk:    {func(a *Apps) string { return a.TCP }, config.ProtocolTCP},
}

// Run measures every kind directly and through a Weft pair over mutual TLS and over plaintext.
func Run(ctx context.Context, cfg Config) ([]*Window, error) {
	if len(cfg.Kinds) == 0 {
		cfg.Kinds = []string{HTTP2, GRPCUnary, GRPCStream, TCPBulk}
	}
	apps, err := StartApps()
	if err != nil {
		return nil, err
	}
	defer apps.Stop()
	dir, err := os.MkdirTemp("", "weftbench-proto-")
	if err != nil {
		return nil, fmt.Errorf("create directory: %w", err)
	}
	defer os.RemoveAll(dir)
	var out []*Window
	for _, kind := range cfg.Kinds {
		rt, ok := routes[kind]
		if !ok {
			return out, fmt.Errorf("unknown protocol scenario %q", kind)
		}
		for _, name := range []string{Direct, "weft (mTLS)", "weft (plaintext pair)"} {
			w, err := runOne(ctx, cfg, kind, name, rt, apps, dir)
			if err != nil {
				return out, fmt.Errorf("%s through %s: %w", kind, name, err)
			}
			w.Peer = name
			cfg.Logger.Info("protocol window", "protocol", kind, "peer", name, "requests", w.Requests, "errors", w.Errors,
				"p50_ms", w.P50, "p99_ms", w.P99, "mb_per_s", w.MBps)
			out = append(out, w)
		}
	}
	return out, nil
}

func runOne(ctx context.Context, cfg Config, kind, name string, rt route, apps *Apps, dir string) (*Window, error) {
	addr := rt.app(apps)
	var pair *peer.Pair
	if name != Direct {
		pdir, err := os.MkdirTemp(dir, "pair-")
		if err != nil {
			return nil, err
		}
		wp := peer.Weft{MTLS: name == "weft (mTLS)", Protocol: rt.proto}
		pair, err = wp.Start(ctx, peer.Env{Dir: pdir, Echo: addr, Self: cfg.Self, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		defer pair.Stop()
		addr = pair.URL
		if err := Probe(ctx, kind, addr); err != nil {
			return nil, fmt.Errorf("%w; proxy logs in %s", err, filepath.Dir(pair.A.Log))
		}
	}
	if cfg.Warmup > 0 && kind != TCPBulk {
		if _, err := Paced(ctx, kind, addr, cfg.Rate, cfg.Conns, cfg.Warmup); err != nil {
			return nil, err
		}
	}
	var before [2]procstat.Stat
	if pair != nil {
		before[0], _ = procstat.Read(pair.A.PID)
		before[1], _ = procstat.Read(pair.B.PID)
	}
	var w *Window
	var err error
	if kind == TCPBulk {
		w, err = Bulk(ctx, addr, cfg.BulkBytes)
		if w != nil && err != nil {
			w.Errors, w.FirstError, err = 1, err.Error(), nil
		}
	} else {
		w, err = Paced(ctx, kind, addr, cfg.Rate, cfg.Conns, cfg.Duration)
	}
	if err != nil {
		return nil, err
	}
	if pair != nil {
		a, _ := procstat.Read(pair.A.PID)
		b, _ := procstat.Read(pair.B.PID)
		w.CPUA, w.CPUB = (a.CPU - before[0].CPU).Seconds(), (b.CPU - before[1].CPU).Seconds()
		w.RSSA, w.RSSB = a.RSS, b.RSS
		metric := "weft_requests_total"
		if kind == TCPBulk {
			metric = "weft_tcp_open_total"
		}
		if err := peer.CheckInboundTLS(ctx, pair.BAdmin, metric, !pair.Plaintext); err != nil {
			return nil, err
		}
	}
	return w, nil
}
