package main

import (
	"math/bits"
	"time"
)

// histogram counts latencies in microseconds in log-linear buckets: exact
// below 128 µs, then 64 buckets per power of two (under 1.6% error). It is
// cheap to record into and to merge, so every receiver keeps its own.
type histogram struct {
	counts [128 + 40*64]uint64
	n      uint64
	max    time.Duration
}

func bucketOf(us uint64) int {
	if us < 128 {
		return int(us)
	}
	shift := bits.Len64(us) - 7
	top := us >> shift // in [64, 128)
	i := 128 + (shift-1)*64 + int(top-64)
	return min(i, len(histogram{}.counts)-1)
}

// upperOf is the largest value, in microseconds, that falls in bucket i.
func upperOf(i int) uint64 {
	if i < 128 {
		return uint64(i)
	}
	shift := (i-128)/64 + 1
	top := uint64((i-128)%64 + 64)
	return (top+1)<<shift - 1
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d/time.Microsecond))]++
	h.n++
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	if o == nil {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the latency below which a fraction q of the samples fall,
// rounded up to its bucket's upper bound; 0 without samples.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(upperOf(i))*time.Microsecond, h.max)
		}
	}
	return h.max
}
