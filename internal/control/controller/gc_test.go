package controller

import (
	"os"
	"runtime/debug"
	"testing"
)

func TestSetGCPercentUnlessGOGC(t *testing.T) {
	t.Setenv("GOGC", "")
	os.Unsetenv("GOGC")
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	SetGCPercent()
	if got := debug.SetGCPercent(100); got != GCPercent {
		t.Errorf("without $GOGC: GC percent %d, want %d", got, GCPercent)
	}
	t.Setenv("GOGC", "200")
	debug.SetGCPercent(77)
	SetGCPercent()
	if got := debug.SetGCPercent(100); got != 77 {
		t.Errorf("with $GOGC set: GC percent changed to %d", got)
	}
}
