package balance

import "testing"

func TestPickerSharesState(t *testing.T) {
	b := New(Config{FailureThreshold: 1})
	// A rule's backend the destination does not send traffic to: the
	// Picker makes its state, the Update keeps it.
	p := b.Picker([]Backend{{Service: "v2", Weight: 1, Targets: []Target{{Address: "a:1"}}}})
	b.Update([]Backend{{Service: "v1", Weight: 1, Targets: []Target{{Address: "b:1"}}}, {Service: "v2", Weight: 0, Targets: []Target{{Address: "a:1"}}}})
	ep, err := p.Pick()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ep.Address(), "a:1"; got != want {
		t.Fatalf("picked %s, want %s", got, want)
	}
	if got := b.Endpoint("a:1"); got != ep {
		t.Error("the Picker's endpoint is not the P2C's: latency and failures would not be shared")
	}
	ep.ResponseFailed() // must not crash: accrual applies to a Picker's endpoints too
	if !b.Endpoint("a:1").Ejected() {
		t.Error("a failure past the threshold did not eject the endpoint")
	}
	for range 100 {
		if e, _ := b.Pick(); e.Address() != "b:1" {
			t.Fatalf("the destination picked %s, a backend of weight 0", e.Address())
		}
	}
}
