package http1

import "testing"

func TestSetPath(t *testing.T) {
	tests := []struct {
		method, target, path string
		wantTarget           string
	}{
		{"GET", "//admin?x=1", "/admin", "/admin?x=1"},
		{"GET", "/a/../b", "/b", "/b"},
		{"GET", "http://api:80//x?q", "/x", "http://api:80/x?q"},
		{"GET", "http://api:80?q", "/", "http://api:80/?q"},
		{"OPTIONS", "*", "/x", "*"},
		{"CONNECT", "api:443", "/x", "api:443"},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			h := &RequestHead{method: tt.method, target: tt.target}
			h.SetPath(tt.path)
			if got := h.Target(); got != tt.wantTarget {
				t.Errorf("Target() = %q, want %q", got, tt.wantTarget)
			}
		})
	}
}
