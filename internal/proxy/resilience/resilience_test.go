package resilience

import (
	"sync/atomic"
	"testing"
	"time"

	meshv1 "weft.dev/weft/api/meshv1"
)

type clock struct{ t atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *clock) advance(d time.Duration) { c.t.Add(int64(d)) }

func TestBudget(t *testing.T) {
	tests := []struct {
		name     string
		ratio    float64
		min      uint32
		requests int
		want     int // retries allowed right after the requests
	}{
		{"minimum alone", 0.2, 10, 0, 100},
		{"ratio adds to the minimum", 0.5, 1, 100, 60},
		{"defaults", 0, 0, 1000, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &clock{}
			b := NewBudget(tt.ratio, tt.min, c.now)
			for range tt.requests {
				b.Deposit()
			}
			got := 0
			for b.Withdraw() {
				got++
			}
			if got != tt.want {
				t.Errorf("got %d retries, want %d", got, tt.want)
			}
		})
	}
}

func TestBudgetForgetsOldRequests(t *testing.T) {
	c := &clock{}
	b := NewBudget(1, 1, c.now)
	for range 100 {
		b.Deposit()
	}
	c.advance(BudgetWindow + time.Second)
	got := 0
	for b.Withdraw() {
		got++
	}
	if want := 10; got != want {
		t.Errorf("got %d retries after the window passed, want the minimum %d", got, want)
	}
}

func TestBucket(t *testing.T) {
	c := &clock{}
	b := NewBucket(10, 5, c.now)
	allowed := 0
	for range 20 {
		if ok, _ := b.Take(); ok {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("burst: got %d, want 5", allowed)
	}
	_, wait := b.Take()
	if wait != 100*time.Millisecond {
		t.Errorf("wait %s, want 100ms", wait)
	}
	c.advance(time.Second)
	allowed = 0
	for range 20 {
		if ok, _ := b.Take(); ok {
			allowed++
		}
	}
	if allowed != 5 {
		t.Errorf("after 1s at 10/s with burst 5: got %d, want 5 (the bucket holds at most its burst)", allowed)
	}
}

func TestShouldRetry(t *testing.T) {
	r := NewRetry(&meshv1.RetryPolicy{MaxAttempts: 3, Retryable: true, OnStatus: []uint32{503}, OnGrpc: []uint32{14}})
	safe := NewRetry(&meshv1.RetryPolicy{MaxAttempts: 3, OnStatus: []uint32{503}})
	tests := []struct {
		name string
		r    *Retry
		n    int
		o    Outcome
		want bool
	}{
		{"listed status", r, 1, Outcome{Status: 503, GRPCStatus: -1}, true},
		{"other status", r, 1, Outcome{Status: 500, GRPCStatus: -1}, false},
		{"attempts used up", r, 3, Outcome{Status: 503, GRPCStatus: -1}, false},
		{"grpc code", r, 1, Outcome{Status: 200, GRPCStatus: 14}, true},
		{"connect failure always", safe, 1, Outcome{Failed: true}, true},
		{"status not retried unless retryable", safe, 1, Outcome{Status: 503, GRPCStatus: -1}, false},
		{"broke after reaching the app, not retryable", safe, 1, Outcome{Failed: true, Reached: true}, false},
		{"nil policy", nil, 1, Outcome{Failed: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.ShouldRetry(tt.n, tt.o); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
