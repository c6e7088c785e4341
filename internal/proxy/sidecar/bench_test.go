package sidecar_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// perOp reports, per operation of the timed loop, the goroutines the
// process created and its write syscalls (/proc/self/io syscw; all of
// client, both proxies and the application run in the test process).
// Both are counts, steady however busy the machine is. Call it right
// before b.ResetTimer; it reports when the benchmark ends.
func perOp(b *testing.B) {
	created := func() uint64 {
		s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
		metrics.Read(s)
		if s[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[0].Value.Uint64()
	}
	writes := func() uint64 {
		data, err := os.ReadFile("/proc/self/io")
		if err != nil {
			return 0
		}
		for line := range strings.SplitSeq(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "syscw: "); ok {
				n, _ := strconv.ParseUint(v, 10, 64)
				return n
			}
		}
		return 0
	}
	g0, w0 := created(), writes()
	b.Cleanup(func() {
		if b.N == 0 {
			return
		}
		b.ReportMetric(float64(created()-g0)/float64(b.N), "goroutines/op")
		b.ReportMetric(float64(writes()-w0)/float64(b.N), "writes/op")
	})
}

// BenchmarkHTTP1ThroughMesh measures keep-alive GETs through both proxies
// (client -> outbound -> inbound -> app), for profiling the hot path.
func BenchmarkHTTP1ThroughMesh(b *testing.B) {
	m := startMesh(b, 0)
	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := "http://" + m.out["api"] + "/who"
	b.ReportAllocs()
	perOp(b)
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

// BenchmarkHTTP2ThroughMesh measures 1 KiB POSTs over one h2c client
// connection through both proxies (a new stream per request on every
// leg), for profiling the HTTP/2 request path.
func BenchmarkHTTP2ThroughMesh(b *testing.B) {
	m := startMesh(b, 0)
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := "http://" + m.out["api"] + "/sum"
	body := bytes.Repeat([]byte("x"), 1<<10)
	b.ReportAllocs()
	perOp(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(url, "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
				b.Errorf("got %s %s, want 200 over HTTP/2", resp.Proto, resp.Status)
				return
			}
		}
	})
}

// BenchmarkGRPCUnaryThroughMesh measures unary gRPC calls over one client
// connection through both proxies.
func BenchmarkGRPCUnaryThroughMesh(b *testing.B) {
	m := startMesh(b, 0)
	conn, err := grpc.NewClient(m.out["grpc-api"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	ctx := context.Background()
	b.ReportAllocs()
	perOp(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "api"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
