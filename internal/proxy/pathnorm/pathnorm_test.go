package pathnorm

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"/", "/"},
		{"/admin", "/admin"},
		{"//admin", "/admin"},
		{"///admin//x", "/admin/x"},
		{"/a/../admin", "/admin"},
		{"/../admin", "/admin"},
		{"/%2e%2e/admin", "/admin"},
		{"/%2E%2E/admin", "/admin"},
		{"/public/%2e%2e/%2e%2e/admin", "/admin"},
		{"/a/./b", "/a/b"},
		{"/a/.", "/a/"},
		{"/a/b/..", "/a/"},
		{"/a/", "/a/"},
		{"/a//", "/a/"},
		{"/..", "/"},
		{"/.", "/"},
		{"/ADMIN", "/ADMIN"},
		{"/admin;x", "/admin;x"},
		{"/%61dmin", "/admin"},
		{"/a%7Eb", "/a~b"},
		{"/%252F", "/%252F"},
		{"/%25", "/%25"},
		{"/a%3fb", "/a%3Fb"},
		{"/a%20b", "/a%20b"},
		{"/caf\xc3\xa9", "/caf%C3%A9"},
		{"/...", "/..."},
		{"/a/..b", "/a/..b"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Normalize(tt.in)
			if err != nil {
				t.Fatalf("Normalize(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestNormalizeRefuses(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"/%2Fadmin", "%2F"},
		{"/%2fadmin", "%2F"},
		{"/a%5Cadmin", "%5C"},
		{"/a\\admin", "'\\'"},
		{"/admin%00", "%00"},
		{"/admin#x", "'#'"},
		{"/a%zz", "invalid percent-encoding"},
		{"/a%2", "truncated"},
		{"/a%", "truncated"},
		{"/public/..;/admin", "dot segment with parameters"},
		{"/public/.;x/admin", "dot segment with parameters"},
		{"/a\x01", "control character"},
		{"/a b", "control character"},
		{"admin", "must start with '/'"},
		{"", "must start with '/'"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Normalize(tt.in)
			if err == nil {
				t.Fatalf("Normalize(%q) = %q, want an error containing %q", tt.in, got, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Normalize(%q) error %q, want it to contain %q", tt.in, err, tt.want)
			}
			var pe *Error
			if !errors.As(err, &pe) && !errors.Is(err, ErrNotOrigin) {
				t.Errorf("error %T is neither *Error nor ErrNotOrigin", err)
			}
		})
	}
}

func TestNormalPathDoesNotAllocate(t *testing.T) {
	p := "/api/v1/books/42;v=1"
	got := testing.AllocsPerRun(100, func() {
		if _, err := Normalize(p); err != nil {
			t.Fatal(err)
		}
	})
	if got != 0 {
		t.Errorf("allocations = %v, want 0", got)
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"/", "//admin", "/a/../admin", "/%2e%2e/admin", "/%2Fadmin", "/ADMIN", "/admin;x",
		"/%252F", "/admin%00", "/admin#x", "/a/./b/../../c", "/..;/x", "/%61%62", "/a%7e", "/é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		n, err := Normalize(p)
		if err != nil {
			return
		}
		again, err := Normalize(n)
		if err != nil {
			t.Fatalf("Normalize(%q) = %q, which fails: %v", p, n, err)
		}
		if again != n {
			t.Fatalf("not idempotent: Normalize(%q) = %q, Normalize(that) = %q", p, n, again)
		}
		if !IsNormal(n) {
			t.Fatalf("IsNormal(Normalize(%q) = %q) = false", p, n)
		}
		if IsNormal(p) && n != p {
			t.Fatalf("IsNormal(%q) but Normalize gives %q", p, n)
		}
		if strings.Contains(n, "//") || strings.Contains(n, "/../") || strings.Contains(n, "/./") ||
			strings.HasSuffix(n, "/..") || strings.HasSuffix(n, "/.") || n[0] != '/' {
			t.Fatalf("Normalize(%q) = %q is not normal", p, n)
		}
	})
}
