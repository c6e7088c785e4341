package policy

import (
	"testing"

	"weft.dev/weft/internal/config"
)

func TestServerSelects(t *testing.T) {
	api := &config.Proxy{Service: "api", Namespace: "default", Version: "v2"}
	tests := []struct {
		name     string
		s        Server
		ns       string
		port     uint32
		wantWL   bool
		wantPort bool
	}{
		{"service", Server{Service: "api"}, "default", 80, true, true},
		{"service other namespace", Server{Service: "api"}, "shop", 80, false, true},
		{"other service", Server{Service: "web"}, "default", 80, false, true},
		{"labels", Server{MatchLabels: map[string]string{"app": "api", "version": "v2"}}, "default", 80, true, true},
		{"labels mismatch", Server{MatchLabels: map[string]string{"app": "api", "version": "v1"}}, "default", 80, false, true},
		{"unknown label", Server{MatchLabels: map[string]string{"tier": "backend"}}, "default", 80, false, true},
		{"selects nothing", Server{}, "default", 80, false, true},
		{"port", Server{Service: "api", Port: 8080}, "default", 80, true, false},
		{"port matches", Server{Service: "api", Port: 8080}, "default", 8080, true, true},
		{"named port", Server{Service: "api", PortName: "http"}, "default", 8080, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.SelectsWorkload(tt.ns, api); got != tt.wantWL {
				t.Errorf("SelectsWorkload = %v, want %v", got, tt.wantWL)
			}
			if got := tt.s.SelectsPort(tt.port); got != tt.wantPort {
				t.Errorf("SelectsPort = %v, want %v", got, tt.wantPort)
			}
		})
	}
}
