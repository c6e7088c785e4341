package resilience

import (
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	meshv1 "weft.dev/weft/api/meshv1"
	"weft.dev/weft/internal/proxy/proxyerr"
)

// GRPCUnavailable is the default gRPC status of an injected abort.
const GRPCUnavailable = 14

// Fault is a compiled FaultInjection.
type Fault struct {
	name         string
	prefix       string
	delayPercent float64
	delay        time.Duration
	abortPercent float64
	status       int
	grpcStatus   int
	float        func() float64
}

// NewFault compiles f; nil when f injects nothing. rnd returns a float in
// [0, 1) and must be safe for concurrent use; nil means math/rand/v2.
func NewFault(f *meshv1.FaultInjection, rnd func() float64) *Fault {
	if f == nil || (f.GetDelayPercent() <= 0 || f.GetDelayMs() <= 0) && f.GetAbortPercent() <= 0 {
		return nil
	}
	if rnd == nil {
		rnd = rand.Float64
	}
	x := &Fault{
		name: f.GetName(), prefix: f.GetPathPrefix(),
		delayPercent: f.GetDelayPercent(), delay: time.Duration(f.GetDelayMs()) * time.Millisecond,
		abortPercent: f.GetAbortPercent(), status: int(f.GetAbortHttpStatus()), grpcStatus: int(f.GetAbortGrpcStatus()),
		float: rnd,
	}
	if x.name == "" {
		x.name = "a fault injection policy"
	}
	if x.status == 0 {
		x.status = http.StatusServiceUnavailable
	}
	if x.grpcStatus == 0 {
		x.grpcStatus = GRPCUnavailable
	}
	return x
}

// Decide draws the fault of one request to path: a delay to wait before
// forwarding (0 for none) and an abort to answer instead (nil for none).
func (f *Fault) Decide(path string) (time.Duration, error) {
	if f == nil || f.prefix != "" && !strings.HasPrefix(path, f.prefix) {
		return 0, nil
	}
	var d time.Duration
	if f.delay > 0 && f.float()*100 < f.delayPercent {
		d = f.delay
	}
	if f.abortPercent > 0 && f.float()*100 < f.abortPercent {
		return d, &proxyerr.Error{Status: f.status, Reason: "fault injected by " + f.name, GRPCStatus: f.grpcStatus}
	}
	return d, nil
}
