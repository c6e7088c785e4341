package protocols

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"weft.dev/weft/bench/internal/peer"
	"weft.dev/weft/bench/internal/pki"
	"weft.dev/weft/bench/internal/procstat"
	"weft.dev/weft/internal/config"
)

// Direct is the name of the baseline without proxies.
const Direct = "direct"

// Names of the two Weft pairs.
const (
	WeftMTLS      = "weft (mTLS)"
	WeftPlaintext = "weft (plaintext pair)"
)

// Config is one run of the protocol scenarios.
type Config struct {
	// Kinds to run; empty means HTTP2, GRPCUnary, GRPCStream and TCPBulk.
	Kinds []string `json:"kinds,omitempty"`
	// Peers are the names of the peer pairs to run beside Weft (haproxy, nginx,
	// go-reverseproxy, caddy); nil means every one, an empty non-nil list none.
	Peers []string `json:"peers,omitempty"`
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

// Result is a run: the measured windows, in order, and the pairs not measured.
type Result struct {
	Windows []*Window `json:"windows"`
	Skipped []Skip    `json:"skipped,omitempty"`
	// Versions of what ran, by peer name.
	Versions map[string]string `json:"versions"`
}

// Skip is a pair not measured for one protocol.
type Skip struct {
	Protocol string `json:"protocol"`
	Peer     string `json:"peer"`
	// Why: SkipUnsupported (the peer cannot carry the protocol), SkipNotInstalled or
	// SkipFailed (it did not start, or failed its checks).
	Why    string `json:"why"`
	Reason string `json:"reason"`
}

// Reasons for a Skip.
const (
	SkipUnsupported  = "unsupported"
	SkipNotInstalled = "not installed"
	SkipFailed       = "failed"
)

// route is where one kind's traffic goes and how the pairs speak it.
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

// selectPeers returns the peer pairs named in names (nil: all).
func selectPeers(names []string) ([]peer.ProtoPeer, error) {
	all := peer.ProtoPeers()
	if names == nil {
		return all, nil
	}
	var out []peer.ProtoPeer
	for _, n := range names {
		found := false
		for _, p := range all {
			if strings.EqualFold(p.Name(), strings.TrimSpace(n)) {
				out = append(out, p)
				found = true
			}
		}
		if !found {
			var known []string
			for _, p := range all {
				known = append(known, p.Name())
			}
			return nil, fmt.Errorf("unknown peer %q for the protocol scenarios (known: %s)", n, strings.Join(known, ", "))
		}
	}
	return out, nil
}

// Run measures every kind directly, through every selected peer pair that can carry it, and
// through a Weft pair over mutual TLS and over plaintext. A peer that cannot carry a kind, is
// not installed or fails to start is listed in Result.Skipped; Weft failing is an error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if len(cfg.Kinds) == 0 {
		cfg.Kinds = []string{HTTP2, GRPCUnary, GRPCStream, TCPBulk}
	}
	for _, kind := range cfg.Kinds {
		if _, ok := routes[kind]; !ok {
			return nil, fmt.Errorf("unknown protocol scenario %q (want %s, %s, %s or %s)", kind, HTTP2, GRPCUnary, GRPCStream, TCPBulk)
		}
	}
	peers, err := selectPeers(cfg.Peers)
	if err != nil {
		return nil, err
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
	if err := os.Mkdir(filepath.Join(dir, "pki"), 0o700); err != nil {
		return nil, fmt.Errorf("create pki directory: %w", err)
	}
	files, err := pki.Generate(filepath.Join(dir, "pki"))
	if err != nil {
		return nil, err
	}
	res := &Result{Versions: map[string]string{}}
	res.Versions[WeftMTLS] = peer.Weft{}.Version(ctx)
	for _, p := range peers {
		if p.Check() == nil {
			res.Versions[p.Name()] = p.Version(ctx)
		}
	}
	for _, kind := range cfg.Kinds {
		rt := routes[kind]
		w, err := measure(ctx, cfg, kind, nil, rt, apps, dir, files)
		if err != nil {
			return res, fmt.Errorf("%s direct: %w", kind, err)
		}
		res.add(cfg, w, kind, Direct)
		for _, p := range peers {
			name := peer.ProtocolName(p, rt.proto)
			skip := func(why string, err error) {
				cfg.Logger.Warn("pair not run", "protocol", kind, "peer", name, "why", why, "reason", err)
				res.Skipped = append(res.Skipped, Skip{Protocol: kind, Peer: name, Why: why, Reason: err.Error()})
			}
			if err := p.Carries(rt.proto); err != nil {
				skip(SkipUnsupported, err)
				continue
			}
			if err := p.Check(); err != nil {
				skip(SkipNotInstalled, err)
				continue
			}
			w, err := measure(ctx, cfg, kind, p, rt, apps, dir, files)
			if err != nil {
				if ctx.Err() != nil {
					return res, err
				}
				skip(SkipFailed, err)
				continue
			}
			res.add(cfg, w, kind, name)
		}
		for _, mtls := range []bool{true, false} {
			wp := peer.Weft{MTLS: mtls, Protocol: rt.proto}
			w, err := measure(ctx, cfg, kind, wp, rt, apps, dir, files)
			if err != nil {
				return res, fmt.Errorf("%s through %s: %w", kind, wp.Name(), err)
			}
			res.add(cfg, w, kind, wp.Name())
		}
	}
	return res, nil
}

func (r *Result) add(cfg Config, w *Window, kind, name string) {
	w.Peer = name
	cfg.Logger.Info("protocol window", "protocol", kind, "peer", name, "requests", w.Requests, "errors", w.Errors,
		"p50_ms", w.P50, "p99_ms", w.P99, "mb_per_s", w.MBps)
	r.Windows = append(r.Windows, w)
}

// measure runs one window of kind directly (p nil) or through p's pair.
func measure(ctx context.Context, cfg Config, kind string, p peer.Peer, rt route, apps *Apps, dir string, files pki.Files) (*Window, error) {
	addr := rt.app(apps)
	var pair *peer.Pair
	if p != nil {
		pdir, err := os.MkdirTemp(dir, "pair-")
		if err != nil {
			return nil, err
		}
		env := peer.Env{Dir: pdir, PKI: files, Echo: addr, Self: cfg.Self, Logger: cfg.Logger}
		if wp, ok := p.(peer.Weft); ok {
			pair, err = wp.Start(ctx, env)
		} else if pp, ok := p.(peer.ProtoPeer); ok {
			pair, err = pp.StartProtocol(ctx, env, rt.proto)
		} else {
			err = fmt.Errorf("%s carries only HTTP/1.1", p.Name())
		}
		if err != nil {
			return nil, err
		}
		defer pair.Stop()
		addr = pair.URL
		if err := Probe(ctx, kind, addr); err != nil {
			return nil, fmt.Errorf("%w; proxy logs in %s: A: %s; B: %s", err, pdir, pair.A.Tail(), pair.B.Tail())
		}
		if _, weft := p.(peer.Weft); !weft {
			if err := VerifyMutualTLS(ctx, kind, pair.BAddr, files); err != nil {
				return nil, fmt.Errorf("misconfigured: %w", err)
			}
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
		if _, weft := p.(peer.Weft); weft {
			metric := "weft_requests_total"
			if kind == TCPBulk {
				metric = "weft_tcp_open_total"
			}
			if err := peer.CheckInboundTLS(ctx, pair.BAdmin, metric, !pair.Plaintext); err != nil {
				return nil, err
			}
		}
	}
	return w, nil
}
