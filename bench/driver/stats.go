package main

import (
	"time"

	"github.com/controlfreak-go/cfk/bench/internal/benchkit"
)

// summary describes a sample of durations.
type summary struct {
	n                     int
	min, median, p90, max time.Duration
}

// summarize takes nearest-rank percentiles: p90 is the smallest value
// with at least 90% of the sample at or below it. The median is the
// nearest-rank one too, the lower middle value of an even sample (not
// benchkit.Median, the mean of the two middle ones).
func summarize(d []time.Duration) summary {
	if len(d) == 0 {
		return summary{}
	}
	return summary{n: len(d), min: benchkit.Quantile(d, 0), median: benchkit.Quantile(d, 0.5),
		p90: benchkit.Quantile(d, 0.9), max: benchkit.Quantile(d, 1)}
}
