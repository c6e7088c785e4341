package balance

import (
	"container/heap"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a manual clock for deterministic tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTest(seed uint64) (*P2C, *clock) {
	clk := &clock{now: time.Unix(1_000_000, 0)}
	r := rand.New(rand.NewPCG(seed, seed+1))
	return New(Config{Now: clk.Now, IntN: r.IntN}), clk
}

func targets(addrs ...string) []Target {
	var ts []Target
	for _, a := range addrs {
		ts = append(ts, Target{Address: a})
	}
	return ts
}

type finish struct {
	at    time.Time
	ep    *Endpoint
	start time.Time
}

type finishes []finish

func (f finishes) Len() int           { return len(f) }
func (f finishes) Less(i, j int) bool { return f[i].at.Before(f[j].at) }
func (f finishes) Swap(i, j int)      { f[i], f[j] = f[j], f[i] }
func (f *finishes) Push(x any)        { *f = append(*f, x.(finish)) }
func (f *finishes) Pop() any {
	old := *f
	x := old[len(old)-1]
	*f = old[:len(old)-1]
	return x
}

// simulate sends n requests, one every interval, to endpoints whose
// latency is given by rtt, with requests overlapping in virtual time. It
// returns the number of picks per address.
func simulate(t *testing.T, b *P2C, clk *clock, n int, interval time.Duration, rtt map[string]time.Duration) map[string]int {
	t.Helper()
	picks := map[string]int{}
	var pending finishes
	now := clk.Now()
	for i := range n {
		arrival := now.Add(time.Duration(i) * interval)
		for pending.Len() > 0 && !pending[0].at.After(arrival) {
			f := heap.Pop(&pending).(finish)
			clk.Set(f.at)
			f.ep.Finish(f.start)
		}
		clk.Set(arrival)
		ep, err := b.Pick()
		if err != nil {
			t.Fatal(err)
		}
		picks[ep.Address()]++
		start := ep.Start()
		heap.Push(&pending, finish{at: arrival.Add(rtt[ep.Address()]), ep: ep, start: start})
	}
	for pending.Len() > 0 {
		f := heap.Pop(&pending).(finish)
		clk.Set(f.at)
		f.ep.Finish(f.start)
	}
	return picks
}

func TestSlowEndpointGetsLessTraffic(t *testing.T) {
	tests := []struct {
		name     string
		rtt      map[string]time.Duration
		slow     string
		maxShare float64 // of the slow endpoint; uniform would be 1/len
	}{
		{
			name:     "one slow of two",
			rtt:      map[string]time.Duration{"fast:1": time.Millisecond, "slow:1": 50 * time.Millisecond},
			slow:     "slow:1",
			maxShare: 0.10,
		},
		{
			name: "one slow of four",
			rtt: map[string]time.Duration{
				"fast:1": time.Millisecond, "fast:2": 2 * time.Millisecond,
				"fast:3": time.Millisecond, "slow:1": 40 * time.Millisecond,
			},
			slow:     "slow:1",
			maxShare: 0.08,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, clk := newTest(7)
			var addrs []string
			for a := range tt.rtt {
				addrs = append(addrs, a)
			}
			b.Update([]Backend{{Service: "api.default", Weight: 1, Targets: targets(addrs...)}})
			const n = 5000
			picks := simulate(t, b, clk, n, 500*time.Microsecond, tt.rtt)
			got := float64(picks[tt.slow]) / n
			if got > tt.maxShare {
				t.Errorf("slow endpoint got %.3f of picks (%v), want at most %.3f", got, picks, tt.maxShare)
			}
			for a := range tt.rtt {
				if picks[a] == 0 {
					t.Errorf("endpoint %s never picked: %v", a, picks)
				}
			}
		})
	}
}

func TestEqualEndpointsShareTraffic(t *testing.T) {
	b, clk := newTest(3)
	rtt := map[string]time.Duration{"a:1": time.Millisecond, "b:1": time.Millisecond, "c:1": time.Millisecond}
	b.Update([]Backend{{Weight: 1, Targets: targets("a:1", "b:1", "c:1")}})
	const n = 6000
	picks := simulate(t, b, clk, n, 400*time.Microsecond, rtt)
	for a, got := range picks {
		if share := float64(got) / n; share < 0.2 || share > 0.47 {
			t.Errorf("%s got share %.3f (%v), want about 1/3", a, share, picks)
		}
	}
}

func TestRemovedEndpointIsNeverPicked(t *testing.T) {
	b, _ := newTest(1)
	b.Update([]Backend{{Weight: 1, Targets: targets("a:1", "b:1", "c:1")}})
	before := map[string]*Endpoint{}
	for range 300 {
		ep, err := b.Pick()
		if err != nil {
			t.Fatal(err)
		}
		before[ep.Address()] = ep
	}
	if len(before) != 3 {
		t.Fatalf("got picks of %d endpoints, want 3", len(before))
	}
	removed := b.Update([]Backend{{Weight: 1, Targets: targets("a:1", "c:1")}})
	if len(removed) != 1 || removed[0] != "b:1" {
		t.Fatalf("got removed %v, want [b:1]", removed)
	}
	for range 1000 {
		ep, err := b.Pick()
		if err != nil {
			t.Fatal(err)
		}
		if ep.Address() == "b:1" {
			t.Fatal("picked removed endpoint b:1")
		}
		if ep != before[ep.Address()] {
			t.Fatalf("state of %s was not kept across the update", ep.Address())
		}
	}
}

func TestNoEndpoints(t *testing.T) {
	tests := []struct {
		name     string
		backends []Backend
	}{
		{"nothing", nil},
		{"empty backend", []Backend{{Weight: 1}}},
		{"zero weight", []Backend{{Weight: 0, Targets: targets("a:1")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := newTest(1)
			b.Update(tt.backends)
			_, err := b.Pick()
			if !errors.Is(err, ErrNoEndpoints) {
				t.Fatalf("got %v, want ErrNoEndpoints", err)
			}
		})
	}
}

func TestWeightedBackends(t *testing.T) {
	tests := []struct {
		name             string
		w1, w2           uint32
		wantLo, wantHi   float64 // share of v2
		emptyV1          bool
		wantNeverV2      bool
		wantOnlyV2Picked bool
	}{
		{name: "90/10", w1: 90, w2: 10, wantLo: 0.07, wantHi: 0.13},
		{name: "50/50", w1: 1, w2: 1, wantLo: 0.45, wantHi: 0.55},
		{name: "100/0", w1: 100, w2: 0, wantLo: 0, wantHi: 0},
		{name: "empty backend gets nothing", w1: 50, w2: 50, emptyV1: true, wantLo: 1, wantHi: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := newTest(11)
			v1 := targets("v1a:1", "v1b:1")
			if tt.emptyV1 {
				v1 = nil
			}
			b.Update([]Backend{
				{Service: "api-v1", Weight: tt.w1, Targets: v1},
				{Service: "api-v2", Weight: tt.w2, Targets: targets("v2a:1", "v2b:1")},
			})
			const n = 10000
			v2 := 0
			for range n {
				ep, err := b.Pick()
				if err != nil {
					t.Fatal(err)
				}
				if ep.Address()[:2] == "v2" {
					v2++
				}
			}
			got := float64(v2) / n
			if got < tt.wantLo || got > tt.wantHi {
				t.Errorf("v2 share %.3f, want in [%.2f, %.2f]", got, tt.wantLo, tt.wantHi)
			}
		})
	}
}

func TestFailureAccrualEjects(t *testing.T) {
	b, clk := newTest(5)
	b.Update([]Backend{{Weight: 1, Targets: targets("bad:1", "good:1", "good:2")}})
	var bad *Endpoint
	for bad == nil {
		ep, _ := b.Pick()
		if ep.Address() == "bad:1" {
			bad = ep
		}
	}
	countBad := func(n int) int {
		c := 0
		for range n {
			ep, _ := b.Pick()
			if ep == bad {
				c++
			}
		}
		return c
	}
	bad.ConnectFailed()
	bad.ConnectFailed()
	if bad.Ejected() {
		t.Fatal("ejected after 2 failures, want threshold 3")
	}
	bad.ConnectFailed()
	if got := countBad(1000); got != 0 {
		t.Fatalf("ejected endpoint picked %d times", got)
	}
	clk.Add(1100 * time.Millisecond) // first backoff (1s) is over
	if got := countBad(1000); got == 0 {
		t.Fatal("endpoint still avoided after its backoff ended")
	}
	bad.ConnectFailed() // fails again: ejected for 2s
	clk.Add(1500 * time.Millisecond)
	if got := countBad(1000); got != 0 {
		t.Fatalf("re-ejected endpoint picked %d times within its doubled backoff", got)
	}
	clk.Add(time.Second)
	bad.ConnectSucceeded()
	if bad.Ejected() {
		t.Fatal("still ejected after a successful connect")
	}
}

func TestAllEjectedFailsOpen(t *testing.T) {
	b, _ := newTest(5)
	b.Update([]Backend{{Weight: 1, Targets: targets("a:1", "b:1")}})
	for range 100 {
		ep, _ := b.Pick()
		ep.ConnectFailed()
		ep.ConnectFailed()
		ep.ConnectFailed()
	}
	if _, err := b.Pick(); err != nil {
		t.Fatalf("got %v, want a pick while all endpoints are ejected", err)
	}
}

func TestConcurrentPickAndUpdate(t *testing.T) {
	b := New(Config{})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if ep, err := b.Pick(); err == nil {
					ep.Finish(ep.Start())
				}
			}
		}()
	}
	for i := range 200 {
		b.Update([]Backend{{Weight: 1, Targets: targets("a:1", "b:1", []string{"c:1", "d:1"}[i%2])}})
	}
	close(stop)
	wg.Wait()
}

func BenchmarkPick(b *testing.B) {
	p := New(Config{})
	p.Update([]Backend{{Weight: 1, Targets: targets("a:1", "b:1", "c:1", "d:1")}})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ep, _ := p.Pick()
			ep.Finish(ep.Start())
		}
	})
}

func BenchmarkPickSerial(b *testing.B) {
	p := New(Config{})
	p.Update([]Backend{{Weight: 1, Targets: targets("a:1", "b:1", "c:1", "d:1")}})
	b.ReportAllocs()
	for b.Loop() {
		ep, _ := p.Pick()
		ep.Finish(ep.Start())
	}
}
