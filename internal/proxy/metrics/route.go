package metrics

import (
	"sync"
	"time"
)

// Route metrics: the outbound traffic of each route (HTTPRoute or
// GRPCRoute) of a destination. The route label is bounded by the
// configuration ("HTTPRoute/default/books"), and callers resolve a *Route
// once per configuration, so requests do no label lookup.
//
//	weft_route_responses_total{service, route, classification}
//	weft_route_response_latency_seconds{service, route}
type routeVecs struct {
	responses CounterVec
	latency   HistogramVec
}

// routeFamilies holds each Registry's route families, registered on first
// use (Registry keeps its own families in metrics.go).
var routeFamilies sync.Map // *Registry -> *routeVecs

func (r *Registry) routeVecs() *routeVecs {
	if v, ok := routeFamilies.Load(r); ok {
		return v.(*routeVecs)
	}
	nv := &routeVecs{
		responses: r.CounterVec("weft_route_responses_total", "Outbound responses per route, by classification (failure: 5xx, a proxy error, or grpc-status other than 0).", "service", "route", "classification"),
		latency:   r.HistogramVec("weft_route_response_latency_seconds", "Outbound time from a request's head to the end of its response, per route.", LatencyBuckets, "service", "route"),
	}
	v, _ := routeFamilies.LoadOrStore(r, nv)
	return v.(*routeVecs)
}

// Route is the traffic of one route to one destination service.
type Route struct {
	success, failure Counter
	latency          Histogram
}

// Route returns the metrics of route (e.g. "HTTPRoute/default/books") on
// the outbound side of service. Resolve it once per configuration, not
// per request.
func (r *Registry) Route(service, route string) *Route {
	v := r.routeVecs()
	return &Route{
		success: v.responses.With(service, route, "success"),
		failure: v.responses.With(service, route, "failure"),
		latency: v.latency.With(service, route),
	}
}

// Response records one response of the route.
func (r *Route) Response(failure bool, latency time.Duration) {
	if r == nil {
		return
	}
	if failure {
		r.failure.Inc()
	} else {
		r.success.Inc()
	}
	r.latency.Observe(latency.Seconds())
}
