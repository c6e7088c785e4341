package report

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestSummarise(t *testing.T) {
	r := &Report{
		Config: Config{Rates: []float64{1000}, Reps: 3},
		Peers:  []Peer{{Name: Baseline}, {Name: Reference}, {Name: "x"}, {Name: "absent", Skipped: "not installed"}},
	}
	for rep := 1; rep <= 3; rep++ {
		f := float64(rep)
		r.Scenarios = append(r.Scenarios,
			Scenario{Peer: Baseline, Rate: 1000, Rep: rep, Achieved: 1000, Window: 10, P50: 0.1 * f, P99: 1 * f},
			// HAProxy: +0.2 ms p50, +0.5 ms p99, 1 s CPU per proxy over 10 s at 1k rps = 0.1 vCPU/1k.
			Scenario{Peer: Reference, Rate: 1000, Rep: rep, Achieved: 1000, Window: 10, P50: 0.1*f + 0.2, P99: f + 0.5,
				CPUA: 1, CPUB: 1, RSSA: 10 << 20, RSSB: 12 << 20, HWMA: 11 << 20, HWMB: 13 << 20},
			// x: twice HAProxy's CPU, p99 added 0.25*rep.
			Scenario{Peer: "x", Rate: 1000, Rep: rep, Achieved: 1000, Window: 10, P50: 0.1*f + 0.3, P99: f + 0.25*f,
				CPUA: 2, CPUB: 2, RSSA: 20 << 20, RSSB: 20 << 20, Errors: 1},
		)
	}
	r.Summarise()
	if got, want := len(r.Rows), 3; got != want {
		t.Fatalf("got %d rows, want %d", got, want)
	}
	tests := []struct {
		name      string
		got, want float64
	}{
		{"baseline p99 median is absolute", r.Rows[0].AddedP99.Median, 2},
		{"haproxy added p50", r.Rows[1].AddedP50.Median, 0.2},
		{"haproxy added p99 min", r.Rows[1].AddedP99.Min, 0.5},
		{"haproxy cpu per proxy per 1k", r.Rows[1].CPUPer1k.Median, 0.1},
		{"haproxy rss MiB", r.Rows[1].RSSLoadMiB.Median, 11},
		{"x added p99 median", r.Rows[2].AddedP99.Median, 0.5},
		{"x added p99 max", r.Rows[2].AddedP99.Max, 0.75},
		{"x cpu vs haproxy", r.Rows[2].CPUvsRef.Median, 2},
		{"x p99 vs haproxy (ratio of medians)", r.Rows[2].P99vsRef.Median, 1},
		{"x errors", float64(r.Rows[2].Errors), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !near(tt.got, tt.want) {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}

	var md, js bytes.Buffer
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| x | 1000 | 0.30 (0.30–0.30) |", "2.00×", "→ 11.0 (peak 12.0)", "not run: not installed"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	back, err := ReadJSON(&js)
	if err != nil {
		t.Fatalf("JSON does not parse back: %v", err)
	}
	if got, want := len(back.Scenarios), 9; got != want {
		t.Errorf("got %d scenarios in JSON, want %d", got, want)
	}
	if got, want := back.Rows[2].CPUvsRef.Median, 2.0; !near(got, want) {
		t.Errorf("got CPU ratio %v after a JSON round trip, want %v", got, want)
	}
}

func TestSaturated(t *testing.T) {
	tests := []struct {
		name string
		s    Scenario
		want bool
	}{
		{"on schedule", Scenario{Rate: 1000, Achieved: 999, Requests: 10000, Late: 10}, false},
		{"rate not reached", Scenario{Rate: 1000, Achieved: 900, Requests: 9000}, true},
		{"many late", Scenario{Rate: 1000, Achieved: 1000, Requests: 10000, Late: 600}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.Saturated(); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
