package quotes

import (
	"context"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"weft.dev/weft/examples/demo/internal/chaos"
	"weft.dev/weft/examples/demo/quotes/quotespb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// start serves a quotes server on loopback and returns a connection to it.
func start(t *testing.T, ctx context.Context, cfg chaos.Config) *grpc.ClientConn {
	t.Helper()
	srv := NewGRPCServer(ctx, chaos.New(cfg))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func hangGuard(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestGetQuote(t *testing.T) {
	client := quotespb.NewQuotesClient(start(t, t.Context(), chaos.Config{}))
	tests := []struct {
		name     string
		topic    string
		wantCode codes.Code
		wantIn   []*quotespb.Quote
	}{
		{"any topic", "", codes.OK, all},
		{"known topic", "failure", codes.OK, catalogue["failure"]},
		{"topic case is ignored", "Code", codes.OK, catalogue["code"]},
		{"unknown topic", "cooking", codes.NotFound, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := client.GetQuote(hangGuard(t), &quotespb.GetQuoteRequest{Topic: tt.topic})
			if code := status.Code(err); code != tt.wantCode {
				t.Fatalf("GetQuote(%q) code = %v (%v), want %v", tt.topic, code, err, tt.wantCode)
			}
			if tt.wantCode != codes.OK {
				return
			}
			if got.GetText() == "" || got.GetAuthor() == "" {
				t.Fatalf("GetQuote(%q) = %v, want text and author", tt.topic, got)
			}
			if !slices.ContainsFunc(tt.wantIn, func(q *quotespb.Quote) bool { return q.GetText() == got.GetText() }) {
				t.Errorf("GetQuote(%q) = %q, not a quote of that topic", tt.topic, got.GetText())
			}
		})
	}
}

func TestStreamQuotes(t *testing.T) {
	client := quotespb.NewQuotesClient(start(t, t.Context(), chaos.Config{}))
	tests := []struct {
		name     string
		count    uint32
		wantN    int
		wantCode codes.Code
	}{
		{"default count", 0, DefaultStream, codes.OK},
		{"one", 1, 1, codes.OK},
		{"maximum", MaxStream, MaxStream, codes.OK},
		{"too many", MaxStream + 1, 0, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream, err := client.StreamQuotes(hangGuard(t), &quotespb.StreamQuotesRequest{Count: tt.count})
			if err != nil {
				t.Fatal(err)
			}
			var n int
			for {
				q, err := stream.Recv()
				if err == io.EOF {
					err = nil
				}
				if err != nil || q == nil {
					if code := status.Code(err); code != tt.wantCode {
						t.Fatalf("stream ended with %v, want code %v", err, tt.wantCode)
					}
					break
				}
				if q.GetText() == "" {
					t.Errorf("quote %d has no text", n)
				}
				n++
			}
			if n != tt.wantN {
				t.Errorf("got %d quotes, want %d", n, tt.wantN)
			}
		})
	}
}

func TestHealthDrains(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	health := healthpb.NewHealthClient(start(t, ctx, chaos.Config{FailRate: 1}))
	check := func() healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		resp, err := health.Check(hangGuard(t), &healthpb.HealthCheckRequest{Service: ServiceName})
		if err != nil {
			t.Fatalf("health Check: %v", err)
		}
		return resp.GetStatus()
	}
	if got, want := check(), healthpb.HealthCheckResponse_SERVING; got != want {
		t.Errorf("status while running = %v, want %v", got, want)
	}
	cancel()
	// AfterFunc runs on its own goroutine: poll until it has (hang guard only).
	deadline := time.Now().Add(time.Minute)
	for check() != healthpb.HealthCheckResponse_NOT_SERVING {
		if time.Now().After(deadline) {
			t.Fatal("health still SERVING a minute after shutdown began")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
