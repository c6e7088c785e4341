package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"weft.dev/weft/examples/demo/internal/chaos"
)

// request is one kind of request of the mix.
type request struct {
	name   string // for logs: web, books, book, quote, add
	method string
	path   string // joined to the base URL
	api    bool   // sent to the API rather than the front end
}

var (
	webPage  = request{name: "web", method: http.MethodGet}
	apiList  = request{name: "books", method: http.MethodGet, path: "/api/books", api: true}
	apiBook  = request{name: "book", method: http.MethodGet, path: "/api/books/", api: true}
	apiQuote = request{name: "quote", method: http.MethodGet, path: "/api/quote", api: true}
	// apiQuotes makes the API read a gRPC server stream from quotes.
	apiQuotes = request{name: "quotes", method: http.MethodGet, path: "/api/quotes?count=3", api: true}
	apiAdd    = request{name: "add", method: http.MethodPost, path: "/api/books", api: true}
)

// mix returns the cycle of requests the generator sends, in order: half to
// the front end, half spread over the API's endpoints (GET and POST) when
// both are given.
func mix(target, api string) []request {
	switch {
	case api == "":
		return []request{webPage}
	case target == "":
		return []request{apiList, apiQuote, apiBook, apiAdd, apiQuotes}
	default:
		return []request{webPage, apiList, webPage, apiQuote, webPage, apiBook, webPage, apiAdd, webPage, apiQuotes}
	}
}

// proxyErrorHeader is the header in which Weft's proxy says why it
// answered an error itself.
const proxyErrorHeader = "Weft-Proxy-Error"

// seedBooks is how many books the API starts with; GET /api/books/{id}
// cycles through their ids so that the requests succeed.
const seedBooks = 6

// stats counts outcomes. It is safe for concurrent use.
type stats struct {
	mu sync.Mutex // guards the fields below
	// sent counts requests started; ok, client (4xx), server (5xx), errs
	// (no HTTP answer) and canceled count requests finished; skipped
	// counts ticks dropped because too many requests were in flight.
	sent, ok, client, server, errs, canceled, skipped int
	// latencies of finished requests with an HTTP answer, at most
	// maxSamples per window.
	latencies []time.Duration
	// versions counts API answers by their Demo-Api-Version header.
	versions map[string]int
	// lastFailure describes the latest error or 5xx answer, "" if none.
	lastFailure string
}

const maxSamples = 10000

func newStats() *stats { return &stats{versions: map[string]int{}} }

func (s *stats) start() {
	s.mu.Lock()
	s.sent++
	s.mu.Unlock()
}

func (s *stats) skipN(n int) {
	s.mu.Lock()
	s.skipped += n
	s.mu.Unlock()
}

// finish records a finished request: its status (0 if it got no answer),
// the API version that answered, its duration and its error; failure
// describes a 5xx answer.
func (s *stats) finish(status int, version string, d time.Duration, err error, failure string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case errors.Is(err, context.Canceled):
		s.canceled++
		return
	case err != nil:
		s.errs++
		s.lastFailure = err.Error()
		return
	case status >= 500:
		s.server++
		s.lastFailure = failure
	case status >= 400:
		s.client++
	default:
		s.ok++
	}
	if version != "" {
		s.versions[version]++
	}
	if len(s.latencies) < maxSamples {
		s.latencies = append(s.latencies, d)
	}
}

// take returns a copy of the counts and resets them.
func (s *stats) take() *stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &stats{sent: s.sent, ok: s.ok, client: s.client, server: s.server, errs: s.errs,
		canceled: s.canceled, skipped: s.skipped, latencies: s.latencies, versions: s.versions,
		lastFailure: s.lastFailure}
	s.sent, s.ok, s.client, s.server, s.errs, s.canceled, s.skipped = 0, 0, 0, 0, 0, 0, 0
	s.latencies, s.versions, s.lastFailure = nil, map[string]int{}, ""
	return c
}

// add folds o into s.
func (s *stats) add(o *stats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent += o.sent
	s.ok += o.ok
	s.client += o.client
	s.server += o.server
	s.errs += o.errs
	s.canceled += o.canceled
	s.skipped += o.skipped
	for v, n := range o.versions {
		s.versions[v] += n
	}
	if o.lastFailure != "" {
		s.lastFailure = o.lastFailure
	}
	if room := maxSamples - len(s.latencies); room > 0 {
		s.latencies = append(s.latencies, o.latencies[:min(room, len(o.latencies))]...)
	}
}

// attrs returns s as log attributes, over a window of length d.
func (s *stats) attrs(d time.Duration) []any {
	done := s.ok + s.client + s.server + s.errs
	success := "n/a"
	if done > 0 {
		success = fmt.Sprintf("%.1f%%", 100*float64(s.ok+s.client)/float64(done))
	}
	lat := slices.Clone(s.latencies)
	slices.Sort(lat)
	pct := func(p float64) string {
		if len(lat) == 0 {
			return "n/a"
		}
		return lat[int(p*float64(len(lat)-1))].Round(100 * time.Microsecond).String()
	}
	var vs []string
	for _, v := range slices.Sorted(maps.Keys(s.versions)) {
		vs = append(vs, fmt.Sprintf("%s=%d", v, s.versions[v]))
	}
	a := []any{
		"window", d.Round(time.Millisecond).String(),
		"sent", s.sent,
		"rps", fmt.Sprintf("%.1f", float64(s.sent)/max(d.Seconds(), 1e-9)),
		"success", success,
		"ok", s.ok, "http_4xx", s.client, "http_5xx", s.server, "errors", s.errs,
		"p50", pct(0.50), "p95", pct(0.95), "p99", pct(0.99),
	}
	if s.skipped > 0 {
		a = append(a, "skipped", s.skipped)
	}
	if s.canceled > 0 {
		a = append(a, "canceled", s.canceled)
	}
	if len(vs) > 0 {
		a = append(a, "api_versions", strings.Join(vs, ","))
	}
	if s.lastFailure != "" {
		a = append(a, "last_failure", s.lastFailure)
	}
	return a
}

// generator sends the mix at a fixed rate (an open loop: a slow answer does
// not slow the rate down, up to --concurrency requests in flight). Only one
// Run call may use it.
type generator struct {
	cfg    config
	client *http.Client
	log    *slog.Logger
	mix    []request
	window *stats
	total  *stats
}

func newGenerator(cfg config, client *http.Client, log *slog.Logger) *generator {
	return &generator{cfg: cfg, client: client, log: log, mix: mix(cfg.target, cfg.api), window: newStats(), total: newStats()}
}

// Run sends requests until ctx ends, --duration passes or --count requests
// have been sent, logging a summary every --report-interval and a total at
// the end. It returns once in-flight requests have finished: when ctx ends
// they are cut short and count as canceled, not failed; otherwise they run
// to completion or their timeout.
func (g *generator) Run(ctx context.Context) {
	began := time.Now()
	var stop <-chan time.Time // fires when --duration has passed; nil: never
	if g.cfg.duration > 0 {
		t := time.NewTimer(g.cfg.duration)
		defer t.Stop()
		stop = t.C
	}
	tick := time.NewTicker(max(time.Duration(float64(time.Second)/g.cfg.rps), time.Millisecond))
	defer tick.Stop()
	report := time.NewTicker(g.cfg.report)
	defer report.Stop()
	lastReport := began

	var wg sync.WaitGroup
	sem := make(chan struct{}, g.cfg.concurrency) // one slot per request in flight
	// slots counts the requests due so far, sent or skipped; sent counts
	// those sent. The schedule is absolute: a late tick (a busy machine)
	// sends what is due rather than lowering the rate, but never more than
	// a second's worth at once.
	var slots, sent uint64
	limit := uint64(g.cfg.count)
	burst := uint64(max(1, g.cfg.rps))
	fire := func(now time.Time) {
		elapsed := now.Sub(began)
		if g.cfg.duration > 0 {
			elapsed = min(elapsed, g.cfg.duration)
		}
		due := 1 + uint64(elapsed.Seconds()*g.cfg.rps)
		if due > slots+burst {
			g.window.skipN(int(due - slots - burst))
			slots = due - burst
		}
		for ; slots < due && (limit == 0 || sent < limit); slots++ {
			select {
			case sem <- struct{}{}:
			default:
				g.window.skipN(1)
				continue
			}
			r, n := g.mix[sent%uint64(len(g.mix))], sent
			sent++
			g.window.start()
			wg.Go(func() {
				defer func() { <-sem }()
				g.send(ctx, r, n)
			})
		}
	}
	// The first request goes out at once, then what is due at each tick.
	fire(began)
loop:
	for limit == 0 || sent < limit {
		select {
		case <-ctx.Done():
			break loop
		case <-stop:
			break loop
		case now := <-report.C:
			g.summary(now.Sub(lastReport))
			lastReport = now
		case now := <-tick.C:
			fire(now)
		}
	}
	wg.Wait()
	g.summary(time.Since(lastReport))
	g.log.Info("load finished", g.total.attrs(time.Since(began))...)
}

// summary logs the window's counts and folds them into the total.
func (g *generator) summary(d time.Duration) {
	w := g.window.take()
	g.log.Info("load summary", w.attrs(d)...)
	g.total.add(w)
}

// send makes one request; n numbers it, to vary ids and titles.
func (g *generator) send(ctx context.Context, r request, n uint64) {
	run := ctx
	ctx, cancel := context.WithTimeout(ctx, g.cfg.timeout)
	defer cancel()
	base := g.cfg.target
	if r.api {
		base = strings.TrimSuffix(g.cfg.api, "/")
	}
	url := base + r.path
	var body io.Reader
	switch r {
	case apiBook:
		url += fmt.Sprint(n%seedBooks + 1)
	case apiAdd:
		body = bytes.NewReader(fmt.Appendf(nil, `{"title":"Load test book %d","author":"weft load","year":2026}`, n))
	}
	req, err := http.NewRequestWithContext(ctx, r.method, url, body)
	if err != nil {
		g.window.finish(0, "", 0, fmt.Errorf("%s %s: %w", r.method, url, err), "")
		return
	}
	for name, vs := range g.cfg.header {
		req.Header[name] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := g.client.Do(req)
	if err != nil {
		if run.Err() != nil {
			err = context.Canceled // the run ended, not the request
		}
		g.log.Debug("request", "kind", r.name, "url", url, "err", err)
		g.window.finish(0, "", 0, err, "")
		return
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	g.log.Debug("request", "kind", r.name, "url", url, "status", resp.StatusCode, "duration", d)
	var failure string
	if resp.StatusCode >= 500 {
		failure = fmt.Sprintf("%s %s: %s", r.method, url, resp.Status)
		// Say who failed: the mesh's proxy, the program on purpose, or the
		// program.
		if why := resp.Header.Get(proxyErrorHeader); why != "" {
			failure += " from the proxy: " + why
		} else if resp.Header.Get(chaos.Header) != "" {
			failure += " (injected by --fail-rate)"
		}
	}
	g.window.finish(resp.StatusCode, resp.Header.Get("Demo-Api-Version"), d, err, failure)
}
