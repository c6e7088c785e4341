// Package balance picks the endpoint for each request (HTTP) or connection
// (TCP): a backend by weight, then power-of-two-choices over peak-EWMA
// latency among that backend's endpoints, the way Finagle and Linkerd do.
//
// The load of an endpoint is its cost (an exponentially weighted moving
// average of round-trip times that jumps to a new peak immediately and
// decays with time constant Config.Decay) times its number of pending
// requests plus one, divided by its weight. P2C draws two endpoints at
// random and takes the one with the lower load: slow or busy endpoints get
// less traffic without the herding of "always the least loaded".
//
// Failure accrual: an endpoint that failed FailureThreshold times in a row
// (refused connections, and failed responses the caller reports with
// ResponseFailed: 5xx, timeouts) is ejected for a backoff (EjectBase,
// doubling up to EjectMax). When the backoff ends one probe request is let
// through (the endpoint is held back again while it is in flight): a
// success readmits the endpoint, one more failure ejects it again for twice
// as long. A successful connect resets only connect failures; a
// successful response resets both. SetAccrual changes the thresholds at
// run time (the destination's CircuitBreaker policy). When every
// endpoint of a backend is ejected, P2C still picks one (fail open), since
// refusing every request is worse than trying.
//
// Any proxy package may import balance. All methods of P2C and Endpoint
// are safe for concurrent use; Pick never takes a lock shared with Update.
package balance

import (
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoEndpoints is returned by Pick when no backend has an endpoint.
var ErrNoEndpoints = errors.New("no endpoints")

// Target describes one endpoint as the configuration gives it.
type Target struct {
	// Address is host:port, the key under which the endpoint's state
	// survives updates.
	Address string
	// Weight inside its backend; 0 means 1.
	Weight uint32
	// Meshed endpoints are reached through the proxy-to-proxy transport.
	Meshed bool
	// Identity is the SPIFFE ID of a meshed endpoint.
	Identity string
}

// Backend is a weighted group of endpoints (one service of a split).
type Backend struct {
	Service string
	// Weight relative to the other backends; 0 receives no traffic.
	Weight  uint32
	Targets []Target
}

// Config tunes a P2C. Zero values take the defaults noted.
type Config struct {
	// Decay is the time constant of the latency average; default 10s.
	Decay time.Duration
	// FailureThreshold is the number of consecutive connect failures that
	// eject an endpoint; default 3.
	FailureThreshold int
	// EjectBase is the first ejection's length; default 1s.
	EjectBase time.Duration
	// EjectMax caps the doubling ejection; default 30s.
	EjectMax time.Duration
	// Now is the clock; default time.Now. Tests inject their own.
	Now func() time.Time
	// IntN returns a random int in [0, n); default math/rand/v2.IntN.
	// It must be safe for concurrent use.
	IntN func(n int) int
	// OnEject, if not nil, is called (outside any lock) each time an
	// endpoint is ejected, with its address and the ejection's length.
	OnEject func(addr string, d time.Duration)
}

// accrual is the failure accrual in force; replaced whole by SetAccrual.
type accrual struct {
	threshold int
	base, max time.Duration
}

// P2C balances over a set of weighted backends.
type P2C struct {
	cfg Config
	set atomic.Pointer[set]
	acc atomic.Pointer[accrual]

	// mu guards states: the endpoint states by address, kept across
	// updates. Only Update takes it.
	mu     sync.Mutex
	states map[string]*Endpoint
}

type set struct {
	backends []backendSet
	total    uint64 // sum of weights of backends with endpoints
	size     int
}

type backendSet struct {
	service   string
	weight    uint64
	endpoints []*Endpoint
}

// New returns a P2C with no endpoints.
func New(cfg Config) *P2C {
	if cfg.Decay <= 0 {
		cfg.Decay = 10 * time.Second
	}
	if cfg.FailureThreshold <= 0 {
		cfg.FailureThreshold = 3
	}
	if cfg.EjectBase <= 0 {
		cfg.EjectBase = time.Second
	}
	if cfg.EjectMax <= 0 {
		cfg.EjectMax = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IntN == nil {
		cfg.IntN = rand.IntN
	}
	b := &P2C{cfg: cfg, states: map[string]*Endpoint{}}
	b.set.Store(&set{})
	b.SetAccrual(0, 0, 0)
	return b
}

// SetAccrual replaces the failure accrual's threshold and ejection
// lengths; zero values take the Config's. Endpoints keep their counts.
func (b *P2C) SetAccrual(threshold int, base, maxEject time.Duration) {
	a := &accrual{threshold: threshold, base: base, max: maxEject}
	if a.threshold <= 0 {
		a.threshold = b.cfg.FailureThreshold
	}
	if a.base <= 0 {
		a.base = b.cfg.EjectBase
	}
	if a.max <= 0 {
		a.max = b.cfg.EjectMax
	}
	a.max = max(a.max, a.base)
	b.acc.Store(a)
}

// Update replaces the backends. Endpoints keep their latency and failure
// state when their address stays; endpoints that left are never picked
// again. It returns the addresses that left, so callers can close what they
// hold for them.
func (b *P2C) Update(backends []Backend) (removed []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	next := &set{}
	seen := map[string]bool{}
	for _, be := range backends {
		bs := backendSet{service: be.Service, weight: uint64(be.Weight)}
		for _, t := range be.Targets {
			if t.Address == "" {
				continue
			}
			ep := b.states[t.Address]
			if ep == nil {
				ep = &Endpoint{cfg: &b.cfg, acc: &b.acc}
				b.states[t.Address] = ep
			}
			tc := t
			if tc.Weight == 0 {
				tc.Weight = 1
			}
			ep.target.Store(&tc)
			seen[t.Address] = true
			bs.endpoints = append(bs.endpoints, ep)
		}
		if bs.weight > 0 && len(bs.endpoints) > 0 {
			next.backends = append(next.backends, bs)
			next.total += bs.weight
			next.size += len(bs.endpoints)
		}
	}
	for addr := range b.states {
		if !seen[addr] {
			delete(b.states, addr)
			removed = append(removed, addr)
		}
	}
	b.set.Store(next)
	return removed
}

// Endpoint returns the state of addr, creating it when addr is new. A new
// endpoint is picked only once an Update includes it; one that no Update
// includes is forgotten at the next Update.
func (b *P2C) Endpoint(addr string) *Endpoint {
	b.mu.Lock()
	defer b.mu.Unlock()
	ep := b.states[addr]
	if ep == nil {
		ep = &Endpoint{cfg: &b.cfg, acc: &b.acc}
		ep.target.Store(&Target{Address: addr, Weight: 1})
		b.states[addr] = ep
	}
	return ep
}

// Len returns the number of endpoints that can receive traffic.
func (b *P2C) Len() int { return b.set.Load().size }

// Pick chooses an endpoint. It returns ErrNoEndpoints when there is none.
func (b *P2C) Pick() (*Endpoint, error) { return b.pickFrom(b.set.Load()) }

func (b *P2C) pickFrom(s *set) (*Endpoint, error) {
	if s.total == 0 {
		return nil, ErrNoEndpoints
	}
	bs := &s.backends[0]
	if len(s.backends) > 1 {
		r := uint64(b.cfg.IntN(int(s.total)))
		for i := range s.backends {
			if r < s.backends[i].weight {
				bs = &s.backends[i]
				break
			}
			r -= s.backends[i].weight
		}
	}
	return b.pickIn(bs.endpoints), nil
}

func (b *P2C) pickIn(eps []*Endpoint) *Endpoint {
	n := len(eps)
	if n == 1 {
		return eps[0]
	}
	i := b.cfg.IntN(n)
	j := b.cfg.IntN(n - 1)
	if j >= i {
		j++
	}
	now := b.cfg.Now()
	x, y := eps[i], eps[j]
	xe, xl := x.snapshot(now)
	ye, yl := y.snapshot(now)
	switch {
	case xe && ye:
		// Both drawn are ejected: any healthy endpoint beats them.
		for k := range n {
			if e := eps[(i+k)%n]; !e.ejected(now) {
				return e
			}
		}
	case xe:
		return y
	case ye:
		return x
	}
	if yl < xl {
		x = y
	}
	x.claimProbe(now)
	return x
}

// Endpoint is the balancing state of one address. Callers bracket each
// request (or connection) with Start and Finish, and report connect
// outcomes with ConnectFailed and ConnectSucceeded.
type Endpoint struct {
	cfg      *Config
	acc      *atomic.Pointer[accrual]
	target   atomic.Pointer[Target]
	pending  atomic.Int64
	ejecting atomic.Bool
	// failing mirrors failures > 0, so a success need not lock.
	failing atomic.Bool

	// mu guards the latency average and the failure accrual below.
	mu       sync.Mutex
	cost     float64   // peak-EWMA round-trip time, nanoseconds
	stamp    time.Time // when cost was last updated
	failures int       // consecutive failures (connects and responses)
	connect  bool      // the last failure was a connect
	// backoff is the current ejection length, 0 when not ejected since the
	// last success; ejecting mirrors backoff > 0 for a lock-free check.
	backoff   time.Duration
	ejectedTo time.Time
}

// Target returns the endpoint's configuration (the newest one given).
func (e *Endpoint) Target() Target { return *e.target.Load() }

// Address returns the endpoint's address.
func (e *Endpoint) Address() string { return e.target.Load().Address }

// Start marks a request or connection in flight and returns its start time
// for Finish.
func (e *Endpoint) Start() time.Time {
	e.pending.Add(1)
	return e.cfg.Now()
}

// Finish ends what Start began, feeds its round-trip time to the latency
// average and returns it.
func (e *Endpoint) Finish(start time.Time) time.Duration {
	e.pending.Add(-1)
	return e.Observe(start)
}

// Observe feeds the time since start to the latency average without
// ending anything, and returns it. Opaque TCP uses it for the connect
// time: a connection's lifetime says nothing about the endpoint's speed,
// while it stays pending until it closes.
func (e *Endpoint) Observe(start time.Time) time.Duration {
	now := e.cfg.Now()
	d := max(now.Sub(start), 0)
	rtt := float64(d)
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.decayed(now)
	if rtt > c {
		// Peak sensitivity: a slower response counts at once.
		e.cost = rtt
	} else {
		w := math.Exp(-float64(now.Sub(e.stamp)) / float64(e.cfg.Decay))
		e.cost = e.cost*w + rtt*(1-w)
	}
	e.stamp = now
	return d
}

// Abandon ends what Start began without a latency sample (the request
// never reached the endpoint) and returns the time since start.
func (e *Endpoint) Abandon(start time.Time) time.Duration {
	e.pending.Add(-1)
	return max(e.cfg.Now().Sub(start), 0)
}

// ConnectFailed records a failed connection attempt.
func (e *Endpoint) ConnectFailed() { e.fail(true) }

// ResponseFailed records a failed response: a 5xx, a timeout, a broken
// connection.
func (e *Endpoint) ResponseFailed() { e.fail(false) }

func (e *Endpoint) fail(connect bool) {
	now := e.cfg.Now()
	a := e.acc.Load()
	e.mu.Lock()
	e.failures++
	e.failing.Store(true)
	e.connect = connect
	if e.failures < a.threshold {
		e.mu.Unlock()
		return
	}
	if e.backoff == 0 {
		e.backoff = a.base
	} else {
		e.backoff = min(2*e.backoff, a.max)
	}
	e.ejectedTo = now.Add(e.backoff)
	e.ejecting.Store(true)
	d := e.backoff
	e.mu.Unlock()
	if e.cfg.OnEject != nil {
		e.cfg.OnEject(e.Address(), d)
	}
}

// ConnectSucceeded resets failure accrual, unless the failures counted
// were responses: a connect says nothing about those.
func (e *Endpoint) ConnectSucceeded() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failures > 0 && !e.connect {
		return
	}
	e.reset()
}

// ResponseSucceeded resets failure accrual: a probe readmits the endpoint.
func (e *Endpoint) ResponseSucceeded() {
	if !e.failing.Load() {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failures > 0 {
		e.reset()
	}
}

// reset clears the accrual; e.mu must be held.
func (e *Endpoint) reset() {
	e.failures = 0
	e.backoff = 0
	e.ejectedTo = time.Time{}
	e.ejecting.Store(false)
	e.failing.Store(false)
}

// claimProbe is called for the picked endpoint: when its ejection is over
// but it has not succeeded since, this pick is the probe, and the endpoint
// is held back for another backoff until the probe reports.
func (e *Endpoint) claimProbe(now time.Time) {
	if !e.ejecting.Load() {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.backoff > 0 && !now.Before(e.ejectedTo) {
		e.ejectedTo = now.Add(e.backoff)
	}
}

// Ejected reports whether the endpoint is currently ejected.
func (e *Endpoint) Ejected() bool { return e.ejected(e.cfg.Now()) }

func (e *Endpoint) ejected(now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return now.Before(e.ejectedTo)
}

// penalty is the load of an endpoint with requests in flight but no
// latency sample yet: high, so a new endpoint is not flooded before its
// first response, but ordered by pending so they still spread.
const penalty = float64(time.Second)

// snapshot returns whether the endpoint is ejected and its load, under
// one lock.
func (e *Endpoint) snapshot(now time.Time) (ejected bool, load float64) {
	pending := float64(e.pending.Load())
	e.mu.Lock()
	ejected = now.Before(e.ejectedTo)
	c := e.decayed(now)
	e.mu.Unlock()
	w := float64(e.target.Load().Weight)
	if c == 0 && pending > 0 {
		return ejected, (penalty + pending) / w
	}
	return ejected, c * (pending + 1) / w
}

// decayed returns the cost as of now; e.mu must be held.
func (e *Endpoint) decayed(now time.Time) float64 {
	if e.cost == 0 {
		return 0
	}
	td := float64(now.Sub(e.stamp))
	if td <= 0 {
		return e.cost
	}
	return e.cost * math.Exp(-td/float64(e.cfg.Decay))
}
