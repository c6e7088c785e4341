package propagate

import (
	"net/http"
	"slices"
	"testing"

	"google.golang.org/grpc/metadata"
)

func TestHTTP(t *testing.T) {
	from := http.Header{}
	from.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	from.Set("X-B3-Sampled", "1")
	from.Set("Authorization", "secret")
	to := http.Header{}
	HTTP(to, from)
	tests := []struct {
		header string
		want   string
	}{
		{"Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		{"X-B3-Sampled", "1"},
		{"Authorization", ""},
		{"Tracestate", ""},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			if got := to.Get(tt.header); got != tt.want {
				t.Errorf("%s = %q, want %q", tt.header, got, tt.want)
			}
		})
	}
}

func TestGRPC(t *testing.T) {
	from := http.Header{}
	from.Set("X-Request-Id", "abc")
	from.Set("Cookie", "c")
	md, _ := metadata.FromOutgoingContext(GRPC(t.Context(), from))
	if got, want := md.Get("x-request-id"), []string{"abc"}; !slices.Equal(got, want) {
		t.Errorf("x-request-id = %q, want %q", got, want)
	}
	if got := md.Get("cookie"); len(got) != 0 {
		t.Errorf("cookie = %q, want nothing", got)
	}
	if got := GRPC(t.Context(), http.Header{}); got != t.Context() {
		t.Error("GRPC with no tracing headers changed the context")
	}
}
