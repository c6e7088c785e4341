package outbound

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/proxy/balance"
)

// flakyHealth fails every odd call with UNAVAILABLE.
type flakyHealth struct {
	healthpb.UnimplementedHealthServer
	calls atomic.Int64
}

func (h *flakyHealth) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if h.calls.Add(1)%2 == 1 {
		return nil, status.Error(codes.Unavailable, "flaky")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func TestGRPCRetriesOnStatus(t *testing.T) {
	tests := []struct {
		name      string
		retryable bool
		wantOK    int
		wantCalls int64
	}{
		{"unavailable retried", true, 20, 40},
		{"not retried unless declared retryable", false, 10, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			h := &flakyHealth{}
			g := grpc.NewServer()
			healthpb.RegisterHealthServer(g, h)
			go g.Serve(ln)
			t.Cleanup(g.Stop)
			snap := withResilience(snapshot(1, &meshv1.Endpoint{Address: ln.Addr().String()}), &meshv1.Resilience{
				DefaultRetry: &meshv1.RetryPolicy{MaxAttempts: 3, Retryable: tt.retryable, OnGrpc: []uint32{14}, BackoffBaseMs: 1},
			})
			snap.Protocol = meshv1.Protocol_GRPC
			addr, _, _ := startOutbound(t, snap, balance.Config{})
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			client := healthpb.NewHealthClient(conn)
			ok := 0
			for range 20 {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
				cancel()
				if err == nil {
					ok++
				} else if status.Code(err) != codes.Unavailable {
					t.Fatalf("got %v, want OK or the backend's UNAVAILABLE", err)
				}
			}
			if ok != tt.wantOK || h.calls.Load() != tt.wantCalls {
				t.Errorf("%d of 20 calls OK after %d backend calls, want %d after %d", ok, h.calls.Load(), tt.wantOK, tt.wantCalls)
			}
		})
	}
}

func TestGRPCFaultAbortStatus(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	healthpb.RegisterHealthServer(g, &flakyHealth{})
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	snap := withResilience(snapshot(1, &meshv1.Endpoint{Address: ln.Addr().String()}), &meshv1.Resilience{
		DefaultFault: &meshv1.FaultInjection{AbortPercent: 100, AbortGrpcStatus: uint32(codes.ResourceExhausted), Name: "FaultInjection/demo/chaos"},
	})
	snap.Protocol = meshv1.Protocol_GRPC
	addr, _, _ := startOutbound(t, snap, balance.Config{})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if got := status.Convert(err); got.Code() != codes.ResourceExhausted || got.Message() != "fault injected by FaultInjection/demo/chaos" {
		t.Errorf("got %v, want RESOURCE_EXHAUSTED \"fault injected by FaultInjection/demo/chaos\"", err)
	}
}
