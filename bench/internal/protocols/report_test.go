package protocols

import (
	"strings"
	"testing"
)

func TestWriteMarkdown(t *testing.T) {
	ws := []*Window{
		{Peer: Direct, Protocol: GRPCUnary, Rate: 1000, Achieved: 1000, Seconds: 10, Requests: 10000, P50: 0.1, P99: 1},
		{Peer: "weft (mTLS)", Protocol: GRPCUnary, Rate: 1000, Achieved: 1000, Seconds: 10, Requests: 10000, P50: 0.4, P99: 1.5, CPUA: 2, CPUB: 1, RSSA: 20 << 20, RSSB: 10 << 20},
		{Peer: "weft (mTLS)", Protocol: TCPBulk, BytesReceived: 1 << 20, MBps: 300, Seconds: 0.5, CPUA: 0.25, CPUB: 0.5, RSSA: 16 << 20, RSSB: 16 << 20},
	}
	var b strings.Builder
	if err := WriteMarkdown(&b, ws); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want string
	}{
		{"direct row has no added latency", "| grpc-unary | direct | 1000 (1000) | 10000 | 0 | 0.100 / 0.000 / 1.000 / 0.000 | — | — | — |"},
		{"pair row adds over direct, CPU per 1,000 rps", "| +0.300 / +0.500 | 0.200 / 0.100 | 20.0 / 10.0 |"},
		{"bulk row", "| weft (mTLS) | 1048576 | 300 | 0.50 | 0.25 / 0.50 | 16.0 / 16.0 | 0 |"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := b.String(); !strings.Contains(got, tt.want) {
				t.Errorf("got\n%s\nwant a line containing %q", got, tt.want)
			}
		})
	}
}
