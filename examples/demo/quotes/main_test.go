package main

import (
	"context"
	"io"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"weft.dev/weft/examples/demo/internal/chaos"
	"weft.dev/weft/examples/demo/internal/runtest"
	"weft.dev/weft/examples/demo/quotes/quotespb"
)

func TestMain(m *testing.M) {
	runtest.Main(main)
	goleak.VerifyTestMain(m)
}

func TestParseFlags(t *testing.T) {
	t.Setenv("PORT", "7001")
	tests := []struct {
		name    string
		args    []string
		want    config
		wantErr bool
	}{
		{"defaults", nil, config{listen: "127.0.0.1:7001"}, false},
		{"all", []string{"--listen", "127.0.0.1:1", "--fail-rate", "0.5", "--latency", "5ms"},
			config{listen: "127.0.0.1:1", chaos: chaos.Config{FailRate: 0.5, Latency: 5 * time.Millisecond}}, false},
		{"bad rate", []string{"--fail-rate", "2"}, config{}, true},
		{"stray argument", []string{"extra"}, config{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFlags(tt.args, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseFlags(%q) error = %v, want error: %v", tt.args, err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("parseFlags(%q) = %+v, want %+v", tt.args, got, tt.want)
			}
		})
	}
}

// TestProgram runs the program as a user would: it serves quotes and health
// on the logged address and exits 0 on SIGTERM.
func TestProgram(t *testing.T) {
	p := runtest.Start(t, nil, "--listen", "127.0.0.1:0")
	conn, err := grpc.NewClient(p.Addr(t), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // hang guard
	defer cancel()
	q, err := quotespb.NewQuotesClient(conn).GetQuote(ctx, &quotespb.GetQuoteRequest{Topic: "failure"})
	if err != nil || q.GetText() == "" {
		t.Fatalf("GetQuote = %v, %v; want a quote", q, err)
	}
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health Check = %v, %v; want SERVING", h, err)
	}
	if got := p.Stop(t); got != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0; log:\n%s", got, p.Log())
	}
}

func TestProgramFailRate(t *testing.T) {
	p := runtest.Start(t, nil, "--listen", "127.0.0.1:0", "--fail-rate", "1")
	conn, err := grpc.NewClient(p.Addr(t), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // hang guard
	defer cancel()
	_, err = quotespb.NewQuotesClient(conn).GetQuote(ctx, &quotespb.GetQuoteRequest{})
	if got, want := status.Code(err), codes.Unavailable; got != want {
		t.Errorf("GetQuote code = %v, want %v", got, want)
	}
	if got := p.Stop(t); got != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", got)
	}
}

func TestProgramBadFlag(t *testing.T) {
	p := runtest.Start(t, nil, "--fail-rate", "-1")
	if got, want := p.Wait(t), 2; got != want {
		t.Errorf("exit code = %d, want %d; log:\n%s", got, want, p.Log())
	}
}
