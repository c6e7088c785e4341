// Command weftbench runs Weft's side-by-side benchmark: the same open-loop HTTP/1.1 load
// through an nginx pair, an HAProxy pair, Go peers and Weft, each pair on loopback with TLS 1.3
// between its two proxies, plus the direct baseline. See bench/README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"weft.dev/weft/bench/internal/harness"
	"weft.dev/weft/bench/internal/peer"
	"weft.dev/weft/bench/internal/protocols"
	"weft.dev/weft/bench/internal/role"
)

func main() {
	role.Main() // returns unless the harness re-executed this binary as its echo server or Go proxy
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "weftbench:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		out      = flag.String("out", "", "directory to write <time>.json and <time>.md into (e.g. bench/results); empty: stdout only")
		rates    = flag.String("rates", "500,1000,2000,4000", "comma-separated request rates (per second)")
		duration = flag.Duration("duration", 30*time.Second, "measured window per scenario")
		warmup   = flag.Duration("warmup", 5*time.Second, "discarded warm-up before each window")
		reps     = flag.Int("reps", 3, "repetitions, interleaved across peers")
		conns    = flag.Int("c", 16, "connections of the load generator")
		thru     = flag.Duration("throughput", 10*time.Second, "closed-loop window per pair and repetition, after the rates (0: none)")
		thruC    = flag.Int("throughput-c", 32, "connections of the closed-loop window")
		peers    = flag.String("peers", "all", "comma-separated peers to compare with the direct baseline")
		quick    = flag.Bool("quick", false, "smoke run: one 2s window at 1000 rps, one repetition unless -reps is given")
		quiet    = flag.Float64("quiet-below", 0.3, "before each window, wait until other processes use less than this many vCPU (0: do not wait)")
		quietMax = flag.Duration("quiet-wait", 2*time.Minute, "longest wait for -quiet-below before measuring anyway")
		retries  = flag.Int("retries", 2, "measure a window again, up to this many times, when other processes used more than -quiet-below during it")
		verbose  = flag.Bool("v", false, "log every window")
		render   = flag.String("render", "", "print the markdown table of a stored results JSON file instead of running")
		cp       = flag.String("controlplane", "", "instead of the proxy pairs, measure the controller: comma-separated SERVICESxPROXIES scenarios, e.g. 100x2000,1000x2000")
		changes  = flag.Int("changes", 20, "route changes per -controlplane scenario")
		cpLimit  = flag.String("cp-memlimit", "", "with -controlplane: GOMEMLIMIT of the controller process only (e.g. 150MiB)")
		cpProf   = flag.String("cp-profiles", "", "with -controlplane: directory to write the controller's heap and goroutine profiles into, one SERVICESxPROXIES subdirectory per scenario")
		protos   = flag.String("protocols", "", "instead of the HTTP/1.1 pairs, measure other protocols directly, through every -peers pair that carries them and through both Weft pairs: comma-separated http2, grpc-unary, grpc-stream, tcp-bulk, or all")
		bulk     = flag.Int64("bulk-mib", 256, "MiB sent (and echoed) through one connection by -protocols tcp-bulk")
		psHold   = flag.Duration("ps-hold", 0, "with -proxy-services: read the proxy's memory once more this long after the last step (e.g. 150s, past the Go runtime's 2-minute forced collection; under 5m, when the proxy lets idle destinations go)")
		svcs     = flag.Int("proxy-services", 0, "instead of the pairs, measure one weft-proxy's memory in a mesh of this many services, idle and after calling a tenth and then all of them through transparent capture (needs root, ip, iptables)")
		slow     = flag.Duration("balance", 0, "instead of the pairs, measure Weft's balancer against round robin over three endpoints, one this much slower (e.g. 20ms)")
	)
	flag.Parse()
	repsSet := false
	flag.Visit(func(f *flag.Flag) { repsSet = repsSet || f.Name == "reps" })
	if *reps < 1 {
		return fmt.Errorf("-reps: %d is not a positive number of repetitions", *reps)
	}
	if err := checkKneeFlags(); err != nil {
		return err
	}
	if *svcs != 0 {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runProxyServices(ctx, *svcs, *psHold, *verbose, *out)
	}
	if *slow > 0 {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		rate := 1000.0
		if *rates != "500,1000,2000,4000" {
			r, err := strconv.ParseFloat(strings.Split(*rates, ",")[0], 64)
			if err != nil || r <= 0 {
				return fmt.Errorf("-rates: %q is not a positive number", *rates)
			}
			rate = r
		}
		return runBalance(ctx, *slow, rate, *conns, *duration, *warmup, *quick, *verbose, *out)
	}
	if *protos != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		rate := 1000.0
		if *rates != "500,1000,2000,4000" {
			r, err := strconv.ParseFloat(strings.Split(*rates, ",")[0], 64)
			if err != nil || r <= 0 {
				return fmt.Errorf("-rates: %q is not a positive number", *rates)
			}
			rate = r
		}
		cfg := protocols.Config{Rate: rate, Conns: *conns, Duration: *duration, Warmup: *warmup, BulkBytes: *bulk << 20,
			Reps: *reps, QuietBelow: *quiet, QuietWait: *quietMax, Retries: *retries}
		if *quick {
			cfg = protocols.Quick(cfg)
			if repsSet {
				cfg.Reps = *reps
			}
		}
		return runProtocols(ctx, cfg, *protos, *peers, *verbose, *out)
	}
	if *cp != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runControlPlane(ctx, *cp, *changes, *cpLimit, *cpProf, *out)
	}
	if strings.HasSuffix(*render, "-knee.json") {
		return renderKnee(*render)
	}
	if *render != "" {
		return renderFile(os.Stdout, *render)
	}
	ps, err := peer.Select(*peers)
	if err != nil {
		return err
	}
	var rs []float64
	for _, f := range strings.Split(*rates, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || r <= 0 {
			return fmt.Errorf("-rates: %q is not a positive number", f)
		}
		rs = append(rs, r)
	}
	level := slog.LevelInfo
	if !*verbose {
		level = slog.LevelWarn
	}
	cfg := harness.Config{
		Peers: ps, Rates: rs, Duration: *duration, Warmup: *warmup, Reps: *reps, Connections: *conns,
		QuietBelow: *quiet, QuietWait: *quietMax, Retries: *retries, Throughput: *thru, ThroughputConns: *thruC,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}
	if *kneeOn {
		return runKnee(cfg, *quick, *out)
	}
	if *quick {
		cfg = harness.Quick(cfg)
		if repsSet {
			cfg.Reps = *reps
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, runErr := harness.Run(ctx, cfg)
	if rep == nil || len(rep.Scenarios) == 0 {
		return runErr
	}
	if runErr != nil {
		fmt.Fprintf(os.Stderr, "weftbench: stopped early (%v); the figures below cover the windows measured so far\n", runErr)
	}
	if err := rep.WriteMarkdown(os.Stdout); err != nil {
		return err
	}
	if *out == "" {
		return runErr
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("create -out directory: %w", err)
	}
	base := filepath.Join(*out, rep.Started.UTC().Format("2006-01-02T150405Z"))
	for ext, write := range map[string]func(*os.File) error{
		".json": func(f *os.File) error { return rep.WriteJSON(f) },
		".md":   func(f *os.File) error { return rep.WriteMarkdown(f) },
	} {
		f, err := os.Create(base + ext)
		if err != nil {
			return fmt.Errorf("write results: %w", err)
		}
		err = write(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", base+ext, err)
		}
	}
	fmt.Fprintf(os.Stderr, "results written to %s.{json,md}\n", base)
	return runErr
}
