package viz

import (
	"fmt"
	"math"
	"testing"
	"time"

	"weft.dev/weft/internal/config"
)

// BenchmarkStat measures Stat over a full retention of 200 proxies with
// three series each, scraped every 2s for 5 minutes.
func BenchmarkStat(b *testing.B) {
	src := newFakeSource()
	s := New(src, Config{})
	s.now = func() time.Time { return t0.Add(DefaultRetention) }
	var proxies []*config.Proxy
	for i := range 200 {
		id := fmt.Sprintf("p-%d", i)
		svc := fmt.Sprintf("svc%d", i%20)
		proxies = append(proxies, &config.Proxy{ID: id, Service: svc, Namespace: "default", AdminAddr: "x"})
		st := &proxyState{service: config.Key(svc, "default"), lastOK: true}
		for j := range int(DefaultRetention / DefaultInterval) {
			n := float64(j * 10)
			byKey := map[seriesKey]*series{}
			for _, k := range []seriesKey{{inbound, config.Key(svc, "default")}, {outbound, "a.default"}, {outbound, "b.default"}} {
				lat := make([]bucket, 0, len(latencyBuckets)+1)
				for bi, le := range latencyBuckets {
					lat = append(lat, bucket{le: le, count: n * float64(bi) / float64(len(latencyBuckets))})
				}
				lat = append(lat, bucket{le: math.Inf(1), count: n})
				byKey[k] = &series{requests: n, success: n, latency: lat}
			}
			st.samples = append(st.samples, &sample{at: t0.Add(time.Duration(j+1) * DefaultInterval), series: byKey})
		}
		s.proxies[id] = st
	}
	src.set(nil, proxies...)
	b.ResetTimer()
	for b.Loop() {
		s.Stat(time.Minute)
	}
}
