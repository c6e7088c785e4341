package viz

import (
	"cmp"
	"math"
	"slices"
	"sort"
	"time"

	"weft.dev/weft/internal/config"
)

// ServiceStat is the golden metrics of one service over a window, from
// the inbound side of its proxies.
type ServiceStat struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// Instances is the number of proxies of the service in the snapshot.
	Instances int `json:"instances"`
	// Meshed is how many of those answered the last scrape.
	Meshed int `json:"meshed"`
	// Requests is the number of inbound requests in the window.
	Requests float64 `json:"requests"`
	// SuccessRate is successful responses / all responses in the window,
	// in [0, 1]; nil when there were no responses.
	SuccessRate *float64 `json:"success_rate"`
	// RPS is inbound requests per second over the window.
	RPS float64 `json:"rps"`
	// Latency quantiles in milliseconds; nil when there were no responses.
	P50Ms *float64 `json:"p50_ms"`
	P95Ms *float64 `json:"p95_ms"`
	P99Ms *float64 `json:"p99_ms"`
	// TCPConnections is the inbound connections open at the last scrape,
	// summed over the proxies that answered it.
	TCPConnections float64 `json:"tcp_connections"`
}

// EdgeStat is the traffic from one service to another over a window, from
// the outbound side of the source's proxies. From and To are service keys
// ("name.namespace").
type EdgeStat struct {
	From     string  `json:"from"`
	To       string  `json:"to"`
	Requests float64 `json:"requests"`
	RPS      float64 `json:"rps"`
	// SuccessRate in [0, 1]; nil when there were no responses.
	SuccessRate *float64 `json:"success_rate"`
}

// view is a reader's copy of one proxy's state; its samples are shared
// with the ring and never modified.
type view struct {
	service config.ServiceKey
	lastOK  bool
	samples []*sample
}

// views copies the ring headers under the read lock, so that computing
// statistics never holds the lock.
func (s *Scraper) views() map[string]view {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]view, len(s.proxies))
	for id, st := range s.proxies {
		out[id] = view{service: st.service, lastOK: st.lastOK, samples: st.samples}
	}
	return out
}

// totals accumulates the growth of counters over a window.
type totals struct {
	requests float64
	success  float64
	failure  float64
	rps      float64
	// latency holds cumulative bucket increases.
	latency []bucket
}

// add adds the increases d of one proxy, seen over span.
func (t *totals) add(d *series, span time.Duration) {
	t.requests += d.requests
	t.success += d.success
	t.failure += d.failure
	if span > 0 {
		t.rps += d.requests / span.Seconds()
	}
	t.latency = mergeBuckets(t.latency, d.latency)
}

func (t *totals) successRate() *float64 {
	n := t.success + t.failure
	if n <= 0 {
		return nil
	}
	r := t.success / n
	return &r
}

// quantileMs is the q-quantile of the latency in milliseconds; nil when
// nothing was observed.
func (t *totals) quantileMs(q float64) *float64 {
	v, ok := bucketQuantile(q, t.latency)
	if !ok {
		return nil
	}
	v *= 1000
	return &v
}

// Stat returns the golden metrics of every service over the window ending
// now, sorted by namespace and name. Services of the snapshot without
// proxies are listed with zero instances. A window of zero or less means
// the whole retention.
//
// RPS divides each proxy's increase by the time its samples inside the
// window actually span (at most the window), not by the window itself:
// scrapes never align with the window's start, and a scraper that started
// recently has seen less than the window; dividing by the window would
// under-report by up to an interval, or by far more at startup. A window
// holding fewer than two samples of a proxy (shorter than an Interval)
// has no rate for it.
func (s *Scraper) Stat(window time.Duration) []ServiceStat {
	snap := s.src.Snapshot()
	views := s.views()
	from := s.windowStart(window)

	type agg struct {
		stat ServiceStat
		tot  totals
	}
	bySvc := make(map[config.ServiceKey]*agg)
	get := func(name, ns string) *agg {
		if ns == "" {
			ns = config.DefaultNamespace
		}
		k := config.Key(name, ns)
		a := bySvc[k]
		if a == nil {
			a = &agg{stat: ServiceStat{Name: name, Namespace: ns}}
			bySvc[k] = a
		}
		return a
	}
	for _, svc := range snap.Services {
		get(svc.Name, svc.Namespace)
	}
	for id, p := range snap.Proxies {
		v, ok := views[id]
		if !ok || v.service != config.Key(p.Service, p.Namespace) {
			v = view{}
			ok = false
		}
		var samples []*sample
		if ok {
			samples = inWindow(v.samples, from)
		}
		for _, name := range proxyServices(snap, p) {
			a := get(name, p.Namespace)
			a.stat.Instances++
			if !ok {
				continue
			}
			if v.lastOK {
				a.stat.Meshed++
				// The newest sample is the last scrape's; it is current
				// unless it is older than the window (the scraper stopped).
				if len(samples) > 0 {
					for k, sr := range samples[len(samples)-1].series {
						if k.dir == inbound {
							a.stat.TCPConnections += sr.tcpOpen
						}
					}
				}
			}
			inc, span := increases(samples, inbound)
			for _, d := range inc {
				a.tot.add(d, span)
			}
		}
	}

	out := make([]ServiceStat, 0, len(bySvc))
	for _, a := range bySvc {
		st := a.stat
		st.Requests = a.tot.requests
		st.RPS = a.tot.rps
		st.SuccessRate = a.tot.successRate()
		st.P50Ms = a.tot.quantileMs(0.50)
		st.P95Ms = a.tot.quantileMs(0.95)
		st.P99Ms = a.tot.quantileMs(0.99)
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b ServiceStat) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// proxyServices returns the services proxy p is an instance of: its
// Service, and "<Service>-<Version>" when p has a Version and the snapshot
// has a service of that name in p's namespace (a versioned workload, such
// as api v1 behind the service api-v1 of a traffic split). The proxy's
// inbound metrics are labelled with its Service; they count for both.
func proxyServices(snap *config.Snapshot, p *config.Proxy) []string {
	if p.Version == "" {
		return []string{p.Service}
	}
	ns := p.Namespace
	if ns == "" {
		ns = config.DefaultNamespace
	}
	versioned := p.Service + "-" + p.Version
	if _, ok := snap.Services[config.Key(versioned, ns)]; !ok {
		return []string{p.Service}
	}
	return []string{p.Service, versioned}
}

// Edges returns the traffic between services over the window ending now,
// sorted by From and To. An edge is listed when a proxy of From exposed
// outbound metrics for To in the window, even with no requests in it.
// Window and RPS are as in Stat.
func (s *Scraper) Edges(window time.Duration) []EdgeStat {
	snap := s.src.Snapshot()
	views := s.views()
	from := s.windowStart(window)

	type edgeKey struct{ from, to config.ServiceKey }
	byEdge := make(map[edgeKey]*totals)
	for id, p := range snap.Proxies {
		src := config.Key(p.Service, p.Namespace)
		v, ok := views[id]
		if !ok || v.service != src {
			continue
		}
		inc, span := increases(inWindow(v.samples, from), outbound)
		for k, d := range inc {
			ek := edgeKey{from: src, to: k.service}
			t := byEdge[ek]
			if t == nil {
				t = &totals{}
				byEdge[ek] = t
			}
			t.add(d, span)
		}
	}
	out := make([]EdgeStat, 0, len(byEdge))
	for k, t := range byEdge {
		out = append(out, EdgeStat{
			From:        string(k.from),
			To:          string(k.to),
			Requests:    t.requests,
			RPS:         t.rps,
			SuccessRate: t.successRate(),
		})
	}
	slices.SortFunc(out, func(a, b EdgeStat) int {
		return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To))
	})
	return out
}

// windowStart is the oldest sample time a window ending now includes.
func (s *Scraper) windowStart(window time.Duration) time.Time {
	if window <= 0 || window > s.keep {
		window = s.keep
	}
	return s.now().Add(-window)
}

// inWindow returns the samples taken at or after from; samples are in
// time order.
func inWindow(samples []*sample, from time.Time) []*sample {
	i := sort.Search(len(samples), func(i int) bool { return !samples[i].at.Before(from) })
	return samples[i:]
}

// increases returns how much each series of direction dir of one proxy
// grew from the first to the last of samples, and the time they span.
// Counters that go down between two samples mean the proxy restarted: its
// counters started again from zero, so the later value is the increase.
// Between restarts counters only grow, so each run of samples without a
// restart costs one subtraction, however many samples it holds.
func increases(samples []*sample, dir direction) (map[seriesKey]*series, time.Duration) {
	if len(samples) < 2 {
		return nil, 0
	}
	out := make(map[seriesKey]*series)
	base := samples[0]
	for i := 1; i <= len(samples); i++ {
		if i < len(samples) && !restarted(samples[i-1], samples[i]) {
			continue
		}
		addIncrease(out, base, samples[i-1], dir)
		// The next run starts from zero, not from its first sample.
		base = &sample{}
	}
	return out, samples[len(samples)-1].at.Sub(samples[0].at)
}

// addIncrease adds what the series of direction dir grew by from a to b.
// A series missing from a had not counted anything yet.
func addIncrease(out map[seriesKey]*series, a, b *sample, dir direction) {
	if a == b {
		return
	}
	for k, sb := range b.series {
		if k.dir != dir {
			continue
		}
		sa := a.series[k]
		if sa == nil {
			sa = &series{}
		}
		d := out[k]
		if d == nil {
			d = &series{}
			out[k] = d
		}
		d.requests += nonNeg(sb.requests - sa.requests)
		d.success += nonNeg(sb.success - sa.success)
		d.failure += nonNeg(sb.failure - sa.failure)
		d.latency = mergeBuckets(d.latency, bucketDelta(sb.latency, sa.latency))
	}
}

// restarted reports whether the proxy restarted between samples a and b:
// its start time changed or any counter went down.
func restarted(a, b *sample) bool {
	if a.start != 0 && b.start != 0 && a.start != b.start {
		return true
	}
	for k, sa := range a.series {
		sb := b.series[k]
		if sb == nil {
			continue
		}
		if sb.requests < sa.requests || sb.success < sa.success || sb.failure < sa.failure {
			return true
		}
		if len(sa.latency) > 0 && len(sb.latency) > 0 &&
			sb.latency[len(sb.latency)-1].count < sa.latency[len(sa.latency)-1].count {
			return true
		}
	}
	return false
}

// bucketDelta subtracts cumulative buckets a from b, matching by upper
// bound; a bucket missing from a counts as zero.
func bucketDelta(b, a []bucket) []bucket {
	out := make([]bucket, len(b))
	j := 0
	for i, bb := range b {
		for j < len(a) && a[j].le < bb.le {
			j++
		}
		var prev float64
		if j < len(a) && a[j].le == bb.le {
			prev = a[j].count
		}
		out[i] = bucket{le: bb.le, count: nonNeg(bb.count - prev)}
	}
	return out
}

func nonNeg(v float64) float64 { return max(v, 0) }

// bucketQuantile estimates the q-quantile from cumulative buckets sorted
// by upper bound, the way Prometheus' histogram_quantile does: find the
// bucket holding the rank and interpolate linearly inside it, taking the
// lower bound of the first bucket as 0; a rank in the +Inf bucket yields
// the highest finite bound. It reports false when there is no +Inf bucket
// or no observation.
func bucketQuantile(q float64, buckets []bucket) (float64, bool) {
	n := len(buckets)
	if n < 2 || !math.IsInf(buckets[n-1].le, +1) || math.IsNaN(q) {
		return 0, false
	}
	// Bucket counts of a sum over proxies are monotonic, but repair any
	// rounding dip the way Prometheus does, so the search below is valid.
	b := slices.Clone(buckets)
	for i := 1; i < n; i++ {
		b[i].count = max(b[i].count, b[i-1].count)
	}
	total := b[n-1].count
	if total <= 0 {
		return 0, false
	}
	q = min(max(q, 0), 1)
	rank := q * total
	i := sort.Search(n-1, func(i int) bool { return b[i].count >= rank })
	if i == n-1 {
		return b[n-2].le, true
	}
	if i == 0 && b[0].le <= 0 {
		return b[0].le, true
	}
	start, end, count := 0.0, b[i].le, b[i].count
	if i > 0 {
		start = b[i-1].le
		count -= b[i-1].count
		rank -= b[i-1].count
	}
	if count <= 0 {
		return end, true
	}
	return start + (end-start)*(rank/count), true
}
