package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"weft.dev/weft/bench/internal/harness"
	"weft.dev/weft/bench/internal/report"
)

// The knee sweep's own flags; the others (-peers, -duration, -warmup, -reps, -c, -quiet-below,
// -quiet-wait, -retries, -quick, -v, -out) are shared with the rate run.
var (
	kneeOn    = flag.Bool("knee", false, "instead of the fixed rates, find each pair's knee: open-loop windows at rising rates (-knee-start, ×-knee-step, up to -knee-max) until one fails the knee rule")
	kneeStart = flag.Float64("knee-start", 2000, "with -knee: first rate (rps)")
	kneeStep  = flag.Float64("knee-step", 1.25, "with -knee: factor from one rate to the next (above 1)")
	kneeMax   = flag.Float64("knee-max", 32000, "with -knee: highest rate")
	kneeP99x  = flag.Float64("knee-p99x", 4, "with -knee: a window is past the knee when its p99 exceeds this many times the pair's first p99 of the sweep (and -knee-p99-floor)")
	kneeFloor = flag.Duration("knee-p99-floor", 5*time.Millisecond, "with -knee: a p99 up to this is always within the bound")
)

// checkKneeFlags rejects flags that do not combine with -knee, and knee flags without it.
func checkKneeFlags() error {
	var errs []string
	flag.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "rates", "throughput", "throughput-c":
			if *kneeOn {
				errs = append(errs, fmt.Sprintf("-%s does not apply to -knee (its rates are -knee-start, -knee-step and -knee-max; it has no closed loop)", f.Name))
			}
		case "protocols", "controlplane", "balance", "render":
			if *kneeOn {
				errs = append(errs, fmt.Sprintf("-%s and -knee are different scenarios: run them separately", f.Name))
			}
		case "knee-start", "knee-step", "knee-max", "knee-p99x", "knee-p99-floor":
			if !*kneeOn {
				errs = append(errs, fmt.Sprintf("-%s needs -knee", f.Name))
			}
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("%s", errs[0])
	}
	return nil
}

// kneeSettings are the knee flags, checked.
func kneeSettings() (harness.Knee, error) {
	k := harness.Knee{Start: *kneeStart, Step: *kneeStep, Max: *kneeMax,
		Rule: report.KneeRule{P99Factor: *kneeP99x, P99FloorMS: float64(*kneeFloor) / float64(time.Millisecond)}}
	if _, err := report.KneeRates(k.Start, k.Step, k.Max); err != nil {
		return k, fmt.Errorf("-knee-start, -knee-step, -knee-max: %w", err)
	}
	if err := k.Rule.Validate(); err != nil {
		return k, fmt.Errorf("-knee-p99x, -knee-p99-floor: %w", err)
	}
	return k, nil
}

// runKnee runs the knee sweep with cfg (the shared flags) and writes its tables to stdout and,
// with out set, <time>-knee.{json,md} into out. An interrupt ends the sweep and still writes
// the windows measured so far.
func runKnee(cfg harness.Config, quick bool, out string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	k, err := kneeSettings()
	if err != nil {
		return err
	}
	if quick {
		cfg, k = harness.QuickKnee(cfg, k)
	}
	rep, runErr := harness.RunKnee(ctx, cfg, k)
	if rep == nil || len(rep.Windows) == 0 {
		return runErr
	}
	if runErr != nil {
		fmt.Fprintf(os.Stderr, "weftbench: stopped early (%v); the figures below cover the windows measured so far\n", runErr)
	}
	if err := rep.WriteMarkdown(os.Stdout); err != nil {
		return err
	}
	if err := writeResults(out, rep.Started.UTC(), "knee", rep, func(w io.Writer) error { return rep.WriteMarkdown(w) }); err != nil {
		return err
	}
	return runErr
}

// renderKnee prints the tables of a stored knee sweep again.
func renderKnee(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("-render: %w", err)
	}
	defer f.Close()
	rep, err := report.ReadKneeJSON(f)
	if err != nil {
		return fmt.Errorf("-render %s: %w", path, err)
	}
	return rep.WriteMarkdown(os.Stdout)
}
