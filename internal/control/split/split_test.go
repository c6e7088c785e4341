package split

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		ts   TrafficSplit
		want string
	}{
		{"valid", TrafficSplit{Service: "web", Backends: []Backend{{"web-v1", 1}, {"web-v2", 0}}}, ""},
		{"no service", TrafficSplit{Backends: []Backend{{"a", 1}}}, "spec.service: required"},
		{"no backends", TrafficSplit{Service: "web"}, "spec.backends: at least one backend is required"},
		{"all zero", TrafficSplit{Service: "web", Backends: []Backend{{"a", 0}, {"b", 0}}}, "spec.backends: all weights are 0"},
		{"duplicate", TrafficSplit{Service: "web", Backends: []Backend{{"a", 1}, {"a", 1}}}, `spec.backends[1].service: duplicate backend "a" (also spec.backends[0])`},
		{"empty backend service", TrafficSplit{Service: "web", Backends: []Backend{{"", 1}}}, "spec.backends[0].service: required"},
		{"uppercase", TrafficSplit{Service: "Web", Backends: []Backend{{"a", 1}}}, `spec.service: "Web" is not a valid service name`},
		{"too long", TrafficSplit{Service: "web", Backends: []Backend{{strings.Repeat("a", 64), 1}}}, "spec.backends[0].service: \"" + strings.Repeat("a", 64) + "\" is longer than 63 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fmt.Sprint(errors.Join(tt.ts.Validate()...))
			if tt.want == "" && got != "<nil>" {
				t.Fatalf("got %s, want no error", got)
			}
			if !strings.Contains(got, tt.want) {
				t.Fatalf("got %s, want it to contain %q", got, tt.want)
			}
		})
	}
}
