package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/bench/internal/protocols"
)

// TestRenderFile renders stored results of every kind -render knows: an HTTP/1.1 run, a protocol
// run from before repetitions, and one with repetitions written as runProtocols writes it.
func TestRenderFile(t *testing.T) {
	dir := t.TempDir()
	res := &protocols.Result{
		Started: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC),
		Config:  protocols.Config{Rate: 1000, Conns: 16, Reps: 2},
		Windows: []*protocols.Window{
			{Peer: protocols.Direct, Protocol: protocols.HTTP2, Rep: 1, Rate: 1000, Achieved: 1000, Seconds: 10, P50: 0.1, P90: 0.2, P99: 1},
			{Peer: protocols.WeftMTLS, Protocol: protocols.HTTP2, Rep: 1, Rate: 1000, Achieved: 1000, Seconds: 10, P50: 0.5, P90: 0.6, P99: 2, CPUA: 1, CPUB: 1},
			{Peer: protocols.Direct, Protocol: protocols.HTTP2, Rep: 2, Rate: 1000, Achieved: 1000, Seconds: 10, P50: 0.2, P90: 0.3, P99: 1},
			{Peer: protocols.WeftMTLS, Protocol: protocols.HTTP2, Rep: 2, Rate: 1000, Achieved: 1000, Seconds: 10, P50: 0.8, P90: 0.9, P99: 4, CPUA: 2, CPUB: 2},
		},
	}
	if err := writeResults(dir, res.Started, "protocols", res, func(w io.Writer) error { return protocols.WriteMarkdown(w, res) }); err != nil {
		t.Fatal(err)
	}
	written, err := filepath.Glob(filepath.Join(dir, "*-protocols.json"))
	if err != nil || len(written) != 1 {
		t.Fatalf("got %v (%v), want one protocols JSON file", written, err)
	}
	balance := filepath.Join(dir, "balance.json")
	if err := os.WriteFile(balance, []byte(`{"windows": [{"name": "weft"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file string
		want       []string
		wantErr    string
	}{
		{"HTTP/1.1 run", "../../results/2026-11-26T012345Z.json", []string{"| pair | rate | Δp50 |", "| haproxy | 500 | 0.22 (0.19–0.28) |"}, ""},
		{"protocol run before repetitions", "../../results/2026-11-26T011028Z-protocols.json",
			[]string{"One window per path", "| http2 | haproxy | 1000 (1000) | 0 | 0.905 / 2.784 / 8.186 / 10.990 | 0.662 | 2.341 | 6.633 | 6.196 |"}, ""},
		{"protocol run with repetitions", written[0],
			[]string{"Run of 2026-11-26 12:00 UTC.", "2 repetition(s)", "| http2 | weft (mTLS) | 1000 (1000) | 0 | 0.650 / 0.750 / 3.000 / — | 0.500 (0.400–0.600) | 0.500 (0.400–0.600) | 2.000 (1.000–3.000) | — | 0.150 (0.100–0.200) |"}, ""},
		{"another kind of file", balance, nil, "neither an HTTP/1.1 run"},
		{"missing file", filepath.Join(dir, "absent.json"), nil, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			err := renderFile(&b, tt.file)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range tt.want {
				if !strings.Contains(b.String(), want) {
					t.Errorf("rendering lacks %q:\n%s", want, b.String())
				}
			}
		})
	}
}
