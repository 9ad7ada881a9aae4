package benchkit

import (
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	// Unsorted on purpose: Quantile sorts a copy.
	xs := []float64{7, 1, 10, 3, 5, 9, 2, 8, 4, 6}
	for _, tc := range []struct {
		q    float64
		want float64
	}{
		{0, 1}, {0.1, 1}, {0.11, 2}, {0.5, 5}, {0.9, 9}, {0.91, 10}, {1, 10},
	} {
		if got := Quantile(xs, tc.q); got != tc.want {
			t.Errorf("Quantile(1..10, %v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if xs[0] != 7 {
		t.Error("Quantile sorted its argument")
	}
	if got := Quantile([]float64(nil), 0.5); got != 0 {
		t.Errorf("Quantile of nothing = %v, want 0", got)
	}
	// Durations, as bench/driver summarizes them: p90 of 3 is the largest.
	ds := []time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond}
	if got := Quantile(ds, 0.9); got != 3*time.Millisecond {
		t.Errorf("Quantile(1,2,3 ms, 0.9) = %v, want 3ms", got)
	}
	if got := Quantile(ds, 0.5); got != 2*time.Millisecond {
		t.Errorf("Quantile(1,2,3 ms, 0.5) = %v, want 2ms", got)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{4}, 4},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5}, // the mean of the two middle ones
	} {
		if got := Median(tc.xs); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.xs, got, tc.want)
		}
	}
	// Median and Quantile(0.5) differ on an even sample.
	if m, q := Median([]float64{1, 2}), Quantile([]float64{1, 2}, 0.5); m != 1.5 || q != 1 {
		t.Errorf("Median(1,2) = %v, Quantile(1,2; 0.5) = %v; want 1.5 and 1", m, q)
	}
}

func TestMillis(t *testing.T) {
	if got := Millis(1500 * time.Microsecond); got != 1.5 {
		t.Errorf("Millis(1.5ms) = %v", got)
	}
}

func TestMedianInterval(t *testing.T) {
	// A tight sample gives a tight interval around its median, a spread
	// one a wide interval; both contain the median.
	tight := []float64{0.99, 1.00, 1.01, 1.00, 0.995, 1.005, 1.0, 0.998, 1.002, 1.001}
	lo, hi := MedianInterval(tight, 0.95)
	if m := Median(tight); lo > m || hi < m || hi-lo > 0.011 {
		t.Errorf("tight sample: interval [%v, %v] around median %v", lo, hi, m)
	}
	wide := []float64{0.5, 0.7, 0.9, 1.0, 1.1, 1.3, 1.5, 0.6, 1.4, 1.2}
	wlo, whi := MedianInterval(wide, 0.95)
	if whi-wlo < 0.2 || wlo > Median(wide) || whi < Median(wide) {
		t.Errorf("wide sample: interval [%v, %v]", wlo, whi)
	}
	// Seeded: the same sample, the same interval.
	if lo2, hi2 := MedianInterval(tight, 0.95); lo2 != lo || hi2 != hi {
		t.Errorf("not reproducible: [%v, %v] then [%v, %v]", lo, hi, lo2, hi2)
	}
	if lo, hi := MedianInterval([]float64{3}, 0.95); lo != 3 || hi != 3 {
		t.Errorf("one value: [%v, %v]", lo, hi)
	}
}
