package inject

import (
	"testing"
)

// FuzzParseAnnotations checks that any annotation value is parsed or
// refused without a panic, and that accepted ports round-trip.
func FuzzParseAnnotations(f *testing.F) {
	for _, s := range []string{"80,443", "8000-8010", " 1 , 2 ", "10.0.0.0/8,fd00::/8", "0", "65535-1", "-", ","} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		o, err := parseAnnotations(map[string]string{
			AnnotationSkipInboundPorts: v, AnnotationOpaquePorts: v, AnnotationSkipOutboundCIDRs: v,
		})
		if err != nil {
			return
		}
		again, err := parsePorts(joinPorts(o.skipInbound))
		if err != nil {
			t.Fatalf("joinPorts(%v) = %q does not parse: %v", o.skipInbound, joinPorts(o.skipInbound), err)
		}
		if len(again) != len(o.skipInbound) {
			t.Fatalf("round trip of %v gave %v", o.skipInbound, again)
		}
	})
}
