package serve

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestDefaultListen(t *testing.T) {
	tests := []struct {
		name string
		port string
		want string
	}{
		{"from PORT", "4321", "127.0.0.1:4321"},
		{"fallback", "", "127.0.0.1:8000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PORT", tt.port)
			if got := DefaultListen("8000"); got != tt.want {
				t.Errorf("DefaultListen() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEnvURL(t *testing.T) {
	t.Setenv("WEFT_API_ADDR", "127.0.0.1:5000")
	if got, want := EnvURL("WEFT_API_ADDR"), "http://127.0.0.1:5000"; got != want {
		t.Errorf("EnvURL() = %q, want %q", got, want)
	}
	t.Setenv("WEFT_API_ADDR", "")
	if got := EnvURL("WEFT_API_ADDR"); got != "" {
		t.Errorf("EnvURL() of unset variable = %q, want empty", got)
	}
}

// TestHTTPFinishesInFlight cancels the context while a request is being
// handled: the request still completes, and HTTP returns nil.
func TestHTTPFinishesInFlight(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "done")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- HTTP(ctx, slog.New(slog.DiscardHandler), srv, ln) }()

	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	go func() {
		resp, err := client.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{string(b), err}
	}()
	<-entered
	cancel()
	close(release)
	r := <-got
	if r.err != nil || r.body != "done" {
		t.Errorf("in-flight request = %q, %v; want %q, nil", r.body, r.err, "done")
	}
	if err := <-served; err != nil {
		t.Errorf("HTTP() = %v, want nil", err)
	}
}

func TestGRPCStops(t *testing.T) {
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- GRPC(ctx, slog.New(slog.DiscardHandler), srv, ln) }()

	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cctx, ccancel := context.WithTimeout(t.Context(), time.Minute) // hang guard
	defer ccancel()
	if _, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health Check: %v", err)
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("GRPC() = %v, want nil", err)
	}
}
