// Package harness runs the side-by-side benchmark: it generates the certificates, starts the
// echo application and every available proxy pair, then for each repetition, each rate and each
// pair (the direct baseline first, the pairs in an order rotated per repetition) drives an
// open-loop load through the pair and records latency, CPU and memory. RunKnee uses the same
// pairs, windows and measurements to sweep each pair through rising rates up to its knee.
//
// The command bench/cmd/weftbench and the quick test in bench/ import harness. Run is not
// meant to be called twice at once: the pairs would compete for the same two cores.
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"weft.dev/weft/bench/internal/load"
	"weft.dev/weft/bench/internal/peer"
	"weft.dev/weft/bench/internal/pki"
	"weft.dev/weft/bench/internal/procstat"
	"weft.dev/weft/bench/internal/report"
	"weft.dev/weft/bench/internal/role"
	"weft.dev/weft/bench/internal/schedule"
)

// Quick returns cfg turned into a smoke run: one short window at 1,000 rps, one repetition.
func Quick(cfg Config) Config {
	cfg.Rates = []float64{1000}
	cfg.Duration = 2 * time.Second
	cfg.Warmup = 500 * time.Millisecond
	cfg.Reps = 1
	cfg.QuietBelow = 0
	cfg.Throughput = time.Second
	cfg.Quick = true
	return cfg
}

// Config of a run.
type Config struct {
	// Peers to compare; the direct baseline is always added first.
	Peers []peer.Peer
	// Rates in requests per second; nil means 500, 1000, 2000, 4000.
	Rates []float64
	// Duration of a measured window; 0 means 30 s.
	Duration time.Duration
	// Warmup before each window, with the same load, discarded; 0 means 5 s.
	Warmup time.Duration
	// Reps is the number of repetitions; 0 means 3.
	Reps int
	// Connections of the load generator; 0 means 16.
	Connections int
	// PayloadSize is the request (and so the response) body; 0 means 1024 bytes.
	PayloadSize int
	// Throughput is a closed-loop window per pair and repetition after the rates; 0 means none.
	Throughput time.Duration
	// ThroughputConns is the number of connections of the closed loop; 0 means 32.
	ThroughputConns int
	// Self is the executable that runs the helper roles (see package role); "" means this one.
	Self string
	// QuietBelow makes each window wait (at most QuietWait) until the rest of the machine uses
	// less than this many vCPU, measured over one second; 0 means do not wait. On a shared
	// machine it keeps other people's builds out of the figures.
	QuietBelow float64
	// QuietWait bounds the wait for quiet; 0 means 2 minutes.
	QuietWait time.Duration
	// Retries is how many times a window disturbed by other processes (more than QuietBelow
	// vCPU during it) is measured again; the quietest attempt counts.
	Retries int
	// Quick marks the report as a smoke run.
	Quick bool
	// Logger receives progress; nil means discard.
	Logger *slog.Logger
}

func (c *Config) defaults() error {
	if len(c.Rates) == 0 {
		c.Rates = []float64{500, 1000, 2000, 4000}
	}
	if c.Duration <= 0 {
		c.Duration = 30 * time.Second
	}
	if c.Warmup <= 0 {
		c.Warmup = 5 * time.Second
	}
	if c.Reps <= 0 {
		c.Reps = 3
	}
	if c.Connections <= 0 {
		c.Connections = 16
	}
	if c.PayloadSize <= 0 {
		c.PayloadSize = 1024
	}
	if c.Self == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find own executable to run the echo server: %w", err)
		}
		c.Self = self
	}
	if c.ThroughputConns <= 0 {
		c.ThroughputConns = 32
	}
	if c.QuietWait <= 0 {
		c.QuietWait = 2 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

type running struct {
	peer peer.Peer
	pair *peer.Pair
}

// Run performs the benchmark and returns its report; peers that cannot run here are listed as
// skipped with the reason. It returns an error only when nothing can be measured.
//
// When ctx ends during the measurements, Run returns the windows measured so far, summarised,
// together with ctx's error.
func Run(ctx context.Context, cfg Config) (rep *report.Report, err error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	rep = &report.Report{
		Started: time.Now(),
		Machine: machine(),
		Config: report.Config{Rates: cfg.Rates, Duration: cfg.Duration, Warmup: cfg.Warmup, Reps: cfg.Reps,
			Connections: cfg.Connections, PayloadSize: cfg.PayloadSize, Quick: cfg.Quick,
			Throughput: cfg.Throughput, ThroughputConns: cfg.ThroughputConns},
	}
	env, err := start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := env.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	defer rep.Summarise()
	rep.Peers = env.peers
	pairs, echoPID := env.pairs, env.echoPID

	payload := payloadOf(cfg.PayloadSize)
	for r := 1; r <= cfg.Reps; r++ {
		for _, rate := range cfg.Rates {
			for _, run := range schedule.Rotate(pairs, r) {
				if err := ctx.Err(); err != nil {
					return rep, err
				}
				s, err := measureQuiet(ctx, cfg, run, payload, rate, r, echoPID)
				if err != nil {
					return rep, err
				}
				if err := ctx.Err(); err != nil {
					return rep, err // the window was cut short: not a measurement
				}
				log.Info("window", "peer", s.Peer, "rate", rate, "rep", r, "achieved", fmt.Sprintf("%.0f", s.Achieved),
					"p50_ms", fmt.Sprintf("%.3f", s.P50), "p99_ms", fmt.Sprintf("%.3f", s.P99),
					"cpu_a", fmt.Sprintf("%.2f", s.CPUA), "cpu_b", fmt.Sprintf("%.2f", s.CPUB), "errors", s.Errors+s.BadBodies)
				rep.Scenarios = append(rep.Scenarios, s)
			}
		}
		if cfg.Throughput <= 0 {
			continue
		}
		for _, run := range schedule.Rotate(pairs, r) {
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			s, err := measureQuiet(ctx, cfg, run, payload, 0, r, echoPID)
			if err != nil {
				return rep, err
			}
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			log.Info("closed-loop window", "peer", s.Peer, "rep", r, "rps", fmt.Sprintf("%.0f", s.Achieved),
				"cpu_a", fmt.Sprintf("%.2f", s.CPUA), "cpu_b", fmt.Sprintf("%.2f", s.CPUB), "errors", s.Errors+s.BadBodies)
			rep.Scenarios = append(rep.Scenarios, s)
		}
	}
	return rep, nil
}

// started is what every scenario of the HTTP/1.1 pairs shares: the certificates, the echo
// application and every pair that could start, each idle until measured.
type started struct {
	// peers lists every peer, the baseline first, with why it did not run when it did not.
	peers []report.Peer
	// pairs are the running ones, the baseline first.
	pairs   []running
	echoPID int
	// stop stops the pairs and the echo application and removes the temporary files.
	stop func() error
}

// start generates the run's certificates, starts the echo application, the direct baseline and
// every peer of cfg that can run here, and checks each pair's mutual TLS. A peer that is not
// installed, does not start or is misconfigured is listed as skipped; only a failure of the
// baseline is an error.
func start(ctx context.Context, cfg Config) (_ *started, err error) {
	log := cfg.Logger
	st := &started{}
	var cleanups []func() error // run in reverse order by stop
	st.stop = func() error {
		var errs []error
		for i := len(cleanups) - 1; i >= 0; i-- {
			errs = append(errs, cleanups[i]())
		}
		cleanups = nil
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			_ = st.stop()
		}
	}()
	dir, err := os.MkdirTemp("", "weftbench-")
	if err != nil {
		return nil, fmt.Errorf("create temporary directory: %w", err)
	}
	cleanups = append(cleanups, func() error { return os.RemoveAll(dir) })
	cleanups = append(cleanups, func() error { peer.RemoveBuilds(); return nil })
	if err := os.Mkdir(filepath.Join(dir, "pki"), 0o700); err != nil {
		return nil, fmt.Errorf("create pki directory: %w", err)
	}
	files, err := pki.Generate(filepath.Join(dir, "pki"))
	if err != nil {
		return nil, err
	}
	echoAddr, err := peer.FreePort()
	if err != nil {
		return nil, err
	}
	echoProc, err := peer.StartProc("echo", dir, cfg.Self, nil, []string{role.EnvRole + "=" + role.Echo, role.EnvListen + "=" + echoAddr})
	if err != nil {
		return nil, err
	}
	st.echoPID = echoProc.PID
	cleanups = append(cleanups, echoProc.Stop)
	cleanups = append(cleanups, func() error {
		for _, r := range st.pairs {
			if serr := r.pair.Stop(); serr != nil {
				log.Warn("stop pair", "peer", r.peer.Name(), "err", serr)
			}
		}
		return nil
	})

	all := append([]peer.Peer{peer.Direct{}}, cfg.Peers...)
	for _, p := range all {
		info := report.Peer{Name: p.Name(), Version: p.Version(ctx)}
		if cerr := p.Check(); cerr != nil {
			info.Skipped = cerr.Error()
			log.Warn("peer not run", "peer", p.Name(), "reason", cerr)
			st.peers = append(st.peers, info)
			continue
		}
		pdir := filepath.Join(dir, sanitize(p.Name()))
		if err := os.Mkdir(pdir, 0o700); err != nil {
			return nil, fmt.Errorf("create directory of %s: %w", p.Name(), err)
		}
		pair, serr := p.Start(ctx, peer.Env{Dir: pdir, PKI: files, Echo: echoAddr, Self: cfg.Self, Logger: log})
		if serr != nil {
			if p.Name() == report.Baseline {
				return nil, fmt.Errorf("start echo server: %w", serr)
			}
			info.Skipped = "did not start: " + serr.Error()
			log.Error("peer did not start", "peer", p.Name(), "err", serr)
			st.peers = append(st.peers, info)
			continue
		}
		if pair.A != nil && !pair.Plaintext {
			if verr := peer.VerifyMutualTLS(ctx, pair.BAddr, files); verr != nil {
				_ = pair.Stop()
				info.Skipped = "misconfigured: " + verr.Error()
				log.Error("peer misconfigured", "peer", p.Name(), "err", verr)
				st.peers = append(st.peers, info)
				continue
			}
		}
		st.pairs = append(st.pairs, running{peer: p, pair: pair})
		if pair.A != nil {
			if s, err := procstat.Read(pair.A.PID); err == nil {
				info.IdleRSSA = s.RSS
			}
			if s, err := procstat.Read(pair.B.PID); err == nil {
				info.IdleRSSB = s.RSS
			}
		}
		log.Info("peer started", "peer", p.Name(), "url", pair.URL)
		st.peers = append(st.peers, info)
	}
	return st, nil
}

// payloadOf is the request body of every window: size bytes of a repeating pattern.
func payloadOf(size int) []byte {
	return bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
}

// measureQuiet measures a window and, when other processes used more than cfg.QuietBelow
// vCPU during it, measures it again, up to cfg.Retries times; the quietest attempt counts.
func measureQuiet(ctx context.Context, cfg Config, run running, payload []byte, rate float64, rep, echoPID int) (report.Scenario, error) {
	s, attempts, err := schedule.Quietest(ctx, cfg.quiet(),
		func() (report.Scenario, error) { return measure(ctx, cfg, run, payload, rate, rep, echoPID) },
		func(s report.Scenario) float64 { return s.ForeignVCPU },
		"peer", run.peer.Name(), "rate", rate)
	s.Attempts = attempts
	return s, err
}

func (c Config) quiet() schedule.Quiet {
	return schedule.Quiet{Below: c.QuietBelow, Wait: c.QuietWait, Retries: c.Retries, Logger: c.Logger}
}

// measure runs one window at rate, or closed loop when rate is 0.
func measure(ctx context.Context, cfg Config, run running, payload []byte, rate float64, rep, echoPID int) (report.Scenario, error) {
	name := run.peer.Name()
	conns, window, warmup := cfg.Connections, cfg.Duration, cfg.Warmup
	if rate == 0 {
		conns, window, warmup = cfg.ThroughputConns, cfg.Throughput, min(cfg.Warmup, time.Second)
	}
	gen, err := load.New(load.Options{URL: run.pair.URL, Connections: conns, Payload: payload})
	if err != nil {
		return report.Scenario{}, err
	}
	defer gen.Close()
	cfg.quiet().Await(ctx, "peer", name, "rate", rate)
	run1 := func(d time.Duration) load.Result {
		if rate == 0 {
			return gen.RunClosed(ctx, d)
		}
		return gen.Run(ctx, rate, d)
	}
	run1(warmup)
	before, err := sample(run.pair, echoPID)
	if err != nil {
		return report.Scenario{}, fmt.Errorf("%s: %w", name, err)
	}
	res := run1(window)
	after, err := sample(run.pair, echoPID)
	if err != nil {
		return report.Scenario{}, fmt.Errorf("%s: %w", name, err)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return report.Scenario{
		Peer: name, Rate: rate, Rep: rep, Closed: rate == 0,
		Achieved: res.Achieved(), Window: res.Elapsed.Seconds(),
		Requests: res.Requests, Errors: res.Errors, BadBodies: res.BadBodies,
		BytesSent: res.BytesSent, BytesReceived: res.BytesReceived, Late: res.Late, FirstError: res.FirstError,
		P50: ms(res.Percentile(50)), P90: ms(res.Percentile(90)), P99: ms(res.Percentile(99)), P999: ms(res.Percentile(99.9)),
		CPUA: (after.a.CPU - before.a.CPU).Seconds(), CPUB: (after.b.CPU - before.b.CPU).Seconds(),
		CPUEcho: (after.echo.CPU - before.echo.CPU).Seconds(),
		// What the rest of the machine used, in vCPU: other users of a shared machine.
		ForeignVCPU: after.use.Foreign(before.use, res.Elapsed),
		RSSA:        after.a.RSS, RSSB: after.b.RSS, HWMA: after.a.HWM, HWMB: after.b.HWM,
	}, nil
}

type stats struct {
	a, b, echo procstat.Stat
	// use is the machine's busy CPU time and the harness's whole process tree's (load
	// generator, echo, every pair).
	use schedule.Usage
}

func sample(pair *peer.Pair, echoPID int) (stats, error) {
	var s stats
	var err error
	if s.use, err = schedule.Sample(); err != nil {
		return s, err
	}
	if s.echo, err = procstat.Read(echoPID); err != nil {
		return s, fmt.Errorf("echo server: %w", err)
	}
	if pair.A == nil {
		return s, nil
	}
	if s.a, err = procstat.Read(pair.A.PID); err != nil {
		return s, fmt.Errorf("proxy A exited? %w; log %s: %s", err, pair.A.Log, pair.A.Tail())
	}
	if s.b, err = procstat.Read(pair.B.PID); err != nil {
		return s, fmt.Errorf("proxy B exited? %w; log %s: %s", err, pair.B.Log, pair.B.Tail())
	}
	return s, nil
}

func sanitize(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, strings.ToLower(name))
}

func machine() report.Machine {
	m := report.Machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}
