package quotes

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"weft.dev/weft/examples/demo/internal/chaos"
	"weft.dev/weft/examples/demo/quotes/quotespb"
)

// ServiceName is the full gRPC name of the quotes service, also used as its
// name in the standard health service.
const ServiceName = "demo.quotes.v1.Quotes"

// NewGRPCServer returns a gRPC server carrying the quotes service, with inj's
// failures and latency, and the standard grpc.health.v1 service, which
// reports SERVING for "" and ServiceName until ctx ends, then NOT_SERVING so
// that health checks see the server drain.
func NewGRPCServer(ctx context.Context, inj *chaos.Injector) *grpc.Server {
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(inj.UnaryInterceptor()),
		grpc.StreamInterceptor(inj.StreamInterceptor()),
	)
	quotespb.RegisterQuotesServer(srv, NewServer())
	hs := health.NewServer()
	hs.SetServingStatus(ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	context.AfterFunc(ctx, hs.Shutdown)
	return srv
}
