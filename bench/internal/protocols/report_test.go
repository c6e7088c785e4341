package protocols

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// repeated is three repetitions of gRPC unary and TCP bulk, direct, HAProxy and Weft's mTLS
// pair, with figures chosen so that every median, min and max is known.
func repeated() *Result {
	r := &Result{Config: Config{Rate: 1000, Conns: 16, Duration: 10 * time.Second, Reps: 3, BulkBytes: 1 << 30}, Versions: map[string]string{"haproxy": "2.6"}}
	for rep := 1; rep <= 3; rep++ {
		f := float64(rep)
		paced := func(peer string, p50, p99, cpuA, cpuB float64, rss uint64) *Window {
			return &Window{Peer: peer, Protocol: GRPCUnary, Rep: rep, Rate: 1000, Achieved: 1000, Seconds: 10, Requests: 10000,
				P50: p50, P90: p50 + 0.1, P99: p99, P999: 2 * p99, CPUA: cpuA, CPUB: cpuB, RSSA: rss, RSSB: 2 * rss, ForeignVCPU: 0.1 * f}
		}
		bulk := func(peer string, mbps, cpu float64) *Window {
			return &Window{Peer: peer, Protocol: TCPBulk, Rep: rep, Requests: 1, BytesSent: 1e9, BytesReceived: 1e9,
				MBps: mbps, Seconds: 1000 / mbps, CPUA: cpu, CPUB: cpu, RSSA: 8 << 20, RSSB: 8 << 20, ForeignVCPU: 0.1 * f}
		}
		// The direct baseline moves with the repetition: added latency must follow it.
		// HAProxy adds 0.2 ms at p50 and 0.5·rep ms at p99 with 1 s CPU per proxy (0.1 vCPU/1k);
		// Weft adds 0.4 ms at p50 and 1 ms at p99 with rep s CPU per proxy (Weft ÷ HAProxy CPU:
		// 1, 2, 3). Bulk: HAProxy 200·rep MB/s with 1 s CPU per proxy per GB, Weft 300 MB/s with 2.
		r.Windows = append(r.Windows,
			paced(Direct, 0.1*f, f, 0, 0, 0),
			paced("haproxy", 0.1*f+0.2, f+0.5*f, 1, 1, uint64(10+rep)<<20),
			paced(WeftMTLS, 0.1*f+0.4, f+1, f, f, 20<<20),
			bulk(Direct, 1000, 0),
			bulk("haproxy", 200*f, 1),
			bulk(WeftMTLS, 300, 2),
		)
	}
	return r
}

func TestSummariseRepetitions(t *testing.T) {
	r := repeated()
	r.Summarise()
	rows := map[string]Row{}
	for _, row := range r.Rows {
		rows[row.Protocol+"/"+row.Peer] = row
	}
	if got, want := len(r.Rows), 6; got != want {
		t.Fatalf("got %d rows, want %d", got, want)
	}
	if got := r.Rows[0].Protocol + "/" + r.Rows[0].Peer; got != GRPCUnary+"/"+Direct {
		t.Errorf("first row is %s, want the direct gRPC row", got)
	}
	hap, weft, direct := rows[GRPCUnary+"/haproxy"], rows[GRPCUnary+"/"+WeftMTLS], rows[GRPCUnary+"/"+Direct]
	bh, bw := rows[TCPBulk+"/haproxy"], rows[TCPBulk+"/"+WeftMTLS]
	tests := []struct {
		name      string
		got, want float64
	}{
		{"windows per row", float64(hap.Windows), 3},
		{"direct p99 absolute median", direct.P99.Median, 2},
		{"direct has no added latency", float64(direct.AddedP99.N), 0},
		{"haproxy added p50 against the same repetition's direct", hap.AddedP50.Median, 0.2},
		{"haproxy added p50 min", hap.AddedP50.Min, 0.2},
		{"haproxy added p90", hap.AddedP90.Max, 0.2},
		{"haproxy added p99 median", hap.AddedP99.Median, 1},
		{"haproxy added p99 min", hap.AddedP99.Min, 0.5},
		{"haproxy added p99 max", hap.AddedP99.Max, 1.5},
		{"haproxy CPU per proxy per 1k", hap.CPUPer1k.Median, 0.1},
		{"haproxy RSS A median (MiB)", hap.RSSA.Median, 12},
		{"haproxy RSS A min", hap.RSSA.Min, 11},
		{"haproxy RSS B max", hap.RSSB.Max, 26},
		{"weft CPU per 1k median", weft.CPUPer1k.Median, 0.2},
		{"weft ÷ haproxy CPU: median of 1, 2, 3", hap.WeftCPU.Median, 2},
		{"weft ÷ haproxy CPU min", hap.WeftCPU.Min, 1},
		{"weft ÷ haproxy CPU max", hap.WeftCPU.Max, 3},
		// Weft adds 1 ms at p99 every time, HAProxy 0.5, 1, 1.5: ratios 2, 1, 0.667.
		{"weft ÷ haproxy added p99: median of the ratios", hap.WeftP99.Median, 1},
		{"weft ÷ haproxy added p99 max", hap.WeftP99.Max, 2},
		{"weft row has no ratio to itself", float64(weft.WeftCPU.N), 0},
		{"bulk MB/s median", bh.MBps.Median, 400},
		{"bulk MB/s min", bh.MBps.Min, 200},
		{"bulk CPU per GB", bh.CPUPerGB.Median, 1},
		{"weft ÷ haproxy MB/s: median of 1.5, 0.75, 0.5", bh.WeftMBps.Median, 0.75},
		{"weft ÷ haproxy CPU per GB", bh.WeftCPUPerGB.Median, 2},
		{"weft bulk CPU per GB A", bw.CPUPerGBA.Median, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !near(tt.got, tt.want) {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func TestSummariseMissingDirect(t *testing.T) {
	r := repeated()
	// Drop the second repetition's direct gRPC window: HAProxy's added latency then has two values.
	for i, w := range r.Windows {
		if w.Peer == Direct && w.Protocol == GRPCUnary && w.Rep == 2 {
			r.Windows = append(r.Windows[:i], r.Windows[i+1:]...)
			break
		}
	}
	r.Summarise()
	for _, row := range r.Rows {
		if row.Protocol == GRPCUnary && row.Peer == "haproxy" {
			if row.AddedP99.N != 2 || !near(row.AddedP99.Median, 1) || row.CPUPer1k.N != 3 {
				t.Errorf("got added p99 %+v and CPU %+v, want 2 added values (median 1) and 3 CPU values", row.AddedP99, row.CPUPer1k)
			}
		}
	}
}

func TestSummariseTinyAddedP99(t *testing.T) {
	r := repeated()
	for _, w := range r.Windows {
		if w.Peer == "haproxy" && w.Protocol == GRPCUnary && w.Rep == 1 {
			w.P99 = 1.01 // 0.01 ms over direct: no latency ratio from this repetition
		}
	}
	r.Summarise()
	for _, row := range r.Rows {
		if row.Protocol == GRPCUnary && row.Peer == "haproxy" {
			// Left: repetitions 2 and 3, Weft's 1 ms over HAProxy's 1 and 1.5.
			if row.WeftP99.N != 2 || !near(row.WeftP99.Median, (1+1/1.5)/2) {
				t.Errorf("got Weft ÷ HAProxy added p99 %+v, want the median of 1 and 0.667 only", row.WeftP99)
			}
		}
	}
}

func TestWriteMarkdownRepetitions(t *testing.T) {
	r := repeated()
	r.Skipped = []Skip{{Protocol: HTTP2, Peer: "nginx", Why: SkipUnsupported, Reason: "no HTTP/2 upstream"}}
	var b strings.Builder
	if err := WriteMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"10s per window after 0s warm-up; TCP bulk: 1024 MiB echoed through one connection. 3 repetition(s)",
		"median 0.20 vCPU (0.10–0.30)",
		"| grpc-unary | direct | 1000 (1000) | 0 | 0.200 / 0.300 / 2.000 / 4.000 | — | — | — | — | — | — | — | — | — |",
		"| grpc-unary | haproxy | 1000 (1000) | 0 | 0.400 / 0.500 / 3.000 / 6.000 | 0.200 (0.200–0.200) | 0.200 (0.200–0.200) | 1.000 (0.500–1.500) | 2.000 (1.000–3.000) | 0.100 (0.100–0.100) | 0.100 / 0.100 | 12.0 (11.0–13.0) / 24.0 (22.0–26.0) | 2.00× (1.00–3.00) | 1.00× (0.67–2.00) |",
		"| haproxy | 400 (200–600) | 2.50 (1.67–5.00) | 1.00 (1.00–1.00) | 1.00 / 1.00 | 8.0 (8.0–8.0) / 8.0 (8.0–8.0) | 0.75× (0.50–1.50) | 2.00× (2.00–2.00) | 0 |",
		"| http2 | nginx | unsupported: no HTTP/2 upstream |",
		"Versions: haproxy: 2.6.",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, b.String())
		}
	}
}

func TestWriteMarkdownPartialPath(t *testing.T) {
	r := repeated()
	var kept []*Window
	for _, w := range r.Windows {
		if w.Peer != "haproxy" || w.Rep == 1 { // HAProxy failed from repetition 2 on
			kept = append(kept, w)
		}
	}
	r.Windows = kept
	var b strings.Builder
	if err := WriteMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	if want := "| grpc-unary | haproxy (1 of 3 repetitions) |"; !strings.Contains(b.String(), want) {
		t.Errorf("markdown lacks %q:\n%s", want, b.String())
	}
}

// TestReadJSONBeforeRepetitions renders a stored run from before repetitions (one window per
// path, no "rep"): every figure is that window's, as the table written with it showed.
func TestReadJSONBeforeRepetitions(t *testing.T) {
	f, err := os.Open("../../results/2026-11-26T011028Z-protocols.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := ReadJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := WriteMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"One window per path (a run from before repetitions).",
		// The figures of bench/results/2026-11-26T011028Z-protocols.md.
		"| http2 | haproxy | 1000 (1000) | 0 | 0.905 / 2.784 / 8.186 / 10.990 | 0.662 | 2.341 | 6.633 | 6.196 | 0.198 | 0.205 / 0.192 | 15.7 / 20.5 | 1.64× | 1.39× |",
		"| grpc-stream | weft (mTLS) | 1000 (1000) | 0 | 0.505 / 0.834 / 2.866 / 6.025 | 0.405 | 0.574 | 1.980 | 3.632 | 0.200 | 0.223 / 0.177 | 17.7 / 15.7 | — | — |",
		"| haproxy | 189 | 1.42 | 3.54 | 3.24 / 3.84 | 15.5 / 20.1 | 1.51× | 0.67× | 0 |",
		"| tcp-bulk | caddy | unsupported:",
		"weft (mTLS): weft-proxy at 3773751.",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "outside the benchmark") {
		t.Errorf("a run from before repetitions did not record other processes' CPU; the markdown claims it did:\n%s", b.String())
	}
}

// TestJSONRoundTrip writes a run with repetitions as the command does and reads it back.
func TestJSONRoundTrip(t *testing.T) {
	r := repeated()
	r.Summarise()
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatalf("encode (ranges without values must not break it): %v", err)
	}
	back, err := ReadJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(back.Windows), len(r.Windows); got != want {
		t.Errorf("got %d windows back, want every one of %d", got, want)
	}
	var a, b strings.Builder
	if err := WriteMarkdown(&a, r); err != nil {
		t.Fatal(err)
	}
	if err := WriteMarkdown(&b, back); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Errorf("markdown differs after a JSON round trip:\n%s\nvs\n%s", a.String(), b.String())
	}
	if _, err := ReadJSON(strings.NewReader(`{"windows": []}`)); err == nil {
		t.Error("a file without windows was accepted")
	}
}
