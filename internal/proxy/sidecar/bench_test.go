package sidecar_test

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkHTTP1ThroughMesh measures keep-alive GETs through both proxies
// (client -> outbound -> inbound -> app), for profiling the hot path.
func BenchmarkHTTP1ThroughMesh(b *testing.B) {
	m := startMesh(b, 0)
	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := "http://" + m.out["api"] + "/who"
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
