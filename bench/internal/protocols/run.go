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
	"weft.dev/weft/bench/internal/schedule"
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
	// Reps is the number of repetitions; 0 means 1. Each runs every kind directly, then through
	// every pair in an order rotated per repetition (schedule.Rotate).
	Reps int
	// QuietBelow makes each window wait (at most QuietWait, 0 meaning 2 minutes) until the rest
	// of the machine uses less than this many vCPU, and measures a window again, up to Retries
	// times, when other processes used more during it; 0 turns both off (see schedule.Quiet).
	QuietBelow float64
	QuietWait  time.Duration
	Retries    int
	// Quick marks a smoke run.
	Quick bool
	// Self is the harness's executable; Logger receives progress (nil: discard).
	Self   string       `json:"-"`
	Logger *slog.Logger `json:"-"`
}

// Quick is a smoke configuration: one repetition of short windows, a small transfer, no wait
// for a quiet machine.
func Quick(cfg Config) Config {
	cfg.Rate, cfg.Conns, cfg.Duration, cfg.Warmup, cfg.BulkBytes = 200, 4, time.Second, 0, 8<<20
	cfg.Reps, cfg.QuietBelow, cfg.Quick = 1, 0, true
	return cfg
}

func (c Config) quiet() schedule.Quiet {
	return schedule.Quiet{Below: c.QuietBelow, Wait: c.QuietWait, Retries: c.Retries, Logger: c.Logger}
}

// Result is a run: how it was made, the measured windows in order, their summary, and the
// pairs not measured.
type Result struct {
	Started time.Time `json:"started"`
	Config  Config    `json:"config"`
	Windows []*Window `json:"windows"`
	// Rows summarise Windows per protocol and path (Summarise).
	Rows    []Row  `json:"rows,omitempty"`
	Skipped []Skip `json:"skipped,omitempty"`
	// Versions of what ran, by peer name.
	Versions map[string]string `json:"versions"`
}

// Skip is a pair not measured for one protocol.
type Skip struct {
	Protocol string `json:"protocol"`
	Peer     string `json:"peer"`
	// Why: SkipUnsupported (the peer cannot carry the protocol), SkipNotInstalled or
	// SkipFailed (it did not start, or failed its checks; not tried again in later
	// repetitions).
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

// path is one way a kind runs: directly (p nil) or through p's pair.
type path struct {
	name string
	p    peer.Peer
}

// Run measures every kind, cfg.Reps times: each repetition runs it directly, then through
// every selected peer pair that can carry it and through a Weft pair over mutual TLS and over
// plaintext, the pairs in an order rotated per repetition. A peer that cannot carry a kind, is
// not installed or fails to start is listed in Result.Skipped; Weft failing is an error.
//
// When ctx ends or Weft fails, Run returns the windows measured so far, summarised, with the
// error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if len(cfg.Kinds) == 0 {
		cfg.Kinds = []string{HTTP2, GRPCUnary, GRPCStream, TCPBulk}
	}
	for _, kind := range cfg.Kinds {
		if _, ok := routes[kind]; !ok {
			return nil, fmt.Errorf("unknown protocol scenario %q (want %s, %s, %s or %s)", kind, HTTP2, GRPCUnary, GRPCStream, TCPBulk)
		}
	}
	if cfg.Reps <= 0 {
		cfg.Reps = 1
	}
	if cfg.QuietBelow > 0 && cfg.QuietWait <= 0 {
		cfg.QuietWait = 2 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
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
	res := &Result{Started: time.Now().UTC(), Config: cfg, Versions: map[string]string{}}
	defer res.Summarise()
	res.Versions[WeftMTLS] = peer.Weft{}.Version(ctx)
	for _, p := range peers {
		if p.Check() == nil {
			res.Versions[p.Name()] = p.Version(ctx)
		}
	}
	skip := func(kind, name, why string, err error) {
		cfg.Logger.Warn("pair not run", "protocol", kind, "peer", name, "why", why, "reason", err)
		res.Skipped = append(res.Skipped, Skip{Protocol: kind, Peer: name, Why: why, Reason: err.Error()})
	}
	plans := map[string][]path{}
	for _, kind := range cfg.Kinds {
		proto := routes[kind].proto
		plan := []path{{name: Direct}}
		for _, p := range peers {
			name := peer.ProtocolName(p, proto)
			if err := p.Carries(proto); err != nil {
				skip(kind, name, SkipUnsupported, err)
				continue
			}
			if err := p.Check(); err != nil {
				skip(kind, name, SkipNotInstalled, err)
				continue
			}
			plan = append(plan, path{name, p})
		}
		for _, mtls := range []bool{true, false} {
			wp := peer.Weft{MTLS: mtls, Protocol: proto}
			plan = append(plan, path{wp.Name(), wp})
		}
		plans[kind] = plan
	}
	failed := map[[2]string]bool{}
	for rep := 1; rep <= cfg.Reps; rep++ {
		for _, kind := range cfg.Kinds {
			for _, pt := range schedule.Rotate(plans[kind], rep) {
				if failed[[2]string{kind, pt.name}] {
					continue
				}
				if err := ctx.Err(); err != nil {
					return res, err
				}
				w, err := measure(ctx, cfg, kind, pt, routes[kind], apps, dir, files, rep)
				if err == nil {
					err = ctx.Err() // a window cut short is not a measurement
				}
				if err != nil {
					_, weft := pt.p.(peer.Weft)
					switch {
					case ctx.Err() != nil:
						return res, err
					case pt.p == nil || weft:
						return res, fmt.Errorf("%s through %s, repetition %d: %w", kind, pt.name, rep, err)
					}
					skip(kind, pt.name, SkipFailed, fmt.Errorf("repetition %d: %w", rep, err))
					failed[[2]string{kind, pt.name}] = true
					continue
				}
				res.add(cfg, w, kind, pt.name)
			}
		}
	}
	return res, nil
}

func (r *Result) add(cfg Config, w *Window, kind, name string) {
	w.Peer = name
	cfg.Logger.Info("protocol window", "protocol", kind, "peer", name, "rep", w.Rep, "requests", w.Requests, "errors", w.Errors,
		"p50_ms", w.P50, "p99_ms", w.P99, "mb_per_s", w.MBps, "foreign_vcpu", fmt.Sprintf("%.2f", w.ForeignVCPU))
	r.Windows = append(r.Windows, w)
}

// measure starts pt's pair for kind (none for the direct path), checks it, and measures one
// window through it: again, up to cfg.Retries times, when other processes disturbed it.
func measure(ctx context.Context, cfg Config, kind string, pt path, rt route, apps *Apps, dir string, files pki.Files, rep int) (*Window, error) {
	addr := rt.app(apps)
	p, name := pt.p, pt.name
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
	q := cfg.quiet()
	w, attempts, err := schedule.Quietest(ctx, q,
		func() (*Window, error) { return window(ctx, cfg, q, kind, addr, pair, name, rep) },
		func(w *Window) float64 { return w.ForeignVCPU },
		"protocol", kind, "peer", name, "rep", rep)
	if err != nil {
		return nil, err
	}
	w.Rep, w.Attempts = rep, attempts
	if _, weft := p.(peer.Weft); weft {
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

// window waits for a quiet machine, warms the path up and measures one window of kind at addr,
// with the CPU of the pair's proxies (pair nil: direct) and of the rest of the machine.
func window(ctx context.Context, cfg Config, q schedule.Quiet, kind, addr string, pair *peer.Pair, name string, rep int) (*Window, error) {
	q.Await(ctx, "protocol", kind, "peer", name, "rep", rep)
	if cfg.Warmup > 0 && kind != TCPBulk {
		if _, err := Paced(ctx, kind, addr, cfg.Rate, cfg.Conns, cfg.Warmup); err != nil {
			return nil, err
		}
	}
	var before [2]procstat.Stat
	if pair != nil {
		var err error
		if before, err = readPair(pair); err != nil {
			return nil, err
		}
	}
	use0, err := schedule.Sample()
	if err != nil {
		return nil, err
	}
	var w *Window
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
	use1, err := schedule.Sample()
	if err != nil {
		return nil, err
	}
	w.ForeignVCPU = use1.Foreign(use0, 0)
	if pair != nil {
		after, err := readPair(pair)
		if err != nil {
			return nil, err
		}
		w.CPUA, w.CPUB = (after[0].CPU - before[0].CPU).Seconds(), (after[1].CPU - before[1].CPU).Seconds()
		w.RSSA, w.RSSB = after[0].RSS, after[1].RSS
	}
	return w, nil
}

// readPair reads the CPU and memory of the pair's proxies A and B.
func readPair(pair *peer.Pair) ([2]procstat.Stat, error) {
	var s [2]procstat.Stat
	for i, pr := range []*peer.Proc{pair.A, pair.B} {
		var err error
		if s[i], err = procstat.Read(pr.PID); err != nil {
			return s, fmt.Errorf("proxy %s exited? %w; log %s: %s", pr.Name, err, pr.Log, pr.Tail())
		}
	}
	return s, nil
}
