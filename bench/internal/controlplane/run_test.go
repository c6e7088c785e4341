package controlplane

import "testing"

func TestPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	tests := []struct {
		name string
		xs   []float64
		p    float64
		want float64
	}{
		{"none", nil, 0.5, 0},
		{"median", xs, 0.5, 5},
		{"p99 is the largest of ten", xs, 0.99, 10},
		{"max", xs, 1, 10},
		{"one", []float64{3}, 0.99, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.xs, tt.p); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if xs[0] != 5 {
		t.Errorf("got %v after percentile, want the input unsorted", xs)
	}
}
