// Package viz is the control plane's metrics scraper: it scrapes the
// /metrics page of every proxy in the configuration snapshot, keeps a short
// history of samples per proxy in memory, and answers the golden metrics
// of each service (request rate, success rate, latency quantiles, open
// connections) and of each edge between services. `weft stat`, the
// dashboard and the controller's HTTP API read through it.
//
// Only the control plane imports viz; the proxy never does. Run is called
// once; Stat and Edges are safe to call concurrently with Run and with
// each other.
package viz

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"weft.dev/weft/internal/config"
)

// Defaults of Config.
const (
	DefaultInterval  = 2 * time.Second
	DefaultRetention = 5 * time.Minute
	defaultTimeout   = 2 * time.Second
)

// maxConcurrentScrapes bounds the proxies scraped at the same time, so a
// large mesh does not open thousands of connections at once.
const maxConcurrentScrapes = 16

// maxMetricsBytes bounds one /metrics page; proxies keep label
// cardinality bounded, so a larger page is an error, not a proxy to trust.
const maxMetricsBytes = 16 << 20

// Config configures a Scraper.
type Config struct {
	// Interval between scrapes of all proxies; zero means DefaultInterval.
	Interval time.Duration
	// Retention is how long samples are kept; zero means
	// DefaultRetention. Stat and Edges windows longer than this see only
	// what is retained.
	Retention time.Duration
	// Logger for scrape failures; nil discards logs.
	Logger *slog.Logger
	// Client fetches /metrics; nil means a client with a 2s timeout.
	Client *http.Client
}

// Scraper scrapes proxies and answers service and edge statistics.
type Scraper struct {
	src      config.Source
	interval time.Duration
	keep     time.Duration
	log      *slog.Logger
	client   *http.Client
	// now is the clock; tests replace it.
	now func() time.Time

	// mu guards proxies: the per-proxy sample rings and scrape state.
	// Scrapes take it only to append results; Stat and Edges only to copy
	// the ring headers (samples are immutable once appended).
	mu      sync.RWMutex
	proxies map[string]*proxyState
}

// proxyState is the history of one proxy, keyed by proxy ID.
type proxyState struct {
	service config.ServiceKey
	// samples in scrape order, none older than the retention.
	samples []*sample
	// lastOK is whether the most recent scrape succeeded.
	lastOK bool
	// lastErr is the most recent scrape error, nil after a success.
	lastErr error
}

// New returns a Scraper of the proxies src publishes. It does no I/O.
func New(src config.Source, cfg Config) *Scraper {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: defaultTimeout}
	}
	return &Scraper{
		src:      src,
		interval: cfg.Interval,
		keep:     cfg.Retention,
		log:      cfg.Logger.With("component", "viz"),
		client:   cfg.Client,
		now:      time.Now,
		proxies:  make(map[string]*proxyState),
	}
}

// Run scrapes every proxy of the current snapshot at once and then every
// Interval, until ctx ends; it then returns nil. A round waits for all its
// scrapes, so rounds never overlap.
func (s *Scraper) Run(ctx context.Context) error {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.scrapeOnce(ctx, s.now())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// scrapeResult is the outcome of scraping one proxy.
type scrapeResult struct {
	id      string
	service config.ServiceKey
	sample  *sample
	err     error
}

// scrapeOnce scrapes all proxies of the current snapshot concurrently,
// records the samples as taken at now, and forgets proxies that left the
// snapshot.
func (s *Scraper) scrapeOnce(parent context.Context, now time.Time) {
	snap := s.src.Snapshot()
	// A round never outlives the interval by much, even with a Client
	// without timeout.
	ctx, cancel := context.WithTimeout(parent, max(s.interval, time.Second))
	defer cancel()

	results := make([]scrapeResult, 0, len(snap.Proxies))
	var (
		resMu sync.Mutex // guards results
		wg    sync.WaitGroup
		sem   = make(chan struct{}, maxConcurrentScrapes) // buffered: it is the concurrency bound
	)
	for id, p := range snap.Proxies {
		svc := config.Key(p.Service, p.Namespace)
		if p.AdminAddr == "" {
			resMu.Lock()
			results = append(results, scrapeResult{id: id, service: svc,
				err: fmt.Errorf("proxy %s has no admin address", id)})
			resMu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				resMu.Lock()
				results = append(results, scrapeResult{id: id, service: svc, err: ctx.Err()})
				resMu.Unlock()
				return
			}
			series, start, err := s.fetch(ctx, p.AdminAddr, nsOf(p))
			<-sem
			r := scrapeResult{id: id, service: svc, err: err}
			if err == nil {
				r.sample = &sample{at: now, start: start, series: series}
			}
			resMu.Lock()
			results = append(results, r)
			resMu.Unlock()
		}()
	}
	wg.Wait()
	if parent.Err() != nil {
		// Shutting down: the failures say nothing about the proxies.
		return
	}
	s.record(snap, results, now)
}

// record applies the results of one round.
func (s *Scraper) record(snap *config.Snapshot, results []scrapeResult, now time.Time) {
	oldest := now.Add(-s.keep)
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.proxies {
		if _, ok := snap.Proxies[id]; !ok {
			delete(s.proxies, id)
		}
	}
	for _, r := range results {
		st := s.proxies[r.id]
		if st == nil || st.service != r.service {
			// A new proxy, or an ID reused by another service: its old
			// history says nothing about this one.
			st = &proxyState{service: r.service}
			s.proxies[r.id] = st
		}
		if r.err != nil {
			if st.lastOK || st.lastErr == nil {
				s.log.Warn("proxy metrics unavailable", "proxy", r.id, "service", r.service, "err", r.err)
			} else {
				s.log.Debug("proxy metrics still unavailable", "proxy", r.id, "err", r.err)
			}
			st.lastOK, st.lastErr = false, r.err
		} else {
			if st.lastErr != nil {
				s.log.Info("proxy metrics available again", "proxy", r.id, "service", r.service)
			}
			st.lastOK, st.lastErr = true, nil
			st.samples = append(st.samples, r.sample)
		}
		// Drop samples past the retention. Readers hold copies of the
		// slice header, so the ring is only ever re-sliced or appended to,
		// never written in place.
		i := 0
		for i < len(st.samples) && st.samples[i].at.Before(oldest) {
			i++
		}
		st.samples = st.samples[i:]
	}
}

// fetch GETs http://addr/metrics and parses it.
func (s *Scraper) fetch(ctx context.Context, addr, ns string) (map[seriesKey]*series, float64, error) {
	url := "http://" + addr + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("scrape %s: %w", url, err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, 0, fmt.Errorf("scrape %s: status %s", url, resp.Status)
	}
	body := &limitedReader{r: resp.Body, n: maxMetricsBytes}
	series, start, err := parseMetrics(body, ns)
	if body.exceeded {
		return nil, 0, fmt.Errorf("scrape %s: page larger than %d bytes", url, maxMetricsBytes)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("scrape %s: %w", url, err)
	}
	return series, start, nil
}

// limitedReader is io.LimitReader that remembers whether the limit cut
// the input, so a truncated page is reported as too large rather than as
// a parse error.
type limitedReader struct {
	r        io.Reader
	n        int64
	exceeded bool
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		var one [1]byte
		if n, _ := l.r.Read(one[:]); n > 0 {
			l.exceeded = true
		}
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

func nsOf(p *config.Proxy) string {
	if p.Namespace == "" {
		return config.DefaultNamespace
	}
	return p.Namespace
}
