// Package schedule decides when, and in which order, the benchmark's windows run on a shared
// machine: the order of the paths in each repetition (the baseline first, the others rotated
// so that no path always follows the same one), the wait for the rest of the machine to go
// quiet before a window, the CPU other processes used during it, and measuring a disturbed
// window again, keeping the quietest attempt.
//
// The HTTP/1.1 harness and the protocol scenarios import schedule. Its functions are safe to
// call concurrently, though windows measured at once would disturb each other.
package schedule

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"weft.dev/weft/bench/internal/procstat"
)

// Rotate returns paths with the first (the baseline) kept first and the others rotated left by
// rep-1: repetition 1 runs them in the given order, repetition 2 starts with the second one,
// and so on. It returns a new slice when it reorders.
func Rotate[T any](paths []T, rep int) []T {
	if len(paths) <= 2 {
		return paths
	}
	rest := paths[1:]
	k := ((rep-1)%len(rest) + len(rest)) % len(rest)
	out := make([]T, 0, len(paths))
	out = append(out, paths[0])
	out = append(out, rest[k:]...)
	return append(out, rest[:k]...)
}

// Quiet is how a window waits for a quiet machine and is measured again when it was not.
type Quiet struct {
	// Below is the CPU, in vCPU, other processes may use for the machine to count as quiet;
	// 0 turns the wait and the retries off.
	Below float64
	// Wait bounds the wait before a window; 0 means 2 minutes.
	Wait time.Duration
	// Retries is how many times a window during which other processes used Below or more is
	// measured again.
	Retries int
	// Logger receives the waits given up and the retries; nil means discard.
	Logger *slog.Logger
}

func (q Quiet) logger() *slog.Logger {
	if q.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return q.Logger
}

// Await waits until the rest of the machine uses under q.Below vCPU, at most q.Wait, and logs
// a warning with args when it measures anyway. It does nothing when q.Below is 0.
func (q Quiet) Await(ctx context.Context, args ...any) {
	if q.Below <= 0 {
		return
	}
	wait := q.Wait
	if wait <= 0 {
		wait = 2 * time.Minute
	}
	if err := WaitQuiet(ctx, q.Below, wait); err != nil && ctx.Err() == nil {
		q.logger().Warn("machine busy, measuring anyway", append(args, "err", err)...)
	}
}

// Quietest calls measure and, while the window it measured had other processes using q.Below
// vCPU or more (foreign tells how much), calls it again, up to q.Retries times. It returns the
// quietest window and how many were measured. It stops at the first error or when ctx ends.
func Quietest[T any](ctx context.Context, q Quiet, measure func() (T, error), foreign func(T) float64, args ...any) (best T, attempts int, err error) {
	for attempt := 0; ; attempt++ {
		w, err := measure()
		if err != nil {
			return w, attempt + 1, err
		}
		if attempt == 0 || foreign(w) < foreign(best) {
			best = w
		}
		if q.Below <= 0 || foreign(best) < q.Below || attempt >= q.Retries || ctx.Err() != nil {
			return best, attempt + 1, nil
		}
		q.logger().Info("window disturbed by other processes, measuring again",
			append(args, "foreign_vcpu", fmt.Sprintf("%.2f", foreign(w)))...)
	}
}

// Usage is the machine's busy CPU time and this process tree's at one moment.
type Usage struct {
	// Busy is what every CPU of the machine spent busy so far (procstat.SystemBusy).
	Busy time.Duration
	// Self is the CPU this process and its descendants (load generator, applications, pairs)
	// used so far.
	Self procstat.Stat
	at   time.Time
}

// Sample reads the machine's and this process tree's CPU time now.
func Sample() (Usage, error) {
	busy, err := procstat.SystemBusy()
	if err != nil {
		return Usage{}, err
	}
	self, err := procstat.Read(os.Getpid())
	if err != nil {
		return Usage{}, fmt.Errorf("harness: %w", err)
	}
	return Usage{Busy: busy, Self: self, at: time.Now()}, nil
}

// Foreign is the CPU, in vCPU, that processes outside this process tree used between before
// and u, over elapsed (the time between the samples when elapsed is 0).
func (u Usage) Foreign(before Usage, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		elapsed = u.at.Sub(before.at)
	}
	if elapsed <= 0 {
		return 0
	}
	return max(0, ((u.Busy-before.Busy)-(u.Self.CPU-before.Self.CPU)).Seconds()/elapsed.Seconds())
}

// WaitQuiet returns once the machine, less this process tree, used under limit vCPU over one
// second, or with an error after wait.
func WaitQuiet(ctx context.Context, limit float64, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		before, err := Sample()
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		after, err := Sample()
		if err != nil {
			return err
		}
		last := after.Foreign(before, 0)
		if last < limit {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("other processes still used %.2f vCPU after waiting %s for under %.2f", last, wait, limit)
		}
	}
}
