package controller

import (
	"os"
	"runtime/debug"
)

// GCPercent is weft-controller's GOGC unless $GOGC says otherwise (see
// SetGCPercent). Most of the controller's heap lives as long as the
// proxies' connections (TLS and HTTP/2 state, one stream each), while a
// configuration change leaves a little garbage per proxy. At the runtime's
// default of 100 the heap goal is twice that long-lived heap (plus the
// goroutine stacks), and every change's garbage fills it up to the goal:
// weftbench -controlplane 1000x2000 -changes 100, VmRSS 154-166 MiB at
// 100 against 140 MiB at 50, with the same CPU per change (81-85 ms) and
// to connect the proxies (docs/performance.md).
const GCPercent = 50

// SetGCPercent applies GCPercent to the process unless $GOGC is set.
// weft-controller calls it first thing; the controller package itself
// never changes the runtime's settings (`weft up` embeds it).
func SetGCPercent() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(GCPercent)
	}
}
