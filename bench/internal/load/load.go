// Package load is the benchmark's open-loop load generator: a fixed number of keep-alive
// HTTP/1.1 connections (fortio's fast client) send requests at a constant total rate on a
// fixed schedule, whether or not earlier answers have arrived, and every answer is checked
// byte for byte.
//
// Latency is measured from the intended send time: each connection owns an evenly spaced
// schedule, and a request whose slot passed while its connection was still busy is sent at
// once and charged the time since its slot (no coordinated omission). When a connection is idle
// at its slot it sleeps until then and latency runs from the wake-up, because Go timers here wake
// up to a millisecond late and that delay is the generator's, not the system's.
//
// Only the benchmark harness imports load. A Generator runs one load at a time.
package load

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"fortio.org/fortio/fhttp"
	flog "fortio.org/log"
)

// Options configure a Generator.
type Options struct {
	// URL every request goes to.
	URL string
	// Connections is the number of keep-alive connections, each with its own schedule; 0 means 16.
	Connections int
	// Payload is the body of every request (a POST); the answer must carry the same bytes.
	Payload []byte
	// Timeout of one request; 0 means 10 s.
	Timeout time.Duration
}

// Generator owns the connections of one target.
type Generator struct {
	opts    Options
	clients []fhttp.Fetcher
}

var quietFortio sync.Once

// New prepares the connections; they are dialled by the first request.
func New(opts Options) (*Generator, error) {
	if opts.Connections <= 0 {
		opts.Connections = 16
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	quietFortio.Do(func() { flog.SetLogLevelQuiet(flog.Error) })
	g := &Generator{opts: opts}
	for i := 0; i < opts.Connections; i++ {
		o := fhttp.NewHTTPOptions(opts.URL)
		o.Payload = opts.Payload
		o.HTTPReqTimeOut = opts.Timeout
		o.ID = i
		c, err := fhttp.NewFastClient(o)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("load client for %s: %w", opts.URL, err)
		}
		g.clients = append(g.clients, c)
	}
	return g, nil
}

// Close closes the connections.
func (g *Generator) Close() {
	for _, c := range g.clients {
		c.Close()
	}
	g.clients = nil
}

// Result is what one load window measured.
type Result struct {
	// Rate is the intended total rate (requests per second) and Duration the window.
	Rate     float64
	Duration time.Duration
	// Elapsed is from the window's start until the last answer arrived.
	Elapsed time.Duration
	// Requests sent; Errors among them (transport failure or a status other than 200);
	// BadBodies answered 200 with a body that differs from the request's.
	Requests, Errors, BadBodies int64
	// BytesSent and BytesReceived count request and response body bytes.
	BytesSent, BytesReceived int64
	// Late counts requests sent after their slot because their connection was still busy.
	Late int64
	// FirstError describes the first failure, if any.
	FirstError string
	// Latencies of the successful requests, sorted ascending.
	Latencies []time.Duration
}

// Achieved is the rate of answered requests over the window.
func (r *Result) Achieved() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Percentile returns the p-th percentile (0 < p <= 100) of the latencies, nearest rank.
func (r *Result) Percentile(p float64) time.Duration {
	n := len(r.Latencies)
	if n == 0 {
		return 0
	}
	i := int(float64(n)*p/100+0.5) - 1
	i = max(0, min(i, n-1))
	return r.Latencies[i]
}

type workerResult struct {
	lat                                   []time.Duration
	reqs, errs, bad, sent, received, late int64
	firstErr                              string
}

// Run sends rate requests per second for d and returns what was measured. It stops early when
// ctx ends.
func (g *Generator) Run(ctx context.Context, rate float64, d time.Duration) Result {
	n := len(g.clients)
	interval := time.Duration(float64(time.Second) * float64(n) / rate)
	perConn := int(d / interval)
	if perConn < 1 {
		perConn = 1
	}
	start := time.Now().Add(5 * time.Millisecond)
	results := make([]workerResult, n)
	var wg sync.WaitGroup
	for i := range g.clients {
		wg.Go(func() {
			offset := interval * time.Duration(i) / time.Duration(n)
			results[i] = g.work(ctx, g.clients[i], start.Add(offset), interval, perConn)
		})
	}
	wg.Wait()
	return g.merge(results, rate, d, start)
}

func (g *Generator) merge(results []workerResult, rate float64, d time.Duration, start time.Time) Result {
	res := Result{Rate: rate, Duration: d, Elapsed: time.Since(start)}
	for _, w := range results {
		res.Requests += w.reqs
		res.Errors += w.errs
		res.BadBodies += w.bad
		res.BytesSent += w.sent
		res.BytesReceived += w.received
		res.Late += w.late
		if res.FirstError == "" {
			res.FirstError = w.firstErr
		}
		res.Latencies = append(res.Latencies, w.lat...)
	}
	slices.Sort(res.Latencies)
	return res
}

// RunClosed sends requests back to back on every connection for d (closed loop: each
// connection waits for its answer before the next request), to find the most a target can
// serve. Latency runs from each request's send; Rate is zero.
func (g *Generator) RunClosed(ctx context.Context, d time.Duration) Result {
	start := time.Now()
	deadline := start.Add(d)
	results := make([]workerResult, len(g.clients))
	var wg sync.WaitGroup
	for i := range g.clients {
		wg.Go(func() {
			results[i] = g.work(ctx, g.clients[i], deadline, 0, -1)
		})
	}
	wg.Wait()
	return g.merge(results, 0, d, start)
}

// work sends count requests on c, the k-th at first + k*interval. With count < 0 it sends
// back to back until first (then the deadline) passes.
func (g *Generator) work(ctx context.Context, c fhttp.Fetcher, first time.Time, interval time.Duration, count int) workerResult {
	w := workerResult{lat: make([]time.Duration, 0, max(count, 1024))}
	payload := g.opts.Payload
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for k := 0; count < 0 || k < count; k++ {
		var from time.Time
		slot := first.Add(time.Duration(k) * interval)
		if count < 0 {
			from = time.Now()
			if ctx.Err() != nil || from.After(first) {
				return w
			}
		} else if wait := time.Until(slot); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return w
			case <-timer.C:
			}
			from = time.Now()
		} else {
			if ctx.Err() != nil {
				return w
			}
			from = slot
			if wait < -time.Millisecond {
				w.late++
			}
		}
		code, data, headerLen := c.Fetch(ctx)
		took := time.Since(from)
		w.reqs++
		w.sent += int64(len(payload))
		if code != 200 {
			w.errs++
			if w.firstErr == "" {
				w.firstErr = fmt.Sprintf("status %d from %s", code, g.opts.URL)
			}
			continue
		}
		body := data[min(headerLen, len(data)):]
		w.received += int64(len(body))
		if !bytes.Equal(body, payload) {
			w.bad++
			if w.firstErr == "" {
				w.firstErr = fmt.Sprintf("body of %d bytes from %s differs from the %d bytes sent", len(body), g.opts.URL, len(payload))
			}
			continue
		}
		w.lat = append(w.lat, took)
	}
	return w
}
