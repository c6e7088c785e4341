// Package report holds what a benchmark run measured and turns it into the published figures:
// latency added over the direct baseline of the same repetition, CPU per proxy per 1,000
// requests per second, memory per proxy, each as the median with min and max across
// repetitions, and ratios against HAProxy. It writes JSON (everything) and a markdown table.
// KneeReport does the same for a rate sweep, with the rule that finds each pair's knee.
//
// Only the benchmark harness imports report. A Report is a plain value: not safe for concurrent
// mutation.
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

// Baseline is the peer every other is compared with for latency; Reference the one for ratios.
const (
	Baseline  = "direct"
	Reference = "haproxy"
)

// Report is one benchmark run.
type Report struct {
	Started time.Time `json:"started"`
	Machine Machine   `json:"machine"`
	Config  Config    `json:"config"`
	Peers   []Peer    `json:"peers"`
	// Scenarios are the raw measurements, one per repetition, rate and peer.
	Scenarios []Scenario `json:"scenarios"`
	// Rows are the figures derived from Scenarios by Summarise.
	Rows []Row `json:"rows"`
	// Throughput rows are derived from the closed-loop windows.
	Throughput []ThroughputRow `json:"throughput,omitempty"`
}

// ThroughputRow is one peer's closed-loop figures.
type ThroughputRow struct {
	Peer string `json:"peer"`
	// RPS is answered requests per second through the pair (whole machine).
	RPS Range `json:"rps"`
	// PerCPUSecond is requests per proxy CPU-second: requests divided by the mean CPU seconds
	// of A and B.
	PerCPUSecond Range `json:"requests_per_proxy_cpu_second"`
	// PerCPUvsRef divides PerCPUSecond by HAProxy's in the same repetition.
	PerCPUvsRef Range `json:"per_cpu_vs_haproxy"`
	Errors      int64 `json:"errors"`
}

// Machine describes where the run happened.
type Machine struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
}

// Config is how the run was made.
type Config struct {
	Rates       []float64     `json:"rates"`
	Duration    time.Duration `json:"duration_ns"`
	Warmup      time.Duration `json:"warmup_ns"`
	Reps        int           `json:"repetitions"`
	Connections int           `json:"connections"`
	PayloadSize int           `json:"payload_bytes"`
	Quick       bool          `json:"quick"`
	// Throughput is the closed-loop window per peer and repetition (0: none), with
	// ThroughputConns connections.
	Throughput      time.Duration `json:"throughput_ns,omitempty"`
	ThroughputConns int           `json:"throughput_connections,omitempty"`
}

// Peer is one pair of the run.
type Peer struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	// Skipped says why the peer did not run; empty when it ran.
	Skipped string `json:"skipped,omitempty"`
	// IdleRSSA and IdleRSSB are each proxy's VmRSS in bytes once started and warmed by one request.
	IdleRSSA uint64 `json:"idle_rss_a,omitempty"`
	IdleRSSB uint64 `json:"idle_rss_b,omitempty"`
}

// Scenario is one load window against one peer.
type Scenario struct {
	Peer string `json:"peer"`
	// Closed marks a closed-loop window (as fast as the pair answers); Rate is then zero.
	Closed bool    `json:"closed_loop,omitempty"`
	Rate   float64 `json:"rate"`
	Rep    int     `json:"rep"`
	// Achieved is answered requests per second over the window.
	Achieved float64 `json:"achieved"`
	Window   float64 `json:"window_seconds"`
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	// BadBodies are 200 answers whose body differed from the request's.
	BadBodies     int64 `json:"bad_bodies"`
	BytesSent     int64 `json:"bytes_sent"`
	BytesReceived int64 `json:"bytes_received"`
	// Late requests were sent after their slot because their connection was still busy.
	Late       int64  `json:"late"`
	FirstError string `json:"first_error,omitempty"`
	// Latency percentiles in milliseconds, from the intended send time.
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	// CPUA and CPUB are seconds of CPU each proxy used during the window; CPUEcho the echo's.
	CPUA    float64 `json:"cpu_a_seconds"`
	CPUB    float64 `json:"cpu_b_seconds"`
	CPUEcho float64 `json:"cpu_echo_seconds"`
	// ForeignVCPU is the CPU used during the window by processes outside the benchmark, in
	// vCPU (busy machine time minus the harness's process tree, per second): noise.
	ForeignVCPU float64 `json:"foreign_vcpu"`
	// Attempts is how many times the window was measured to find a quiet one.
	Attempts int `json:"attempts,omitempty"`
	// RSS (VmRSS at the end of the window) and HWM (VmHWM, peak since start) per proxy, bytes.
	RSSA uint64 `json:"rss_a"`
	RSSB uint64 `json:"rss_b"`
	HWMA uint64 `json:"hwm_a"`
	HWMB uint64 `json:"hwm_b"`
}

// Saturated reports whether the window is not a valid latency measurement: the load fell
// behind its schedule.
func (s *Scenario) Saturated() bool {
	return s.Achieved < 0.95*s.Rate || float64(s.Late) > 0.05*float64(s.Requests)
}

// Range is the median, min and max of one figure across repetitions.
type Range struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// RangeOf is the median, min and max of v (the mean of the middle two for an even count);
// with no values, all three are NaN and N is 0.
func RangeOf(v []float64) Range {
	if len(v) == 0 {
		return Range{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Range{Median: m, Min: s[0], Max: s[len(s)-1], N: len(s)}
}

// MarshalJSON writes NaN (no data) as zero, which encoding/json cannot encode; N tells them
// apart.
func (r Range) MarshalJSON() ([]byte, error) {
	type plain Range
	for _, f := range []*float64{&r.Median, &r.Min, &r.Max} {
		if math.IsNaN(*f) || math.IsInf(*f, 0) {
			*f = 0
		}
	}
	return json.Marshal(plain(r))
}

// Format writes the range as "median (min–max)" with prec decimals, only the median for one
// value, and "—" for none.
func (r Range) Format(prec int) string {
	if r.N == 0 {
		return "—"
	}
	if r.N == 1 {
		return fmt.Sprintf("%.*f", prec, r.Median)
	}
	return fmt.Sprintf("%.*f (%.*f–%.*f)", prec, r.Median, prec, r.Min, prec, r.Max)
}

// Row is the summary of one peer at one rate.
type Row struct {
	Peer string  `json:"peer"`
	Rate float64 `json:"rate"`
	// Added latency over direct in the same repetition, ms. For the baseline itself these are
	// its absolute latencies.
	AddedP50  Range `json:"added_p50_ms"`
	AddedP90  Range `json:"added_p90_ms"`
	AddedP99  Range `json:"added_p99_ms"`
	AddedP999 Range `json:"added_p999_ms"`
	// CPUPer1k is vCPU per proxy (mean of A and B) per 1,000 requests per second.
	CPUPer1k Range `json:"vcpu_per_proxy_per_1k_rps"`
	// RSSLoadMiB is VmRSS per proxy (mean of A and B) at the end of the window; HWMMiB the peak.
	RSSLoadMiB Range `json:"rss_load_mib"`
	HWMMiB     Range `json:"hwm_mib"`
	// CPUvsRef is the median of this peer's CPU divided by HAProxy's in the same repetition;
	// P99vsRef divides the median added p99 by HAProxy's. Zero when HAProxy did not run.
	CPUvsRef Range `json:"cpu_vs_haproxy"`
	P99vsRef Range `json:"added_p99_vs_haproxy"`
	// Errors and BadBodies summed over repetitions; Saturated counts windows that fell behind.
	Errors    int64 `json:"errors"`
	BadBodies int64 `json:"bad_bodies"`
	Saturated int   `json:"saturated_windows"`
}

type key struct {
	peer string
	rate float64
	rep  int
}

// Summarise derives Rows from Scenarios.
func (r *Report) Summarise() {
	byKey := map[key]*Scenario{}
	closed := map[key]*Scenario{}
	for i := range r.Scenarios {
		s := &r.Scenarios[i]
		if s.Closed {
			closed[key{s.Peer, 0, s.Rep}] = s
			continue
		}
		byKey[key{s.Peer, s.Rate, s.Rep}] = s
	}
	r.Throughput = nil
	for _, p := range r.Peers {
		if p.Skipped != "" {
			continue
		}
		row := ThroughputRow{Peer: p.Name}
		var rps, per, vs []float64
		for rep := 1; rep <= r.Config.Reps; rep++ {
			s := closed[key{p.Name, 0, rep}]
			if s == nil {
				continue
			}
			row.Errors += s.Errors + s.BadBodies
			rps = append(rps, s.Achieved)
			if p.Name == Baseline {
				continue
			}
			pc := perCPUSecond(s)
			per = append(per, pc)
			if ref := closed[key{Reference, 0, rep}]; ref != nil && p.Name != Reference && perCPUSecond(ref) > 0 {
				vs = append(vs, pc/perCPUSecond(ref))
			}
		}
		if len(rps) == 0 {
			continue
		}
		row.RPS, row.PerCPUSecond, row.PerCPUvsRef = RangeOf(rps), RangeOf(per), RangeOf(vs)
		r.Throughput = append(r.Throughput, row)
	}
	r.Rows = nil
	for _, rate := range r.Config.Rates {
		for _, p := range r.Peers {
			if p.Skipped != "" {
				continue
			}
			row := Row{Peer: p.Name, Rate: rate}
			var d50, d90, d99, d999, cpu, rss, hwm, cpuRef []float64
			for rep := 1; rep <= r.Config.Reps; rep++ {
				s := byKey[key{p.Name, rate, rep}]
				if s == nil {
					continue
				}
				row.Errors += s.Errors
				row.BadBodies += s.BadBodies
				if s.Saturated() {
					row.Saturated++
				}
				base := byKey[key{Baseline, rate, rep}]
				if p.Name == Baseline {
					d50, d90, d99, d999 = append(d50, s.P50), append(d90, s.P90), append(d99, s.P99), append(d999, s.P999)
					continue
				}
				if base != nil {
					d50 = append(d50, s.P50-base.P50)
					d90 = append(d90, s.P90-base.P90)
					d99 = append(d99, s.P99-base.P99)
					d999 = append(d999, s.P999-base.P999)
				}
				c := perProxyPer1k(s)
				cpu = append(cpu, c)
				rss = append(rss, float64(s.RSSA+s.RSSB)/2/(1<<20))
				hwm = append(hwm, float64(s.HWMA+s.HWMB)/2/(1<<20))
				if ref := byKey[key{Reference, rate, rep}]; ref != nil && p.Name != Reference {
					if rc := perProxyPer1k(ref); rc > 0 {
						cpuRef = append(cpuRef, c/rc)
					}
				}
			}
			row.AddedP50, row.AddedP90, row.AddedP99, row.AddedP999 = RangeOf(d50), RangeOf(d90), RangeOf(d99), RangeOf(d999)
			row.CPUPer1k, row.RSSLoadMiB, row.HWMMiB = RangeOf(cpu), RangeOf(rss), RangeOf(hwm)
			row.CPUvsRef = RangeOf(cpuRef)
			r.Rows = append(r.Rows, row)
		}
	}
	// Latency ratios divide medians: per-repetition ratios of sub-millisecond differences
	// swing wildly. No ratio when HAProxy's added p99 is within 0.05 ms of zero, nor for a
	// peer with saturated windows (its latency is not a valid figure).
	ref := map[float64]float64{}
	for _, row := range r.Rows {
		if row.Peer == Reference {
			ref[row.Rate] = row.AddedP99.Median
		}
	}
	for i := range r.Rows {
		row := &r.Rows[i]
		row.P99vsRef = Range{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
		if d, ok := ref[row.Rate]; ok && d > 0.05 && row.Peer != Reference && row.Peer != Baseline && row.Saturated == 0 {
			v := max(0, row.AddedP99.Median) / d
			row.P99vsRef = Range{Median: v, Min: v, Max: v, N: 1}
		}
	}
}

func perCPUSecond(s *Scenario) float64 {
	cpu := (s.CPUA + s.CPUB) / 2
	if cpu <= 0 {
		return 0
	}
	return float64(s.Requests) / cpu
}

func perProxyPer1k(s *Scenario) float64 {
	if s.Window <= 0 || s.Achieved <= 0 {
		return 0
	}
	return (s.CPUA + s.CPUB) / 2 / s.Window / (s.Achieved / 1000)
}

// ReadJSON reads a report written by WriteJSON and summarises it again, so that a stored run
// can be re-rendered with the current arithmetic.
func ReadJSON(rd io.Reader) (*Report, error) {
	var r Report
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("decode report: %w", err)
	}
	r.Summarise()
	return &r, nil
}

// WriteJSON writes the whole report.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteMarkdown writes the summary table and the peers' versions.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Run of %s on %s (%d cores, kernel %s, %s). ", r.Started.UTC().Format("2006-01-02 15:04 UTC"),
		r.Machine.CPU, r.Machine.Cores, r.Machine.Kernel, r.Machine.Go)
	fmt.Fprintf(&b, "Open loop, %d connections, %d B request and response, %s per window after %s warm-up, %d repetition(s) interleaved across peers",
		r.Config.Connections, r.Config.PayloadSize, r.Config.Duration, r.Config.Warmup, r.Config.Reps)
	if r.Config.Quick {
		b.WriteString(" (quick mode: not a measurement)")
	}
	b.WriteString(".\n\n")
	var foreign []float64
	for _, s := range r.Scenarios {
		foreign = append(foreign, s.ForeignVCPU)
	}
	if f := RangeOf(foreign); f.N > 0 {
		fmt.Fprintf(&b, "CPU used outside the benchmark during the windows (other work on the machine): median %.2f vCPU (%.2f–%.2f) of %d.\n\n",
			f.Median, f.Min, f.Max, r.Machine.Cores)
	}
	b.WriteString("Latency: ms added over the direct baseline of the same repetition (the direct row is absolute). " +
		"CPU: vCPU per proxy per 1,000 rps. Memory: VmRSS per proxy, MiB. Each cell: median (min–max) across repetitions. " +
		"CPU ×HAProxy: ratio to HAProxy in the same repetition; Δp99 ×HAProxy: ratio of the medians. A ⚠ marks windows where the load fell behind its schedule (saturated: latency not valid).\n\n")
	b.WriteString("| pair | rate | Δp50 | Δp90 | Δp99 | Δp99.9 | vCPU/proxy/1k rps | CPU ×HAProxy | Δp99 ×HAProxy | RSS idle → load (peak) | errors |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n")
	idle := map[string]Peer{}
	for _, p := range r.Peers {
		idle[p.Name] = p
	}
	for _, row := range r.Rows {
		name := row.Peer
		if row.Saturated > 0 {
			name += fmt.Sprintf(" ⚠%d", row.Saturated)
		}
		p := idle[row.Peer]
		mem, cpu, cpuRef, p99Ref := "—", "—", "—", "—"
		if row.Peer != Baseline {
			mem = fmt.Sprintf("%.1f → %.1f (peak %.1f)", float64(p.IdleRSSA+p.IdleRSSB)/2/(1<<20), row.RSSLoadMiB.Median, row.HWMMiB.Max)
			cpu = row.CPUPer1k.Format(3)
			if row.CPUvsRef.N > 0 {
				cpuRef = fmt.Sprintf("%.2f×", row.CPUvsRef.Median)
			}
			if row.P99vsRef.N > 0 {
				p99Ref = fmt.Sprintf("%.2f×", row.P99vsRef.Median)
			}
		}
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", name, row.Rate,
			row.AddedP50.Format(2), row.AddedP90.Format(2), row.AddedP99.Format(2), row.AddedP999.Format(2),
			cpu, cpuRef, p99Ref, mem, row.Errors+row.BadBodies)
	}
	if len(r.Throughput) > 0 {
		fmt.Fprintf(&b, "\nClosed loop (%d connections, %s per window, whole machine): pair throughput and requests per proxy CPU-second.\n\n",
			r.Config.ThroughputConns, r.Config.Throughput)
		b.WriteString("| pair | rps | requests per proxy CPU-second | ×HAProxy | errors |\n|---|---:|---:|---:|---:|\n")
		for _, row := range r.Throughput {
			per, vs := "—", "—"
			if row.PerCPUSecond.N > 0 {
				per = row.PerCPUSecond.Format(0)
			}
			if row.PerCPUvsRef.N > 0 {
				vs = fmt.Sprintf("%.2f×", row.PerCPUvsRef.Median)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %d |\n", row.Peer, row.RPS.Format(0), per, vs, row.Errors)
		}
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
