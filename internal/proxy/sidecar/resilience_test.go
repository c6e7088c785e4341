package sidecar_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"weft.dev/weft/internal/config"
	"weft.dev/weft/internal/config/file"
	"weft.dev/weft/internal/proxy/proxyerr"
)

// These tests apply the policy.weft.dev resilience kinds to a real
// controller (store + push server) and measure their effect on traffic
// through two real proxies over mutual TLS.

func TestFaultInjectionEndToEnd(t *testing.T) {
	m := startRouteMesh(t)
	m.apply(t, `
apiVersion: policy.weft.dev/v1alpha1
kind: FaultInjection
metadata: {name: books-chaos}
spec:
  targetRef: {kind: Service, name: books}
  path: /broken
  abort: {percent: 100, httpStatus: 418}
`)
	for _, cl := range clients(m) {
		t.Run(cl.name, func(t *testing.T) {
			got := m.do(t, cl.c, "GET", "/broken/x", nil)
			if want := "fault injected by FaultInjection/default/books-chaos"; got.code != 418 || got.header.Get(proxyerr.Header) != want {
				t.Errorf("got %d %q, want 418 %q", got.code, got.header.Get(proxyerr.Header), want)
			}
			if got := m.do(t, cl.c, "GET", "/fine", nil); got.code != 200 {
				t.Errorf("unaffected path: got %d, want 200", got.code)
			}
		})
	}
}

func TestPendingLimitEndToEnd(t *testing.T) {
	m := startRouteMesh(t)
	m.apply(t, `
apiVersion: policy.weft.dev/v1alpha1
kind: CircuitBreaker
metadata: {name: books-breaker}
spec:
  targetRef: {kind: Service, name: books}
  maxPendingRequests: 1
`)
	hold := func() chan reply {
		c := make(chan reply, 1)
		go func() { c <- m.do(t, m.h1, "GET", "/hold", nil) }()
		return c
	}
	held := hold()
	want := "circuit open: 1 pending requests to books.default (limit 1)"
	deadline := time.Now().Add(hangGuard)
	for {
		select {
		case r := <-held:
			// A probe held the only place when the held request came,
			// so it was the one refused: hold another.
			if r.code != 503 {
				t.Fatalf("held request: got %d, want it held", r.code)
			}
			held = hold()
		default:
		}
		got := m.do(t, m.h2, "GET", "/fine", nil)
		if got.code == 503 && got.header.Get(proxyerr.Header) == want {
			break
		}
		// 200: the held request has not reached the proxy yet.
		if got.code != 200 || time.Now().After(deadline) {
			t.Fatalf("got %d %q, want 503 %q while a request is held", got.code, got.header.Get(proxyerr.Header), want)
		}
		time.Sleep(time.Millisecond)
	}
	m.apps["books"].free()
	if r := <-held; r.code != 200 {
		t.Errorf("held request: got %d, want 200", r.code)
	}
}

func TestRateLimitEndToEnd(t *testing.T) {
	m := startRouteMesh(t)
	// The RateLimit targets the service of the proxy in front of the
	// applications (api-0); its clients come from web-0, whose identity
	// mutual TLS proves.
	m.store.SetService(config.Service{Name: "api"})
	var ports []config.InboundPort
	for _, a := range m.apps {
		_, p, _ := net.SplitHostPort(a.addr)
		n, _ := strconv.Atoi(p)
		ports = append(ports, config.InboundPort{Port: uint32(n)})
	}
	m.store.SetProxy(config.Proxy{ID: "api-0", Service: "api", Ports: ports})
	const limit = `
apiVersion: policy.weft.dev/v1alpha1
kind: RateLimit
metadata: {name: api-limit}
spec:
  targetRef: {kind: Service, name: api}
  requestsPerSecond: 2
  burst: 3
`
	apply := func(doc string) {
		rs, err := file.Decode([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.store.Apply(rs); err != nil {
			t.Fatal(err)
		}
	}
	get := func() reply { return m.do(t, m.h1, "GET", "/", nil) }
	// until sends requests until ok says the policy is in force.
	until := func(what string, ok func(reply) bool) {
		deadline := time.Now().Add(hangGuard)
		for !ok(get()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s never took effect", what)
			}
		}
	}
	apply(limit)
	until("the rate limit", func(r reply) bool { return r.code == 429 })

	allowed, limited := 0, 0
	var last reply
	start := time.Now()
	for range 40 {
		switch r := get(); r.code {
		case 200:
			allowed++
		case 429:
			limited++
			last = r
		default:
			t.Fatalf("got %d %q, want 200 or 429", r.code, r.header.Get(proxyerr.Header))
		}
	}
	elapsed := time.Since(start)
	bound := 2*elapsed.Seconds() + 3
	t.Logf("%d allowed, %d limited in %s (at most %.1f allowed)", allowed, limited, elapsed, bound)
	if float64(allowed) > bound {
		t.Errorf("%d allowed in %s, want at most rate×elapsed+burst = %.1f", allowed, elapsed, bound)
	}
	if bound < 40 && (limited == 0 || last.header.Get("Retry-After") == "" ||
		!strings.HasPrefix(last.header.Get(proxyerr.Header), "rate limited by RateLimit/default/api-limit")) {
		t.Errorf("limited %d, last 429 %v: want 429s with Retry-After naming the policy", limited, last.header)
	}

	// An override for web-0's service account gives it its own bucket:
	// 20 requests in a row pass, more than the shared bucket allows.
	apply(limit + `  overrides:
  - clients: [web]
    requestsPerSecond: 10000
    burst: 1000
`)
	streak := 0
	until("the override", func(r reply) bool {
		if r.code == 200 {
			streak++
		} else {
			streak = 0
		}
		return streak == 20
	})
}
