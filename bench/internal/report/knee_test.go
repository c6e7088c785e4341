package report

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// win is a clean window at rate with p99 (ms), on schedule, 10 s long.
func win(peer string, rep int, rate, p99 float64) Scenario {
	return Scenario{Peer: peer, Rep: rep, Rate: rate, Achieved: rate, Window: 10, Requests: int64(rate * 10),
		P50: p99 / 4, P99: p99}
}

func TestKneeRuleFail(t *testing.T) {
	rule := KneeRule{P99Factor: 4, P99FloorMS: 5}
	tests := []struct {
		name     string
		s        Scenario
		firstP99 float64
		want     string // prefix of the reason; "" passes
	}{
		{"within 4x", win("x", 1, 4000, 3.9), 1, ""},
		{"over 4x but under the floor", win("x", 1, 4000, 4.9), 0.5, ""},
		{"at the floor", win("x", 1, 4000, 5), 0.5, ""},
		{"over the floor and 4x", win("x", 1, 4000, 5.1), 0.5, "p99 5.10 ms > bound 5.00 ms"},
		{"exactly 4x above the floor", win("x", 1, 4000, 8), 2, ""},
		{"over 4x above the floor", win("x", 1, 4000, 8.01), 2, "p99 8.01 ms > bound 8.00 ms"},
		{"achieved under 95 %", func() Scenario { s := win("x", 1, 4000, 1); s.Achieved = 3790; return s }(), 1, "saturated"},
		{"achieved at 95 %", func() Scenario { s := win("x", 1, 4000, 1); s.Achieved = 3800; return s }(), 1, ""},
		{"over 5 % late", func() Scenario { s := win("x", 1, 4000, 1); s.Late = 2001; return s }(), 1, "saturated"},
		{"5 % late", func() Scenario { s := win("x", 1, 4000, 1); s.Late = 2000; return s }(), 1, ""},
		{"one error", func() Scenario { s := win("x", 1, 4000, 1); s.Errors = 1; return s }(), 1, "errors: 1 of 40000"},
		{"one bad body", func() Scenario { s := win("x", 1, 4000, 1); s.BadBodies = 1; return s }(), 1, "errors"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rule.Fail(&tt.s, tt.firstP99)
			if tt.want == "" && got != "" || !strings.HasPrefix(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestKneeRuleValidate(t *testing.T) {
	for _, bad := range []KneeRule{{P99Factor: 0.9, P99FloorMS: 5}, {P99Factor: 4, P99FloorMS: -1}, {}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v: got no error, want one", bad)
		}
	}
	if err := (KneeRule{P99Factor: 1, P99FloorMS: 0}).Validate(); err != nil {
		t.Errorf("factor 1, no floor: got %v, want no error", err)
	}
}

func TestFindKnee(t *testing.T) {
	rule := KneeRule{P99Factor: 4, P99FloorMS: 5}
	rates := []float64{2000, 2500, 3130, 3910}
	top := rates[len(rates)-1]
	saturated := func(s Scenario) Scenario { s.Achieved = s.Rate * 0.8; return s }
	tests := []struct {
		name      string
		windows   []Scenario
		wantRate  float64
		wantIdx   int
		wantStop  string
		wantCap   bool
		wantBound float64
	}{
		{"p99 over the bound", []Scenario{win("x", 1, 2000, 2), win("x", 1, 2500, 3), win("x", 1, 3130, 8.5)},
			2500, 1, "3130 rps: p99 8.50 ms > bound 8.00 ms", false, 8},
		{"saturated", []Scenario{win("x", 1, 2000, 1), win("x", 1, 2500, 1.5), win("x", 1, 3130, 2), saturated(win("x", 1, 3910, 2))},
			3130, 2, "3910 rps: saturated", false, 5},
		{"first window saturated: no knee", []Scenario{saturated(win("x", 1, 2000, 1))},
			0, -1, "2000 rps: saturated", false, 5},
		{"reached the top", []Scenario{win("x", 1, 2000, 1), win("x", 1, 2500, 1), win("x", 1, 3130, 1), win("x", 1, 3910, 4.9)},
			3910, 3, "reached the top rate", true, 5},
		{"interrupted", []Scenario{win("x", 1, 2000, 1), win("x", 1, 2500, 1)},
			2500, 1, "sweep cut short", false, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx := make([]int, len(tt.windows))
			for i := range idx {
				idx[i] = i
			}
			k := FindKnee(rule, tt.windows, idx, top)
			if k.Rate != tt.wantRate || k.Window != tt.wantIdx || !strings.HasPrefix(k.Stop, tt.wantStop) || k.Capped != tt.wantCap || k.Bound != tt.wantBound {
				t.Errorf("got rate %v window %d stop %q capped %v bound %v, want %v %d %q %v %v",
					k.Rate, k.Window, k.Stop, k.Capped, k.Bound, tt.wantRate, tt.wantIdx, tt.wantStop, tt.wantCap, tt.wantBound)
			}
		})
	}
}

func TestKneeRates(t *testing.T) {
	got, err := KneeRates(2000, 1.25, 8000)
	if err != nil {
		t.Fatal(err)
	}
	if want := []float64{2000, 2500, 3130, 3910, 4880, 6100, 7630}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got, _ := KneeRates(1000, 1.25, 1250); !slices.Equal(got, []float64{1000, 1250}) {
		t.Errorf("quick: got %v, want [1000 1250]", got)
	}
	if got, _ := KneeRates(1000, 1.001, 1020); !slices.Equal(got, []float64{1000, 1010, 1020}) {
		t.Errorf("small step: got %v, want rounded rates without repeats", got)
	}
	for _, bad := range [][3]float64{{0, 1.25, 100}, {1000, 1, 2000}, {1000, 1.25, 900}, {-5, 2, 10}} {
		if _, err := KneeRates(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("%v: got no error, want one", bad)
		}
	}
}

func TestKneeSummarise(t *testing.T) {
	r := &KneeReport{
		Config: KneeConfig{Rates: []float64{2000, 2500, 3130}, Start: 2000, Step: 1.25, Max: 3200,
			Rule: KneeRule{P99Factor: 4, P99FloorMS: 5}, Reps: 2},
		Peers: []Peer{{Name: Baseline}, {Name: Reference}, {Name: "x"}, {Name: "slow"}, {Name: "absent", Skipped: "not installed"}},
	}
	proxied := func(s Scenario, cpu float64, rssMiB uint64) Scenario {
		s.CPUA, s.CPUB, s.RSSA, s.RSSB = cpu, cpu, rssMiB<<20, rssMiB<<20
		return s
	}
	sat := func(s Scenario) Scenario { s.Late = s.Requests / 2; return s }
	for rep := 1; rep <= 2; rep++ {
		// Order as measured: rate by rate, the baseline first.
		r.Windows = append(r.Windows,
			win(Baseline, rep, 2000, 0.5),
			// HAProxy: 2 s CPU per proxy over 10 s at 2,000 rps = 0.1 vCPU/1k; 10,000 requests per CPU-second.
			proxied(win(Reference, rep, 2000, 1), 2, 10),
			// x: half HAProxy's CPU at 2,000; its p99 passes the bound at 2,500 in rep 1 only.
			proxied(win("x", rep, 2000, 1), 1, 12),
			win(Baseline, rep, 2500, 0.5),
			proxied(win(Reference, rep, 2500, 1.5), 2.5, 11),
			proxied(win("x", rep, 2500, map[int]float64{1: 3, 2: 6}[rep]), 1.25, 13),
			win(Baseline, rep, 3130, 0.6),
			proxied(sat(win(Reference, rep, 3130, 9)), 3, 11),
		)
		if rep == 1 {
			r.Windows = append(r.Windows, proxied(sat(win("x", rep, 3130, 9)), 1.5, 13))
		}
		r.Windows = append(r.Windows, proxied(sat(win("slow", rep, 2000, 20)), 4, 30)) // past its knee at once
	}
	r.Summarise()
	if got, want := len(r.Knees), 8; got != want {
		t.Fatalf("got %d knees, want %d: %+v", got, want, r.Knees)
	}
	if got, want := len(r.Rows), 4; got != want {
		t.Fatalf("got %d rows, want %d", got, want)
	}
	base, ref, x, slow := r.Rows[0], r.Rows[1], r.Rows[2], r.Rows[3]
	tests := []struct {
		name      string
		got, want float64
	}{
		{"direct reaches the top", base.Rate.Median, 3130},
		{"direct capped in both reps", float64(base.Capped), 2},
		{"haproxy knee", ref.Rate.Median, 2500},
		{"haproxy p99 at knee", ref.P99.Median, 1.5},
		{"haproxy cpu per 1k at knee", ref.CPUPer1k.Median, 0.1},
		{"haproxy requests per cpu second", ref.PerCPUSecond.Median, 10000},
		{"haproxy rss", ref.RSSMiB.Median, 11},
		{"x knee min (rep 2 stops at 2,500)", x.Rate.Min, 2000},
		{"x knee max", x.Rate.Max, 2500},
		{"x knee vs haproxy min", x.RateVsRef.Min, 0.8},
		{"x knee vs haproxy max", x.RateVsRef.Max, 1},
		{"x cpu vs haproxy", x.CPUvsRef.Median, 0.5},
		{"x per cpu second vs haproxy", x.PerCPUvsRef.Median, 2},
		{"x first p99", x.FirstP99.Median, 1},
		{"slow: no knee found", float64(slow.Found), 0},
		{"slow: no knee rate", float64(slow.Rate.N), 0},
		{"slow: no ratio", float64(slow.RateVsRef.N), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !near(tt.got, tt.want) {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
	if !strings.HasPrefix(x.Stops[1], "2500 rps: p99 6.00 ms > bound 5.00 ms") {
		t.Errorf("got stop %q for x in rep 2, want the p99 bound at 2500 rps", x.Stops[1])
	}

	var md, js bytes.Buffer
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| direct | ≥ 3130 (3130–3130) |", "| x | 2250 (2000–2500) | 0.90× |", "9.00 ⚠", "6.00 ↑", "**1.50**", "| slow | < 2000 | — |", "0 of 2", "not run: not installed"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	back, err := ReadKneeJSON(&js)
	if err != nil {
		t.Fatalf("JSON does not parse back: %v", err)
	}
	if got, want := len(back.Windows), len(r.Windows); got != want {
		t.Errorf("got %d windows after a JSON round trip, want %d", got, want)
	}
	if got, want := back.Rows[2].PerCPUvsRef.Median, 2.0; !near(got, want) {
		t.Errorf("got per-CPU ratio %v after a JSON round trip, want %v", got, want)
	}
}
