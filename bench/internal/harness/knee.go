package harness

import (
	"context"
	"fmt"
	"time"

	"weft.dev/weft/bench/internal/report"
	"weft.dev/weft/bench/internal/schedule"
)

// Knee configures a rate sweep (RunKnee).
type Knee struct {
	// Start is the first rate (rps); 0 means 2,000.
	Start float64
	// Step multiplies the rate from one window to the next; 0 means 1.25.
	Step float64
	// Max is the highest rate of the sweep; 0 means 32,000.
	Max float64
	// Rule decides where each sweep stops (see report.KneeRule); the zero value means p99 at
	// most 4 times the first window's or 5 ms.
	Rule report.KneeRule
}

func (k *Knee) defaults() error {
	if k.Start == 0 {
		k.Start = 2000
	}
	if k.Step == 0 {
		k.Step = 1.25
	}
	if k.Max == 0 {
		k.Max = 32000
	}
	if k.Rule == (report.KneeRule{}) {
		k.Rule = report.KneeRule{P99Factor: 4, P99FloorMS: 5}
	}
	return k.Rule.Validate()
}

// QuickKnee turns cfg and k into a smoke run of the sweep: two 1 s steps, 1,000 and 1,250 rps,
// one repetition, no wait for a quiet machine.
func QuickKnee(cfg Config, k Knee) (Config, Knee) {
	cfg.Duration = time.Second
	cfg.Warmup = 500 * time.Millisecond
	cfg.Reps = 1
	cfg.QuietBelow = 0
	cfg.Throughput = 0
	cfg.Quick = true
	k.Start, k.Step, k.Max = 1000, 1.25, 1250
	return cfg, k
}

// RunKnee sweeps every pair (and the direct baseline) through increasing open-loop rates to
// find its knee. Each repetition climbs k's rates; at each rate it measures every pair still
// climbing, the baseline first and the others in an order rotated per repetition, each window
// preceded by a warm-up at the same rate and, with cfg.QuietBelow, a wait for a quiet machine
// (see Run). A pair stops climbing at its first window that k.Rule fails. cfg.Rates and
// cfg.Throughput are not used.
//
// When ctx ends during the sweep, RunKnee returns the windows measured so far, summarised,
// together with ctx's error.
func RunKnee(ctx context.Context, cfg Config, k Knee) (rep *report.KneeReport, err error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := k.defaults(); err != nil {
		return nil, fmt.Errorf("knee: %w", err)
	}
	rates, err := report.KneeRates(k.Start, k.Step, k.Max)
	if err != nil {
		return nil, fmt.Errorf("knee: %w", err)
	}
	log := cfg.Logger
	rep = &report.KneeReport{
		Started: time.Now(),
		Machine: machine(),
		Config: report.KneeConfig{Rates: rates, Start: k.Start, Step: k.Step, Max: k.Max, Rule: k.Rule,
			Duration: cfg.Duration, Warmup: cfg.Warmup, Reps: cfg.Reps, Connections: cfg.Connections,
			PayloadSize: cfg.PayloadSize, Quick: cfg.Quick},
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

	payload := payloadOf(cfg.PayloadSize)
	for r := 1; r <= cfg.Reps; r++ {
		climbing := schedule.Rotate(env.pairs, r)
		firstP99 := map[string]float64{}
		for _, rate := range rates {
			var next []running
			for _, run := range climbing {
				if err := ctx.Err(); err != nil {
					return rep, err
				}
				s, err := measureQuiet(ctx, cfg, run, payload, rate, r, env.echoPID)
				if err != nil {
					return rep, err
				}
				if err := ctx.Err(); err != nil {
					return rep, err // the window was cut short: not a measurement
				}
				rep.Windows = append(rep.Windows, s)
				if _, ok := firstP99[s.Peer]; !ok {
					firstP99[s.Peer] = s.P99
				}
				why := k.Rule.Fail(&s, firstP99[s.Peer])
				log.Info("knee window", "peer", s.Peer, "rate", rate, "rep", r, "achieved", fmt.Sprintf("%.0f", s.Achieved),
					"p50_ms", fmt.Sprintf("%.3f", s.P50), "p99_ms", fmt.Sprintf("%.3f", s.P99),
					"cpu_a", fmt.Sprintf("%.2f", s.CPUA), "cpu_b", fmt.Sprintf("%.2f", s.CPUB), "errors", s.Errors+s.BadBodies,
					"past_knee", why)
				if why == "" {
					next = append(next, run)
				}
			}
			if climbing = next; len(climbing) == 0 {
				break
			}
		}
	}
	return rep, nil
}
