package cli

import (
	"strings"
	"testing"
)

// FuzzGroupsOf: any file a user passes to weft apply yields a kind→group
// map without panicking, and every group is the part of an apiVersion
// before its '/'.
func FuzzGroupsOf(f *testing.F) {
	f.Add([]byte(canaryYAML))
	f.Add([]byte("---\napiVersion: v1\nkind: X\n---\n\n---\nkind: [\n"))
	f.Add([]byte("apiVersion: a/b/c\nkind: K\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for kind, group := range groupsOf(data) {
			if kind == "" || strings.Contains(group, "/") {
				t.Errorf("kind %q group %q", kind, group)
			}
			_ = qualifiedKind(kind, group)
		}
	})
}

// FuzzListenAddr: flag values never panic the address check.
func FuzzListenAddr(f *testing.F) {
	for _, s := range []string{"127.0.0.1:8085", "[::1]:1", ":0", "localhost", "a:b:c", "1.2.3.4:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_ = checkListenAddr(s)
	})
}
