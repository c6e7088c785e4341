package proxyservices

import (
	"bytes"
	"strings"
	"testing"
)

func TestSample(t *testing.T) {
	text := strings.Join([]string{
		`# HELP weft_requests_total Requests received, by direction and service.`,
		`weft_requests_total{direction="outbound",service="svc-1.default",tls="false"} 1`,
		`weft_requests_total{direction="outbound",service="svc-10.default",tls="false"} 4`,
		`weft_requests_total{direction="outbound",service="svc-1.default",tls="true"} 2`,
		`weft_requests_total_other{direction="outbound",service="svc-1.default"} 100`,
		`go_goroutines 19`,
		`go_goroutines_x 7`,
	}, "\n")
	tests := []struct {
		name, labels string
		want         float64
	}{
		{"weft_requests_total", `direction="outbound",service="svc-1.default"`, 3},
		{"weft_requests_total", `service="svc-10.default"`, 4},
		{"weft_requests_total", "", 7},
		{"go_goroutines", "", 19},
		{"missing", "", 0},
	}
	for _, tt := range tests {
		if got := sample(text, tt.name, tt.labels); got != tt.want {
			t.Errorf("sample(%s, %s) = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
}

func TestAddressesAndBodies(t *testing.T) {
	seen := map[string]bool{}
	for i := range MaxServices {
		for _, a := range []string{ClusterIP(i).String(), EndpointIP(i).String()} {
			if seen[a] {
				t.Fatalf("service %d: address %s used twice", i, a)
			}
			seen[a] = true
		}
		if ClusterIP(i).String() == "198.19.255.254" {
			t.Fatalf("service %d has the cluster range interface's own address", i)
		}
	}
	if b := Body(7); len(b) != BodySize || !bytes.HasPrefix(b, []byte("svc-7 svc-7 ")) || bytes.Equal(b, Body(8)) {
		t.Errorf("Body(7) = %q…: want %d bytes naming the service", b[:16], BodySize)
	}
}
