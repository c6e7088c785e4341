package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"weft.dev/weft/internal/cli/ctlapi"
)

// routeTotals are the cumulative counters of one route summed over the
// proxies that answered.
type routeTotals struct {
	success, failure float64
	latencySum       float64 // seconds
	latencyCount     float64
}

// RouteStat is one route's traffic over a sample.
type RouteStat struct {
	Route string `json:"route"`
	// SuccessRate in [0, 1]; nil when there was no response.
	SuccessRate *float64 `json:"success_rate"`
	RPS         float64  `json:"rps"`
	// MeanLatencyMs is nil when there was no response.
	MeanLatencyMs *float64 `json:"mean_latency_ms"`
}

// sampleRoutes scrapes every connected proxy's metrics twice, interval
// apart, and returns the traffic of each route of service in between.
// Proxies that do not answer are left out.
func (e *env) sampleRoutes(ctx context.Context, st *ctlapi.Status, service string, interval time.Duration) ([]RouteStat, error) {
	var addrs []string
	for _, p := range st.Proxies {
		if p.AdminAddr != "" {
			addrs = append(addrs, p.AdminAddr)
		}
	}
	before := e.scrapeRoutes(ctx, addrs, service)
	t := time.NewTimer(interval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
	}
	after := e.scrapeRoutes(ctx, addrs, service)
	var out []RouteStat
	for route, a := range after {
		b := before[route]
		d := routeTotals{
			success: max(a.success-b.success, 0), failure: max(a.failure-b.failure, 0),
			latencySum: max(a.latencySum-b.latencySum, 0), latencyCount: max(a.latencyCount-b.latencyCount, 0),
		}
		rs := RouteStat{Route: route, RPS: (d.success + d.failure) / interval.Seconds()}
		if n := d.success + d.failure; n > 0 {
			rate := d.success / n
			rs.SuccessRate = &rate
		}
		if d.latencyCount > 0 {
			ms := 1000 * d.latencySum / d.latencyCount
			rs.MeanLatencyMs = &ms
		}
		out = append(out, rs)
	}
	return out, nil
}

// scrapeRoutes sums the route metrics of service over the proxies at addrs.
func (e *env) scrapeRoutes(ctx context.Context, addrs []string, service string) map[string]routeTotals {
	var mu sync.Mutex
	sum := map[string]routeTotals{}
	var wg sync.WaitGroup
	for _, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fams, err := e.fetchMetrics(ctx, addr)
			if err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			addRouteMetrics(sum, fams, service)
		}()
	}
	wg.Wait()
	return sum
}

func (e *env) fetchMetrics(ctx context.Context, addr string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := e.proxyHTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: %s", addr, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(io.LimitReader(resp.Body, 32<<20))
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// addRouteMetrics adds the route families of one proxy to sum.
func addRouteMetrics(sum map[string]routeTotals, fams map[string]*dto.MetricFamily, service string) {
	if f := fams["weft_route_responses_total"]; f != nil {
		for _, m := range f.GetMetric() {
			if labelOf(m, "service") != service {
				continue
			}
			r := labelOf(m, "route")
			t := sum[r]
			if labelOf(m, "classification") == "success" {
				t.success += m.GetCounter().GetValue()
			} else {
				t.failure += m.GetCounter().GetValue()
			}
			sum[r] = t
		}
	}
	if f := fams["weft_route_response_latency_seconds"]; f != nil {
		for _, m := range f.GetMetric() {
			if labelOf(m, "service") != service {
				continue
			}
			r := labelOf(m, "route")
			t := sum[r]
			t.latencySum += m.GetHistogram().GetSampleSum()
			t.latencyCount += float64(m.GetHistogram().GetSampleCount())
			sum[r] = t
		}
	}
}
