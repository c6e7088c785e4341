package chaos

import (
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"weft.dev/weft/examples/demo/quotes/quotespb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRegisterFlags(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"--fail-rate", "0.25", "--latency", "50ms", "--latency-jitter", "10ms"}); err != nil {
		t.Fatal(err)
	}
	got := c
	want := Config{FailRate: 0.25, Latency: 50 * time.Millisecond, Jitter: 10 * time.Millisecond}
	if got != want {
		t.Errorf("parsed config = %+v, want %+v", got, want)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"zero", Config{}, false},
		{"all", Config{FailRate: 1, Latency: time.Second, Jitter: time.Second}, false},
		{"rate above one", Config{FailRate: 1.5}, true},
		{"negative rate", Config{FailRate: -0.1}, true},
		{"negative latency", Config{Latency: -time.Millisecond}, true},
		{"negative jitter", Config{Jitter: -time.Millisecond}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if got := err != nil; got != tt.wantErr {
				t.Errorf("Validate() = %v, want error: %v", err, tt.wantErr)
			}
		})
	}
}

func TestDelayStopsWithContext(t *testing.T) {
	in := New(Config{Latency: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if got := in.Delay(ctx); !errors.Is(got, context.Canceled) {
		t.Errorf("Delay() = %v, want %v", got, context.Canceled)
	}
}

func TestDelayWaits(t *testing.T) {
	in := New(Config{Latency: 20 * time.Millisecond, Jitter: 5 * time.Millisecond})
	start := time.Now()
	if err := in.Delay(t.Context()); err != nil {
		t.Fatal(err)
	}
	// A lower bound only: a timer never fires early, however slow the machine.
	if got := time.Since(start); got < 20*time.Millisecond {
		t.Errorf("Delay() returned after %v, want at least 20ms", got)
	}
}

func TestHTTP(t *testing.T) {
	tests := []struct {
		name       string
		rate       float64
		path       string
		wantStatus int
	}{
		{"rate 0 never fails", 0, "/x", http.StatusOK},
		{"rate 1 always fails", 1, "/x", http.StatusInternalServerError},
		{"health is exempt", 1, "/healthz", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reached int
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				reached++
				io.WriteString(w, "ok")
			})
			srv := httptest.NewServer(New(Config{FailRate: tt.rate}).HTTP(next))
			defer srv.Close()
			const n = 20
			for range n {
				resp, err := srv.Client().Get(srv.URL + tt.path)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if got := resp.StatusCode; got != tt.wantStatus {
					t.Fatalf("GET %s status = %d, want %d", tt.path, got, tt.wantStatus)
				}
				if got, want := resp.Header.Get(Header) != "", tt.wantStatus != http.StatusOK; got != want {
					t.Errorf("header %s present = %v, want %v", Header, got, want)
				}
			}
			wantReached := 0
			if tt.wantStatus == http.StatusOK {
				wantReached = n
			}
			if reached != wantReached {
				t.Errorf("handler reached %d times, want %d", reached, wantReached)
			}
		})
	}
}

type stubQuotes struct {
	quotespb.UnimplementedQuotesServer
}

func (stubQuotes) GetQuote(context.Context, *quotespb.GetQuoteRequest) (*quotespb.Quote, error) {
	return &quotespb.Quote{Text: "t", Author: "a"}, nil
}

func (stubQuotes) StreamQuotes(req *quotespb.StreamQuotesRequest, s grpc.ServerStreamingServer[quotespb.Quote]) error {
	for range req.GetCount() {
		if err := s.Send(&quotespb.Quote{Text: "t", Author: "a"}); err != nil {
			return err
		}
	}
	return nil
}

func TestGRPC(t *testing.T) {
	tests := []struct {
		name     string
		rate     float64
		wantCode codes.Code
	}{
		{"rate 0 never fails", 0, codes.OK},
		{"rate 1 always fails", 1, codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := New(Config{FailRate: tt.rate})
			srv := grpc.NewServer(grpc.UnaryInterceptor(in.UnaryInterceptor()), grpc.StreamInterceptor(in.StreamInterceptor()))
			quotespb.RegisterQuotesServer(srv, stubQuotes{})
			healthpb.RegisterHealthServer(srv, health.NewServer())
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve(ln)
			defer srv.Stop()
			conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // hang guard
			defer cancel()
			client := quotespb.NewQuotesClient(conn)
			for range 20 {
				_, err := client.GetQuote(ctx, &quotespb.GetQuoteRequest{})
				if got := status.Code(err); got != tt.wantCode {
					t.Fatalf("GetQuote code = %v, want %v (%v)", got, tt.wantCode, err)
				}
				stream, err := client.StreamQuotes(ctx, &quotespb.StreamQuotesRequest{Count: 2})
				if err != nil {
					t.Fatal(err)
				}
				var n int
				for {
					_, err = stream.Recv()
					if err != nil {
						break
					}
					n++
				}
				if got := status.Code(err); err != io.EOF && got != tt.wantCode {
					t.Fatalf("StreamQuotes code = %v, want %v (%v)", got, tt.wantCode, err)
				}
				if tt.wantCode != codes.OK && (err == io.EOF || n != 0) {
					t.Fatalf("StreamQuotes got %d quotes and %v, want an UNAVAILABLE stream", n, err)
				}
				if tt.wantCode == codes.OK && n != 2 {
					t.Fatalf("StreamQuotes got %d quotes, want 2", n)
				}
			}
			// Health checks are never failed, so the workload stays ready.
			resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			if err != nil {
				t.Fatalf("health Check: %v", err)
			}
			if got, want := resp.GetStatus(), healthpb.HealthCheckResponse_SERVING; got != want {
				t.Errorf("health status = %v, want %v", got, want)
			}
		})
	}
}
