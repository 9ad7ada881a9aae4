package benchkit

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"time"
)

// Quantile is the nearest-rank q-quantile (0 <= q <= 1) of xs: the
// smallest value with at least q of the sample at or below it. Quantile
// (xs, 0) is the minimum, Quantile(xs, 1) the maximum. It sorts a copy;
// an empty sample gives the zero value.
func Quantile[T cmp.Ordered](xs []T, q float64) T {
	var zero T
	if len(xs) == 0 {
		return zero
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	// The 0.999999 rounds q·n up without taking an exact product, such as
	// 0.5·10, to the next rank.
	i := int(q*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Median is the middle value of xs, or the mean of the two middle ones
// (unlike Quantile(xs, 0.5), which takes the lower). It is 0 for an
// empty sample.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Millis is d in milliseconds, for the reports' tables.
func Millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// MedianInterval is a percentile-bootstrap confidence interval, at level
// (0.95 for 95 %), for the median of xs: the median of 10 000 samples
// drawn from xs with replacement, cut at both tails. The draw is seeded,
// so one sample always gives one interval. With fewer than two values
// the interval is the value itself.
func MedianInterval(xs []float64, level float64) (lo, hi float64) {
	if len(xs) < 2 {
		m := Median(xs)
		return m, m
	}
	const resamples = 10000
	rng := rand.New(rand.NewPCG(1, 2))
	meds := make([]float64, resamples)
	draw := make([]float64, len(xs))
	for i := range meds {
		for j := range draw {
			draw[j] = xs[rng.IntN(len(xs))]
		}
		meds[i] = Median(draw)
	}
	tail := (1 - level) / 2
	return Quantile(meds, tail), Quantile(meds, 1-tail)
}
