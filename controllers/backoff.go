package controllers

import (
	"math"
	"time"
)

// Backoff is the delay between a failed attempt and the next one: Base doubled for each retry
// already made, capped at Max, then stretched by up to Jitter (a fraction) at random so that
// executions failing together do not retry together.
type Backoff struct {
	// Base is the delay before the first retry.
	Base time.Duration
	// Max caps the delay before jitter.
	Max time.Duration
	// Jitter is the largest fraction added at random, 0 for none.
	Jitter float64
}

// DefaultBackoff is the backoff the manager uses unless told otherwise.
var DefaultBackoff = Backoff{Base: 10 * time.Second, Max: 5 * time.Minute, Jitter: 0.2}

// Delay returns the wait before retry number retry (1 for the first retry). random returns a
// number in [0, 1); it is injected so the delay is deterministic under test.
func (b Backoff) Delay(retry int32, random func() float64) time.Duration {
	if retry < 1 {
		retry = 1
	}
	d := float64(b.Base) * math.Pow(2, float64(retry-1))
	if b.Max > 0 && d > float64(b.Max) {
		d = float64(b.Max)
	}
	if b.Jitter > 0 && random != nil {
		d += d * b.Jitter * random()
	}
	return time.Duration(d)
}
