package protocols

import (
	"strings"
	"testing"
)

func TestWriteMarkdown(t *testing.T) {
	r := &Result{
		Windows: []*Window{
			{Peer: Direct, Protocol: GRPCUnary, Rate: 1000, Achieved: 1000, Seconds: 10, Requests: 10000, P50: 0.1, P90: 0.2, P99: 1},
			{Peer: "haproxy", Protocol: GRPCUnary, Rate: 1000, Achieved: 1000, Seconds: 10, Requests: 10000, P50: 0.3, P90: 0.4, P99: 1.25, CPUA: 1, CPUB: 1, RSSA: 16 << 20, RSSB: 16 << 20},
			{Peer: WeftMTLS, Protocol: GRPCUnary, Rate: 1000, Achieved: 1000, Seconds: 10, Requests: 10000, P50: 0.4, P90: 0.6, P99: 1.5, CPUA: 2, CPUB: 1, RSSA: 20 << 20, RSSB: 10 << 20},
			{Peer: "haproxy", Protocol: TCPBulk, BytesReceived: 1e9, MBps: 600, Seconds: 0.5, CPUA: 0.5, CPUB: 0.5, RSSA: 16 << 20, RSSB: 16 << 20},
			{Peer: WeftMTLS, Protocol: TCPBulk, BytesReceived: 1e9, MBps: 300, Seconds: 0.5, CPUA: 0.25, CPUB: 0.5, RSSA: 16 << 20, RSSB: 16 << 20},
		},
		Skipped:  []Skip{{Protocol: HTTP2, Peer: "nginx", Why: SkipUnsupported, Reason: "no HTTP/2 upstream"}},
		Versions: map[string]string{"haproxy": "2.6", WeftMTLS: "abc"},
	}
	var b strings.Builder
	if err := WriteMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want string
	}{
		{"direct row has no added latency", "| grpc-unary | direct | 1000 (1000) | 0 | 0.100 / 0.200 / 1.000 | — | — | — | — | — |"},
		{"peer row adds over direct, CPU per 1,000 rps, Weft's ratios", "| grpc-unary | haproxy | 1000 (1000) | 0 | 0.300 / 0.400 / 1.250 | +0.200 / +0.200 / +0.250 | 0.100 (0.100 / 0.100) | 16.0 / 16.0 | 1.50× | 2.00× |"},
		{"weft row has no ratio", "| +0.300 / +0.400 / +0.500 | 0.150 (0.200 / 0.100) | 20.0 / 10.0 | — | — |"},
		{"bulk peer row with ratios", "| haproxy | 600 | 0.50 | 0.50 (0.50 / 0.50) | 16.0 / 16.0 | 0.50× | 0.75× | 0 |"},
		{"skipped pair with its reason", "| http2 | nginx | unsupported: no HTTP/2 upstream |"},
		{"versions", "Versions: haproxy: 2.6; weft (mTLS): abc."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := b.String(); !strings.Contains(got, tt.want) {
				t.Errorf("got\n%s\nwant a line containing %q", got, tt.want)
			}
		})
	}
}
