package ports

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	l, err := Parse("--opaque-ports", " 3306, 6000-6002 ,4191")
	if err != nil {
		t.Fatal(err)
	}
	if got := l.String(); got != "3306,6000-6002,4191" {
		t.Errorf("String %q", got)
	}
	for p, want := range map[uint16]bool{3306: true, 6000: true, 6001: true, 6002: true, 6003: false, 4191: true, 80: false} {
		if l.Contains(p) != want {
			t.Errorf("Contains(%d) = %v", p, !want)
		}
	}
	if l, err := Parse("--x", ""); err != nil || l != nil {
		t.Errorf("empty: %v %v", l, err)
	}
}

func TestParseErrors(t *testing.T) {
	for in, want := range map[string]string{
		"80,":       "empty item",
		"http":      `"http" is not a port`,
		"0":         `"0" is not a port`,
		"70000":     `"70000" is not a port`,
		"9092-9090": "ends before it starts",
		"1-x":       `"x" is not a port`,
	} {
		_, err := Parse("--skip-inbound-ports", in)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "--skip-inbound-ports") {
			t.Errorf("%q: got %v, want an error naming the flag and %q", in, err, want)
		}
	}
}
