package protocols

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"weft.dev/weft/bench/internal/report"
)

// Row is one path of one protocol summarised over the repetitions: every figure is the median
// with min and max of its per-repetition values (report.RangeOf). Latency is added over the
// direct window of the same repetition; the Weft ratios are the median of the per-repetition
// ratios of Weft's (mTLS pair's) figure to this path's, a repetition counting only when both
// figures are above zero (and, for added p99, the path's above 0.05 ms).
type Row struct {
	Protocol string  `json:"protocol"`
	Peer     string  `json:"peer"`
	Rate     float64 `json:"rate,omitempty"`
	// Windows is how many repetitions measured this path; Errors sums errors and bad answers.
	Windows  int          `json:"windows"`
	Errors   int64        `json:"errors"`
	Achieved report.Range `json:"achieved_rps"`
	// Latency, ms: absolute, and added over direct (none for direct itself).
	P50      report.Range `json:"p50_ms"`
	P90      report.Range `json:"p90_ms"`
	P99      report.Range `json:"p99_ms"`
	P999     report.Range `json:"p999_ms"`
	AddedP50 report.Range `json:"added_p50_ms"`
	AddedP90 report.Range `json:"added_p90_ms"`
	AddedP99 report.Range `json:"added_p99_ms"`
	// AddedP999 is the added p99.9: at 1,000 rps a 10 s window has ten samples above it.
	AddedP999 report.Range `json:"added_p999_ms"`
	// CPU per proxy per 1,000 achieved rps, in vCPU: the mean of A and B, and each.
	CPUPer1k  report.Range `json:"vcpu_per_proxy_per_1k_rps"`
	CPUPer1kA report.Range `json:"vcpu_a_per_1k_rps"`
	CPUPer1kB report.Range `json:"vcpu_b_per_1k_rps"`
	// VmRSS of A and B at the end of the window, MiB.
	RSSA report.Range `json:"rss_a_mib"`
	RSSB report.Range `json:"rss_b_mib"`
	// Weft ÷ this path: CPU per 1,000 rps and added p99.
	WeftCPU report.Range `json:"weft_cpu_ratio"`
	WeftP99 report.Range `json:"weft_added_p99_ratio"`
	// TCP bulk (transfers that completed): MB/s each way, seconds, CPU seconds per proxy per GB
	// echoed (mean of A and B, and each), and Weft ÷ this for MB/s and CPU per GB.
	MBps         report.Range `json:"mb_per_s"`
	Seconds      report.Range `json:"seconds"`
	CPUPerGB     report.Range `json:"cpu_seconds_per_proxy_per_gb"`
	CPUPerGBA    report.Range `json:"cpu_seconds_a_per_gb"`
	CPUPerGBB    report.Range `json:"cpu_seconds_b_per_gb"`
	WeftMBps     report.Range `json:"weft_mb_per_s_ratio"`
	WeftCPUPerGB report.Range `json:"weft_cpu_per_gb_ratio"`
}

// minAddedP99 is the smallest added p99 (ms) a latency ratio divides by.
const minAddedP99 = 0.05

// rep is w's repetition; files written before repetitions have one window per path, rep 0.
func (w *Window) rep() int { return max(w.Rep, 1) }

// Summarise derives Rows from Windows: one per protocol and path, in the order they first ran
// (repetition 1 runs the paths in their configured order).
func (r *Result) Summarise() {
	type key struct {
		proto, peer string
		rep         int
	}
	byKey := map[key]*Window{}
	var order []key
	for _, w := range r.Windows {
		k := key{w.Protocol, w.Peer, 0}
		if !slices.Contains(order, k) {
			order = append(order, k)
		}
		k.rep = w.rep()
		byKey[k] = w
	}
	ratio := func(num, den float64) (float64, bool) { return num / den, num > 0 && den > 0 }
	r.Rows = nil
	for _, k := range order {
		row := Row{Protocol: k.proto, Peer: k.peer}
		var achieved, p50, p90, p99, p999, d50, d90, d99, d999, cpu, cpuA, cpuB, rssA, rssB, wCPU, wP99 []float64
		var mbps, secs, gb, gbA, gbB, wMB, wGB []float64
		mib := func(b uint64) float64 { return float64(b) / (1 << 20) }
		reps := map[int]bool{}
		for _, w := range r.Windows {
			if w.Protocol == k.proto && w.Peer == k.peer {
				reps[w.rep()] = true
			}
		}
		for _, rep := range slices.Sorted(maps.Keys(reps)) {
			w := byKey[key{k.proto, k.peer, rep}]
			direct := byKey[key{k.proto, Direct, rep}]
			weft := byKey[key{k.proto, WeftMTLS, rep}]
			peerRow := k.peer != Direct && !strings.HasPrefix(k.peer, "weft")
			row.Windows++
			row.Errors += w.Errors + w.BadBodies
			row.Rate = w.Rate
			if k.proto == TCPBulk {
				if w.Errors > 0 || w.MBps <= 0 {
					continue // a transfer that failed has no rate
				}
				mbps, secs = append(mbps, w.MBps), append(secs, w.Seconds)
				if k.peer == Direct {
					continue
				}
				gb, gbA, gbB = append(gb, w.cpuPerGB()), append(gbA, w.perGB(w.CPUA)), append(gbB, w.perGB(w.CPUB))
				rssA, rssB = append(rssA, mib(w.RSSA)), append(rssB, mib(w.RSSB))
				if weft != nil && peerRow && weft.Errors == 0 {
					if v, ok := ratio(weft.MBps, w.MBps); ok {
						wMB = append(wMB, v)
					}
					if v, ok := ratio(weft.cpuPerGB(), w.cpuPerGB()); ok {
						wGB = append(wGB, v)
					}
				}
				continue
			}
			achieved = append(achieved, w.Achieved)
			p50, p90, p99 = append(p50, w.P50), append(p90, w.P90), append(p99, w.P99)
			if w.P999 > 0 { // files written before p99.9 was reported have none
				p999 = append(p999, w.P999)
			}
			if k.peer == Direct {
				continue
			}
			if direct != nil {
				d50, d90, d99 = append(d50, w.P50-direct.P50), append(d90, w.P90-direct.P90), append(d99, w.P99-direct.P99)
				if w.P999 > 0 && direct.P999 > 0 {
					d999 = append(d999, w.P999-direct.P999)
				}
			}
			if w.Achieved > 0 {
				cpu, cpuA, cpuB = append(cpu, w.cpuPer1k()), append(cpuA, w.cpuPer(w.CPUA)), append(cpuB, w.cpuPer(w.CPUB))
				rssA, rssB = append(rssA, mib(w.RSSA)), append(rssB, mib(w.RSSB))
			}
			if weft != nil && peerRow {
				if v, ok := ratio(weft.cpuPer1k(), w.cpuPer1k()); ok {
					wCPU = append(wCPU, v)
				}
				// As in the HTTP/1.1 table, no latency ratio against an added p99 within
				// 0.05 ms of zero: it would only measure noise.
				if direct != nil && w.P99-direct.P99 > minAddedP99 {
					if v, ok := ratio(weft.P99-direct.P99, w.P99-direct.P99); ok {
						wP99 = append(wP99, v)
					}
				}
			}
		}
		of := report.RangeOf
		row.Achieved, row.P50, row.P90, row.P99 = of(achieved), of(p50), of(p90), of(p99)
		row.P999, row.AddedP50, row.AddedP90, row.AddedP99, row.AddedP999 = of(p999), of(d50), of(d90), of(d99), of(d999)
		row.CPUPer1k, row.CPUPer1kA, row.CPUPer1kB = of(cpu), of(cpuA), of(cpuB)
		row.RSSA, row.RSSB, row.WeftCPU, row.WeftP99 = of(rssA), of(rssB), of(wCPU), of(wP99)
		row.MBps, row.Seconds, row.CPUPerGB, row.CPUPerGBA, row.CPUPerGBB = of(mbps), of(secs), of(gb), of(gbA), of(gbB)
		row.WeftMBps, row.WeftCPUPerGB = of(wMB), of(wGB)
		r.Rows = append(r.Rows, row)
	}
}

// ReadJSON reads a results file of the protocol scenarios (with or without repetitions) and
// summarises it again, so that a stored run is rendered with the current arithmetic.
func ReadJSON(rd io.Reader) (*Result, error) {
	var r Result
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("decode protocol results: %w", err)
	}
	if len(r.Windows) == 0 {
		return nil, fmt.Errorf("decode protocol results: no windows")
	}
	for i, w := range r.Windows {
		if w == nil || w.Protocol == "" || w.Peer == "" {
			return nil, fmt.Errorf("decode protocol results: window %d has no protocol or peer", i)
		}
	}
	r.Summarise()
	return &r, nil
}

// WriteMarkdown writes the run as tables: the paced request/response paths with latency added
// over direct and each pair's cost, the bulk transfers, and the pairs not run with the reason.
// Every peer row carries Weft's (mTLS pair's) figure divided by the peer's for the same
// protocol: above 1 means Weft is slower or costs more. Each cell is the median (min–max)
// across repetitions. Rows are summarised from the windows when r has none.
func WriteMarkdown(w io.Writer, r *Result) error {
	if r.Rows == nil {
		r.Summarise()
	}
	var b strings.Builder
	r.writeHeader(&b)
	times := func(x report.Range) string {
		switch x.N {
		case 0:
			return "—"
		case 1:
			return fmt.Sprintf("%.2f×", x.Median)
		}
		return fmt.Sprintf("%.2f× (%.2f–%.2f)", x.Median, x.Min, x.Max)
	}
	pair := func(a, b report.Range, prec int) string {
		if a.N == 0 && b.N == 0 {
			return "—"
		}
		return a.Format(prec) + " / " + b.Format(prec)
	}
	reps := max(r.Config.Reps, 1)
	name := func(row Row) string {
		if row.Windows < reps {
			return fmt.Sprintf("%s (%d of %d repetitions)", row.Peer, row.Windows, reps)
		}
		return row.Peer
	}
	b.WriteString("| protocol | path | rate (achieved) | errors | p50 / p90 / p99 / p99.9 (ms) | added p50 (ms) | added p90 (ms) | added p99 (ms) | added p99.9 (ms) | vCPU per proxy per 1,000 rps | A / B | VmRSS A / B (MiB) | Weft ÷ this: CPU | Weft ÷ this: added p99 |\n" +
		"|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, row := range r.Rows {
		if row.Protocol == TCPBulk {
			continue
		}
		ab := "—"
		if row.CPUPer1k.N > 0 {
			ab = fmt.Sprintf("%.3f / %.3f", row.CPUPer1kA.Median, row.CPUPer1kB.Median)
		}
		p999 := "—"
		if row.P999.N > 0 {
			p999 = fmt.Sprintf("%.3f", row.P999.Median)
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f (%.0f) | %d | %.3f / %.3f / %.3f / %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			row.Protocol, name(row), row.Rate, row.Achieved.Median, row.Errors, row.P50.Median, row.P90.Median, row.P99.Median, p999,
			row.AddedP50.Format(3), row.AddedP90.Format(3), row.AddedP99.Format(3), row.AddedP999.Format(3),
			row.CPUPer1k.Format(3), ab, pair(row.RSSA, row.RSSB, 1), times(row.WeftCPU), times(row.WeftP99))
	}
	b.WriteString("\n| TCP bulk, one connection, echoed | MB/s each way | seconds | vCPU-s per proxy per GB echoed | A / B | VmRSS A / B (MiB) | Weft ÷ this: MB/s | Weft ÷ this: CPU per GB | errors |\n" +
		"|---|---|---|---|---|---|---|---|---|\n")
	for _, row := range r.Rows {
		if row.Protocol != TCPBulk {
			continue
		}
		ab := "—"
		if row.CPUPerGB.N > 0 {
			ab = fmt.Sprintf("%.2f / %.2f", row.CPUPerGBA.Median, row.CPUPerGBB.Median)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", name(row), row.MBps.Format(0), row.Seconds.Format(2),
			row.CPUPerGB.Format(2), ab, pair(row.RSSA, row.RSSB, 1), times(row.WeftMBps), times(row.WeftCPUPerGB), row.Errors)
	}
	if len(r.Skipped) > 0 {
		b.WriteString("\n| protocol | pair not run | why |\n|---|---|---|\n")
		for _, s := range r.Skipped {
			fmt.Fprintf(&b, "| %s | %s | %s: %s |\n", s.Protocol, s.Peer, s.Why, strings.ReplaceAll(s.Reason, "|", "\\|"))
		}
	}
	if len(r.Versions) > 0 {
		b.WriteString("\nVersions:")
		names := make([]string, 0, len(r.Versions))
		for n := range r.Versions {
			names = append(names, n)
		}
		slices.Sort(names)
		for i, n := range names {
			sep := ";"
			if i == len(names)-1 {
				sep = "."
			}
			fmt.Fprintf(&b, " %s: %s%s", n, r.Versions[n], sep)
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeHeader says how the run was made: load, repetitions, and the CPU other processes used.
func (r *Result) writeHeader(b *strings.Builder) {
	c := r.Config
	if !r.Started.IsZero() {
		fmt.Fprintf(b, "Run of %s. ", r.Started.UTC().Format("2006-01-02 15:04 UTC"))
	}
	if c.Rate > 0 {
		fmt.Fprintf(b, "Request/response: open loop at %.0f rps over %d workers, %d B each way, %s per window after %s warm-up; ",
			c.Rate, c.Conns, PayloadSize, c.Duration, c.Warmup)
	}
	if c.BulkBytes > 0 {
		fmt.Fprintf(b, "TCP bulk: %d MiB echoed through one connection. ", c.BulkBytes>>20)
	}
	if c.Reps == 0 {
		b.WriteString("One window per path (a run from before repetitions).")
	} else {
		fmt.Fprintf(b, "%d repetition(s); in each, every protocol directly first, then through every pair in an order rotated per repetition. "+
			"Added latency is over the direct window of the same repetition; each cell is the median (min–max) across repetitions, "+
			"the p50 / p90 / p99 / p99.9 column and the A / B split medians only; Weft ÷ this is the median (min–max) of the per-repetition ratios of Weft's (mTLS pair's) figure to the path's "+
			"(none against an added p99 under 0.05 ms).", c.Reps)
		if c.Quick {
			b.WriteString(" Quick mode: not a measurement.")
		}
		var foreign []float64
		retried := 0
		for _, w := range r.Windows {
			foreign = append(foreign, w.ForeignVCPU)
			retried += max(w.Attempts-1, 0)
		}
		if f := report.RangeOf(foreign); f.N > 0 {
			fmt.Fprintf(b, "\n\nCPU used outside the benchmark during the windows (other work on the machine): median %.2f vCPU (%.2f–%.2f)", f.Median, f.Min, f.Max)
			if c.QuietBelow > 0 {
				fmt.Fprintf(b, "; each window waited up to %s for under %.2f and %d window(s) were measured again", c.QuietWait, c.QuietBelow, retried)
			}
			b.WriteString(".")
		}
	}
	b.WriteString("\n\n")
}

// cpuPer is c CPU seconds per second of the window per 1,000 achieved rps.
func (x *Window) cpuPer(c float64) float64 {
	if x.Seconds <= 0 || x.Achieved <= 0 {
		return 0
	}
	return c / x.Seconds / (x.Achieved / 1000)
}

// cpuPer1k is the mean of A's and B's CPU per 1,000 rps.
func (x *Window) cpuPer1k() float64 { return x.cpuPer((x.CPUA + x.CPUB) / 2) }

// perGB is c CPU seconds per 10^9 bytes echoed.
func (x *Window) perGB(c float64) float64 {
	if x.BytesReceived <= 0 {
		return 0
	}
	return c / (float64(x.BytesReceived) / 1e9)
}

// cpuPerGB is the mean of A's and B's CPU per GB echoed.
func (x *Window) cpuPerGB() float64 { return x.perGB((x.CPUA + x.CPUB) / 2) }
