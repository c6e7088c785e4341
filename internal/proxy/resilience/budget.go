package resilience

import (
	"sync"
	"time"
)

// Budget defaults (Linkerd's).
const (
	DefaultBudgetRatio = 0.2
	DefaultBudgetMin   = 10
	// BudgetWindow is how long a request's deposit counts.
	BudgetWindow = 10 * time.Second
)

const budgetSlots = 10

// Budget bounds retries to a destination: in any BudgetWindow, retries
// may number at most Ratio times the requests of that window plus
// MinPerSecond times the window's length in seconds. Over a run of T
// seconds with N requests, retries therefore stay below
// Ratio*N + MinPerSecond*(T + BudgetWindow), whatever fails: no retry
// storm.
type Budget struct {
	ratio float64
	min   float64 // retries allowed per window regardless of traffic
	now   func() time.Time

	// mu guards the ring of per-second slots.
	mu        sync.Mutex
	slotStart time.Time // start of the newest slot
	cur       int
	deposits  [budgetSlots]float64
	withdraws [budgetSlots]float64
}

// NewBudget returns a Budget; ratio <= 0 and minPerSecond == 0 take the
// defaults (0.2 and 10/s). now is the clock; nil means time.Now.
func NewBudget(ratio float64, minPerSecond uint32, now func() time.Time) *Budget {
	if ratio <= 0 {
		ratio = DefaultBudgetRatio
	}
	if minPerSecond == 0 {
		minPerSecond = DefaultBudgetMin
	}
	if now == nil {
		now = time.Now
	}
	return &Budget{ratio: ratio, min: float64(minPerSecond) * BudgetWindow.Seconds(), now: now}
}

// Ratio returns the budget's ratio.
func (b *Budget) Ratio() float64 { return b.ratio }

// rotate advances the ring to now; b.mu must be held.
func (b *Budget) rotate(now time.Time) {
	slot := BudgetWindow / budgetSlots
	if b.slotStart.IsZero() {
		b.slotStart = now
		return
	}
	for n := 0; now.Sub(b.slotStart) >= slot && n <= budgetSlots; n++ {
		b.slotStart = b.slotStart.Add(slot)
		b.cur = (b.cur + 1) % budgetSlots
		b.deposits[b.cur], b.withdraws[b.cur] = 0, 0
	}
	if now.Sub(b.slotStart) >= slot {
		b.slotStart = now // a long idle gap: the whole ring is empty
	}
}

// Deposit records a request (a first attempt).
func (b *Budget) Deposit() {
	b.mu.Lock()
	b.rotate(b.now())
	b.deposits[b.cur]++
	b.mu.Unlock()
}

// Withdraw takes one retry from the budget; false means the budget is
// spent and the failure must be answered as it is.
func (b *Budget) Withdraw() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rotate(b.now())
	var dep, wd float64
	for i := range budgetSlots {
		dep += b.deposits[i]
		wd += b.withdraws[i]
	}
	if wd+1 > b.ratio*dep+b.min {
		return false
	}
	b.withdraws[b.cur]++
	return true
}
