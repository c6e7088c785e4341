package peer

import (
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The cached Caddy binary is named after CaddyVersion, which must be the version the tools
// module builds.
func TestCaddyVersionMatchesToolsModule(t *testing.T) {
	b, err := os.ReadFile("../../tools/caddy/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if want := "github.com/caddyserver/caddy/v2 " + CaddyVersion; !strings.Contains(string(b), want) {
		t.Errorf("bench/tools/caddy/go.mod does not require %q", want)
	}
}

func TestSelect(t *testing.T) {
	tests := []struct {
		list    string
		want    []string
		wantErr bool
	}{
		{"haproxy,nginx", []string{"haproxy", "nginx"}, false},
		{"weft", []string{"weft (plaintext pair)", "weft (mTLS)"}, false},
		{"envoy", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.list, func(t *testing.T) {
			got, err := Select(tt.list)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error: %v", err, tt.wantErr)
			}
			var names []string
			for _, p := range got {
				names = append(names, p.Name())
			}
			if strings.Join(names, "|") != strings.Join(tt.want, "|") {
				t.Errorf("got %q, want %q", names, tt.want)
			}
		})
	}
}
