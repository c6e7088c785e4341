package schedule

import (
	"context"
	"errors"
	"slices"
	"testing"
)

func TestRotate(t *testing.T) {
	paths := []string{"direct", "a", "b", "c"}
	tests := []struct {
		rep  int
		want []string
	}{
		{1, []string{"direct", "a", "b", "c"}},
		{2, []string{"direct", "b", "c", "a"}},
		{3, []string{"direct", "c", "a", "b"}},
		{4, []string{"direct", "a", "b", "c"}},
		{0, []string{"direct", "c", "a", "b"}}, // no panic below 1
	}
	for _, tt := range tests {
		if got := Rotate(paths, tt.rep); !slices.Equal(got, tt.want) {
			t.Errorf("Rotate(rep %d) = %v, want %v", tt.rep, got, tt.want)
		}
	}
	if got := Rotate([]string{"direct", "a"}, 2); !slices.Equal(got, []string{"direct", "a"}) {
		t.Errorf("Rotate of one pair = %v, want it unchanged", got)
	}
	if !slices.Equal(paths, []string{"direct", "a", "b", "c"}) {
		t.Errorf("Rotate changed its input: %v", paths)
	}
}

func TestQuietest(t *testing.T) {
	tests := []struct {
		name     string
		q        Quiet
		foreign  []float64 // of the successive attempts
		want     float64   // foreign CPU of the window kept
		attempts int
	}{
		{"off: one window whatever the noise", Quiet{Below: 0, Retries: 5}, []float64{1.5}, 1.5, 1},
		{"quiet at once", Quiet{Below: 0.3, Retries: 2}, []float64{0.1}, 0.1, 1},
		{"quiet at the second", Quiet{Below: 0.3, Retries: 2}, []float64{0.9, 0.2}, 0.2, 2},
		{"never quiet: the quietest of all", Quiet{Below: 0.3, Retries: 2}, []float64{0.9, 0.5, 0.7}, 0.5, 3},
		{"no retries", Quiet{Below: 0.3}, []float64{0.9}, 0.9, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			got, n, err := Quietest(context.Background(), tt.q, func() (float64, error) {
				calls++
				return tt.foreign[calls-1], nil
			}, func(f float64) float64 { return f })
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want || n != tt.attempts || calls != tt.attempts {
				t.Errorf("got window %v after %d attempts (%d calls), want %v after %d", got, n, calls, tt.want, tt.attempts)
			}
		})
	}
	boom := errors.New("boom")
	if _, _, err := Quietest(context.Background(), Quiet{Below: 0.3, Retries: 2}, func() (float64, error) { return 0, boom },
		func(f float64) float64 { return f }); !errors.Is(err, boom) {
		t.Errorf("got %v, want the measurement's error", err)
	}
}

func TestForeign(t *testing.T) {
	before := Usage{Busy: 10e9}
	after := Usage{Busy: 13e9}
	after.Self.CPU = 2e9 // of the 3 s busy, 2 were the harness's own
	if got := after.Foreign(before, 2e9); got != 0.5 {
		t.Errorf("got %v vCPU, want 0.5 (1 s of others' CPU over 2 s)", got)
	}
	after.Self.CPU = 4e9
	if got := after.Foreign(before, 2e9); got != 0 {
		t.Errorf("got %v vCPU, want 0 when the harness's own CPU exceeds the machine's (tick rounding)", got)
	}
}
