package report

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// KneeRule decides whether a window of a rate sweep is still below the knee.
//
// A window passes when it completed without errors, was not saturated (see
// Scenario.Saturated) and its p99 stayed within the bound: at most P99Factor times the p99 of
// the same pair's first window of the sweep in the same repetition, or at most P99FloorMS,
// whichever is larger. The floor keeps a sub-millisecond first p99 from making the bound
// tighter than the noise of a shared machine. A sweep stops at its first window that fails;
// the knee is the rate of the last window that passed.
type KneeRule struct {
	P99Factor  float64 `json:"p99_factor"`
	P99FloorMS float64 `json:"p99_floor_ms"`
}

// Validate reports a rule that cannot be applied, naming the field.
func (k KneeRule) Validate() error {
	if !(k.P99Factor >= 1) || math.IsInf(k.P99Factor, 0) {
		return fmt.Errorf("p99 factor: %v is not a finite number of at least 1", k.P99Factor)
	}
	if !(k.P99FloorMS >= 0) || math.IsInf(k.P99FloorMS, 0) {
		return fmt.Errorf("p99 floor: %v ms is not a finite number of at least 0", k.P99FloorMS)
	}
	return nil
}

// Bound is the highest p99 (ms) a window may have when the sweep's first window had firstP99.
func (k KneeRule) Bound(firstP99 float64) float64 {
	return max(k.P99Factor*firstP99, k.P99FloorMS)
}

// Fail says why s is past the knee when the sweep's first window had firstP99, or "" when s
// passes.
func (k KneeRule) Fail(s *Scenario, firstP99 float64) string {
	switch {
	case s.Errors+s.BadBodies > 0:
		return fmt.Sprintf("errors: %d of %d", s.Errors+s.BadBodies, s.Requests)
	case s.Saturated():
		return fmt.Sprintf("saturated: %.0f of %.0f rps, %d of %d late", s.Achieved, s.Rate, s.Late, s.Requests)
	case s.P99 > k.Bound(firstP99):
		return fmt.Sprintf("p99 %.2f ms > bound %.2f ms", s.P99, k.Bound(firstP99))
	}
	return ""
}

// Knee is where one pair's sweep in one repetition ended.
type Knee struct {
	Peer string `json:"peer"`
	Rep  int    `json:"rep"`
	// Rate is the knee: the highest rate whose window passed with every lower one; 0 when the
	// first window already failed.
	Rate float64 `json:"rate"`
	// Window is the index in KneeReport.Windows of the knee's window; -1 without a knee.
	Window int `json:"window"`
	// FirstP99 is the p99 (ms) of the sweep's first window and Bound the p99 bound it sets.
	FirstP99 float64 `json:"first_p99_ms"`
	Bound    float64 `json:"p99_bound_ms"`
	// Stop says why the sweep ended: the failing window's reason with its rate, or that it
	// reached the top rate (Capped) without failing; then the knee is at least Rate.
	Stop   string `json:"stop"`
	Capped bool   `json:"capped,omitempty"`
}

// FindKnee applies rule to one pair's windows of one repetition, in the order measured
// (ascending rates), indexed by idx in the report's windows. top is the sweep's highest rate.
func FindKnee(rule KneeRule, windows []Scenario, idx []int, top float64) Knee {
	k := Knee{Window: -1}
	if len(windows) == 0 {
		k.Stop = "not measured"
		return k
	}
	k.Peer, k.Rep = windows[0].Peer, windows[0].Rep
	k.FirstP99 = windows[0].P99
	k.Bound = rule.Bound(k.FirstP99)
	for i := range windows {
		s := &windows[i]
		if why := rule.Fail(s, k.FirstP99); why != "" {
			k.Stop = fmt.Sprintf("%.0f rps: %s", s.Rate, why)
			return k
		}
		k.Rate, k.Window = s.Rate, idx[i]
	}
	if k.Rate >= top {
		k.Capped = true
		k.Stop = "reached the top rate"
	} else {
		k.Stop = "sweep cut short"
	}
	return k
}

// KneeConfig is how a rate sweep was made.
type KneeConfig struct {
	// Rates are the sweep's rates in ascending order: Start, then Start×Step^k rounded to 10 rps,
	// up to Max.
	Rates []float64 `json:"rates"`
	Start float64   `json:"start"`
	Step  float64   `json:"step"`
	Max   float64   `json:"max"`
	Rule  KneeRule  `json:"rule"`

	Duration    time.Duration `json:"duration_ns"`
	Warmup      time.Duration `json:"warmup_ns"`
	Reps        int           `json:"repetitions"`
	Connections int           `json:"connections"`
	PayloadSize int           `json:"payload_bytes"`
	Quick       bool          `json:"quick"`
}

// KneeRates returns the rates of a sweep from start, multiplying by step, up to top, each after
// the first rounded to 10 rps (and skipped when rounding repeats a rate).
func KneeRates(start, step, top float64) ([]float64, error) {
	switch {
	case !(start > 0) || math.IsInf(start, 0):
		return nil, fmt.Errorf("start rate: %v is not a positive number", start)
	case !(step > 1) || math.IsInf(step, 0):
		return nil, fmt.Errorf("step: %v is not a number above 1", step)
	case !(top >= start) || math.IsInf(top, 0):
		return nil, fmt.Errorf("top rate: %v is below the start rate %v", top, start)
	}
	rates := []float64{start}
	for r := start * step; r <= top; r *= step {
		if v := math.Round(r/10) * 10; v > rates[len(rates)-1] && v <= top {
			rates = append(rates, v)
		}
	}
	return rates, nil
}

// KneeReport is one rate sweep of every pair.
type KneeReport struct {
	Started time.Time  `json:"started"`
	Machine Machine    `json:"machine"`
	Config  KneeConfig `json:"config"`
	Peers   []Peer     `json:"peers"`
	// Windows are the raw measurements in the order measured.
	Windows []Scenario `json:"windows"`
	// Knees and Rows are derived from Windows by Summarise: one Knee per pair and repetition,
	// one Row per pair.
	Knees []Knee    `json:"knees"`
	Rows  []KneeRow `json:"rows"`
}

// KneeRow is one pair's figures at its knee, each the median with min and max across the
// repetitions that found a knee.
type KneeRow struct {
	Peer string `json:"peer"`
	// Rate is the knee in rps. Found counts repetitions with a knee, Capped those whose sweep
	// reached the top rate (the knee is then at least that).
	Rate   Range `json:"knee_rps"`
	Found  int   `json:"found"`
	Capped int   `json:"capped"`
	// P50 and P99 are the absolute latencies at the knee, ms; FirstP99 the sweep's first p99,
	// which set the bound.
	P50      Range `json:"p50_ms"`
	P99      Range `json:"p99_ms"`
	FirstP99 Range `json:"first_p99_ms"`
	// CPUPer1k is vCPU per proxy (mean of A and B) per 1,000 rps in the knee's window;
	// PerCPUSecond requests per proxy CPU-second (requests ÷ mean CPU seconds of A and B).
	CPUPer1k     Range `json:"vcpu_per_proxy_per_1k_rps"`
	PerCPUSecond Range `json:"requests_per_proxy_cpu_second"`
	// RSSMiB is VmRSS per proxy (mean of A and B) at the end of the knee's window.
	RSSMiB Range `json:"rss_mib"`
	// RateVsRef, CPUvsRef and PerCPUvsRef divide this pair's figure by HAProxy's in the same
	// repetition (median of the ratios); empty when either has no knee.
	RateVsRef   Range `json:"knee_vs_haproxy"`
	CPUvsRef    Range `json:"cpu_vs_haproxy"`
	PerCPUvsRef Range `json:"per_cpu_vs_haproxy"`
	// Stops are the reasons the sweeps ended, one per repetition.
	Stops []string `json:"stops"`
	// Errors are failed requests and bad bodies over all of the pair's windows.
	Errors int64 `json:"errors"`
}

// Summarise derives Knees and Rows from Windows.
func (r *KneeReport) Summarise() {
	type pk struct {
		peer string
		rep  int
	}
	sweeps := map[pk][]Scenario{}
	idx := map[pk][]int{}
	errs := map[string]int64{}
	for i, s := range r.Windows {
		k := pk{s.Peer, s.Rep}
		sweeps[k] = append(sweeps[k], s)
		idx[k] = append(idx[k], i)
		errs[s.Peer] += s.Errors + s.BadBodies
	}
	var top float64
	if n := len(r.Config.Rates); n > 0 {
		top = r.Config.Rates[n-1]
	}
	knees := map[pk]Knee{}
	r.Knees = nil
	for _, p := range r.Peers {
		for rep := 1; rep <= r.Config.Reps; rep++ {
			k := pk{p.Name, rep}
			if len(sweeps[k]) == 0 {
				continue
			}
			kn := FindKnee(r.Config.Rule, sweeps[k], idx[k], top)
			knees[k] = kn
			r.Knees = append(r.Knees, kn)
		}
	}
	at := func(k Knee) *Scenario {
		if k.Window < 0 {
			return nil
		}
		return &r.Windows[k.Window]
	}
	r.Rows = nil
	for _, p := range r.Peers {
		if p.Skipped != "" {
			continue
		}
		row := KneeRow{Peer: p.Name, Errors: errs[p.Name]}
		var rate, p50, p99, first, cpu, per, rss, rateRef, cpuRef, perRef []float64
		for rep := 1; rep <= r.Config.Reps; rep++ {
			k, ok := knees[pk{p.Name, rep}]
			if !ok {
				continue
			}
			row.Stops = append(row.Stops, k.Stop)
			s := at(k)
			if s == nil {
				continue
			}
			row.Found++
			first = append(first, k.FirstP99)
			if k.Capped {
				row.Capped++
			}
			rate, p50, p99 = append(rate, k.Rate), append(p50, s.P50), append(p99, s.P99)
			if p.Name == Baseline {
				continue
			}
			c, pc := perProxyPer1k(s), perCPUSecond(s)
			cpu, per = append(cpu, c), append(per, pc)
			rss = append(rss, float64(s.RSSA+s.RSSB)/2/(1<<20))
			ref := knees[pk{Reference, rep}]
			if rs := at(ref); rs != nil && p.Name != Reference {
				rateRef = append(rateRef, k.Rate/ref.Rate)
				if rc := perProxyPer1k(rs); rc > 0 {
					cpuRef = append(cpuRef, c/rc)
				}
				if rp := perCPUSecond(rs); rp > 0 {
					perRef = append(perRef, pc/rp)
				}
			}
		}
		if len(row.Stops) == 0 {
			continue
		}
		row.Rate, row.P50, row.P99, row.FirstP99 = someRange(rate), someRange(p50), someRange(p99), someRange(first)
		row.CPUPer1k, row.PerCPUSecond, row.RSSMiB = someRange(cpu), someRange(per), someRange(rss)
		row.RateVsRef, row.CPUvsRef, row.PerCPUvsRef = someRange(rateRef), someRange(cpuRef), someRange(perRef)
		r.Rows = append(r.Rows, row)
	}
}

// someRange is RangeOf with an empty Range (N 0, no NaN, which JSON cannot carry) for no data.
func someRange(v []float64) Range {
	if len(v) == 0 {
		return Range{}
	}
	return RangeOf(v)
}

// ReadKneeJSON reads a report written by KneeReport.WriteJSON and summarises it again with the
// current arithmetic.
func ReadKneeJSON(rd io.Reader) (*KneeReport, error) {
	var r KneeReport
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("decode knee report: %w", err)
	}
	if err := r.Config.Rule.Validate(); err != nil {
		return nil, fmt.Errorf("knee report: rule: %w", err)
	}
	r.Summarise()
	return &r, nil
}

// WriteJSON writes the whole report.
func (r *KneeReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteMarkdown writes the knee table, every sweep's p99 per rate, and the peers' versions.
func (r *KneeReport) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "Knee sweep of %s on %s (%d cores, kernel %s, %s). ", r.Started.UTC().Format("2006-01-02 15:04 UTC"),
		r.Machine.CPU, r.Machine.Cores, r.Machine.Kernel, r.Machine.Go)
	fmt.Fprintf(&b, "Open loop, %d connections, %d B request and response, %s per window after %s warm-up, %d repetition(s); "+
		"rates from %.0f rps ×%g up to %.0f (%s)",
		c.Connections, c.PayloadSize, c.Duration, c.Warmup, c.Reps, c.Start, c.Step, c.Max, joinRates(c.Rates))
	if c.Quick {
		b.WriteString(" (quick mode: not a measurement)")
	}
	b.WriteString(".\n\n")
	var foreign []float64
	for _, s := range r.Windows {
		foreign = append(foreign, s.ForeignVCPU)
	}
	if f := someRange(foreign); f.N > 0 {
		fmt.Fprintf(&b, "CPU used outside the benchmark during the windows (other work on the machine): median %.2f vCPU (%.2f–%.2f) of %d.\n\n",
			f.Median, f.Min, f.Max, r.Machine.Cores)
	}
	fmt.Fprintf(&b, "Knee: the highest rate whose window, and every lower one of the same sweep, completed without errors, "+
		"was not saturated (achieved ≥ 95 %% of the rate and ≤ 5 %% of requests late) and kept its p99 within "+
		"max(%g × the sweep's first p99, %g ms); each pair's sweep stops at its first window that fails. "+
		"≥ marks sweeps that reached the top rate, < a pair past its knee already at the first rate. Latency is absolute (ms), not added over direct: the knees differ. "+
		"CPU: vCPU per proxy per 1,000 rps in the knee's window; requests per proxy CPU-second = requests ÷ mean CPU seconds of A and B. "+
		"RSS: VmRSS per proxy at the end of the knee's window, MiB. ×HAProxy: median of the ratios to HAProxy in the same repetition. "+
		"Each cell: median (min–max) across the repetitions that found a knee. The direct row is the load generator's and echo's own ceiling: "+
		"a pair whose knee reaches it is not the limit.\n\n", c.Rule.P99Factor, c.Rule.P99FloorMS)
	b.WriteString("| pair | knee rps | ×HAProxy | p50 | p99 | first p99 | vCPU/proxy/1k rps | CPU ×HAProxy | requests per proxy CPU-second | ×HAProxy | RSS MiB | knees found | errors |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	ratio := func(rg Range) string {
		if rg.N == 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f×", rg.Median)
	}
	for _, row := range r.Rows {
		knee := row.Rate.Format(0)
		switch {
		case row.Capped > 0:
			knee = "≥ " + knee
		case row.Found == 0 && len(c.Rates) > 0:
			knee = fmt.Sprintf("< %.0f", c.Rates[0]) // failed at the first rate in every repetition
		}
		found := fmt.Sprintf("%d of %d", row.Found, len(row.Stops))
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", row.Peer,
			knee, ratio(row.RateVsRef), row.P50.Format(2), row.P99.Format(2), row.FirstP99.Format(2),
			row.CPUPer1k.Format(3), ratio(row.CPUvsRef), row.PerCPUSecond.Format(0), ratio(row.PerCPUvsRef),
			row.RSSMiB.Format(1), found, row.Errors)
	}

	// Every sweep: p99 per rate, the failing window marked.
	b.WriteString("\nEvery sweep: p99 (ms) per rate; ⚠ saturated, ✗ errors, ↑ p99 over the bound (the sweep stopped there); the knee in bold.\n\n")
	b.WriteString("| pair | rep |")
	for _, rate := range c.Rates {
		fmt.Fprintf(&b, " %.0f |", rate)
	}
	b.WriteString(" stopped |\n|---|---:|" + strings.Repeat("---:|", len(c.Rates)) + "---|\n")
	col := map[float64]int{}
	for i, rate := range c.Rates {
		col[rate] = i
	}
	for _, k := range r.Knees {
		cells := slices.Repeat([]string{""}, len(c.Rates))
		for i, s := range r.Windows {
			if s.Peer != k.Peer || s.Rep != k.Rep {
				continue
			}
			j, ok := col[s.Rate]
			if !ok {
				continue
			}
			cell := fmt.Sprintf("%.2f", s.P99)
			switch {
			case s.Errors+s.BadBodies > 0:
				cell += " ✗"
			case s.Saturated():
				cell += " ⚠"
			case s.P99 > k.Bound:
				cell += " ↑"
			}
			if i == k.Window {
				cell = "**" + cell + "**"
			}
			cells[j] = cell
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s |\n", k.Peer, k.Rep, strings.Join(cells, " | "), k.Stop)
	}

	b.WriteString("\n| peer | version |\n|---|---|\n")
	for _, p := range r.Peers {
		v := p.Version
		if p.Skipped != "" {
			v = "not run: " + p.Skipped
		}
		fmt.Fprintf(&b, "| %s | %s |\n", p.Name, strings.ReplaceAll(v, "|", "/"))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func joinRates(rates []float64) string {
	s := make([]string, len(rates))
	for i, r := range rates {
		s[i] = fmt.Sprintf("%.0f", r)
	}
	return strings.Join(s, ", ")
}
