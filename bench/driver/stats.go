package main

import (
	"sort"
	"time"
)

// summary describes a sample of durations.
type summary struct {
	n                     int
	min, median, p90, max time.Duration
}

// summarize sorts a copy of d. Percentiles are nearest-rank: p90 is the
// smallest value with at least 90% of the sample at or below it.
func summarize(d []time.Duration) summary {
	if len(d) == 0 {
		return summary{}
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		if i < 0 {
			i = 0
		}
		return s[i]
	}
	return summary{n: len(s), min: s[0], median: rank(0.5), p90: rank(0.9), max: s[len(s)-1]}
}
