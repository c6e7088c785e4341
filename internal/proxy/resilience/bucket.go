package resilience

import (
	"math"
	"sync"
	"time"
)

// Bucket is a token bucket: Rate tokens per second, holding at most Burst
// (at least 1). It starts full.
type Bucket struct {
	rate  float64
	burst float64
	now   func() time.Time

	// mu guards tokens and last.
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// NewBucket returns a full bucket. burst 0 means max(1, rate). now nil
// means time.Now.
func NewBucket(rate float64, burst uint32, now func() time.Time) *Bucket {
	b := float64(burst)
	if b == 0 {
		b = math.Max(1, math.Ceil(rate))
	}
	if now == nil {
		now = time.Now
	}
	return &Bucket{rate: rate, burst: b, now: now, tokens: b}
}

// Take takes one token. When none is left it returns false and how long
// until one is.
func (b *Bucket) Take() (bool, time.Duration) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = math.Min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	if b.rate <= 0 {
		return false, time.Hour
	}
	return false, time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}
