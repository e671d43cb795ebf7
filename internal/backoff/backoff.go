// Package backoff computes capped exponential delays with jitter for
// reconnect loops.
package backoff

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Policy is a capped exponential backoff. Zero fields take the defaults:
// Base 100ms, Max 30s, Multiplier 2, Jitter 0.2.
type Policy struct {
	Base       time.Duration
	Max        time.Duration
	Multiplier float64
	// Jitter spreads each delay uniformly over ±Jitter of its value (0..1).
	Jitter float64
}

func (p Policy) withDefaults() Policy {
	if p.Base <= 0 {
		p.Base = 100 * time.Millisecond
	}
	if p.Max <= 0 {
		p.Max = 30 * time.Second
	}
	if p.Max < p.Base {
		p.Max = p.Base
	}
	if p.Multiplier < 1 {
		p.Multiplier = 2
	}
	if p.Jitter <= 0 || p.Jitter > 1 {
		p.Jitter = 0.2
	}
	return p
}

// Delay returns the delay before retry number attempt (0 for the first
// retry): Base×Multiplier^attempt capped at Max, then jittered, and never
// above Max.
func (p Policy) Delay(attempt int) time.Duration {
	p = p.withDefaults()
	d := float64(p.Base)
	for i := 0; i < attempt && d < float64(p.Max); i++ {
		d *= p.Multiplier
	}
	d = min(d, float64(p.Max))
	d *= 1 + p.Jitter*(2*rand.Float64()-1)
	return time.Duration(min(d, float64(p.Max)))
}

// ErrReturned is what Loop reports to failed for an attempt that returned
// nil before ctx ended: watches are meant to run until they fail.
var ErrReturned = errors.New("returned without an error before it was stopped")

// Loop calls attempt until ctx ends. After an attempt returns an error it
// calls failed (when not nil) with the error and the wait before the next
// attempt, then waits: Delay(n) after the n-th failure in a row. An attempt
// that ran longer than the policy's Max counts as a success and resets n,
// so a connection that served for a while reconnects quickly. Loop returns
// when ctx ends, never earlier.
func Loop(ctx context.Context, p Policy, attempt func(context.Context) error, failed func(err error, wait time.Duration)) {
	p = p.withDefaults()
	failures := 0
	for ctx.Err() == nil {
		start := time.Now()
		err := attempt(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = ErrReturned
		}
		if time.Since(start) > p.Max {
			failures = 0
		}
		wait := p.Delay(failures)
		failures++
		if failed != nil {
			failed(err, wait)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}
