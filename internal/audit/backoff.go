package audit

import "time"

// BackoffPolicy spaces the retries of an event the storage service has not acknowledged.
type BackoffPolicy struct {
	// Base is the delay after the first retryable failure; it doubles with each further one.
	Base time.Duration
	// Cap bounds the delay after a retryable failure.
	Cap time.Duration
	// Defect is the delay after a defect: slow, since someone must fix one side first, but
	// never given up.
	Defect time.Duration
}

// DefaultBackoff starts at 1 second, doubles up to 5 minutes, and retries defects every
// 5 minutes.
var DefaultBackoff = BackoffPolicy{Base: time.Second, Cap: 5 * time.Minute, Defect: 5 * time.Minute}

// Delay returns how long to wait after the failures-th consecutive failure (from 1) before
// sending again. jitter, in [0, 1), spreads the retries of many executions: a retryable
// failure waits between half and all of min(Cap, Base·2^(failures-1)); a defect waits between
// 0.9 and 1.1 times Defect. Delay is pure, so the caller supplies the randomness.
func (p BackoffPolicy) Delay(failures int, defect bool, jitter float64) time.Duration {
	jitter = min(max(jitter, 0), 1)
	if defect {
		return p.Defect - p.Defect/10 + time.Duration(jitter*float64(p.Defect/5))
	}
	d := p.Base
	for i := 1; i < failures && d < p.Cap; i++ {
		d *= 2
	}
	d = min(d, p.Cap)
	return d/2 + time.Duration(jitter*float64(d/2))
}

// Backoff returns how long to wait after the failures-th consecutive failure to deliver an
// event, err being the last one, with DefaultBackoff: a defect (see IsDefect) waits the slow
// cadence, anything else backs off exponentially.
func Backoff(failures int, err error, jitter float64) time.Duration {
	return DefaultBackoff.Delay(failures, IsDefect(err), jitter)
}
