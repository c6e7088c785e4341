// Package propagate copies request-scoped tracing headers (W3C traceparent
// and tracestate, B3, x-request-id) from a request a demo program received
// to the requests it makes, HTTP or gRPC, so that the mesh's proxies can join
// the spans of one user request. Applications in a mesh must do this
// themselves: a proxy cannot tell which outgoing call belongs to which
// incoming one.
//
// Only the demo programs under examples/demo may import it. Its functions
// are safe to call concurrently.
package propagate

import (
	"context"
	"net/http"
	"strings"

	"google.golang.org/grpc/metadata"
)

// Headers are the headers propagated, in canonical form.
var Headers = []string{
	"Traceparent", "Tracestate",
	"B3", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid", "X-B3-Sampled", "X-B3-Flags",
	"X-Request-Id",
}

// HTTP copies the tracing headers of from into to.
func HTTP(to, from http.Header) {
	for _, h := range Headers {
		if v := from.Values(h); len(v) > 0 {
			to[h] = append([]string(nil), v...)
		}
	}
}

// GRPC returns ctx with the tracing headers of from added to its outgoing
// gRPC metadata.
func GRPC(ctx context.Context, from http.Header) context.Context {
	var kv []string
	for _, h := range Headers {
		for _, v := range from.Values(h) {
			kv = append(kv, strings.ToLower(h), v)
		}
	}
	if len(kv) == 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}
