package breaker

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Defaults used by [Settings.WithDefaults] for zero-valued fields, and the
// bounds [Settings.Validate] enforces.
const (
	// DefaultWindow is the rolling window when Settings.Window is zero.
	DefaultWindow = 10 * time.Second
	// DefaultBuckets is the number of window buckets when Settings.Buckets is zero.
	DefaultBuckets = 10
	// MaxBuckets caps Settings.Buckets, so a rule document cannot make a
	// breaker allocate without bound.
	MaxBuckets = 1000
	// DefaultMinRequests is the minimum call count when Settings.MinRequests is zero.
	DefaultMinRequests = 20
	// DefaultFailureRatio is the failure ratio when Settings.FailureRatio is zero.
	DefaultFailureRatio = 0.5
	// DefaultSlowCallRatio is the slow-call ratio when Settings.SlowCallRatio is zero.
	DefaultSlowCallRatio = 1.0
	// DefaultOpenBase is the first open period when Settings.OpenBase is zero.
	DefaultOpenBase = time.Second
	// DefaultOpenMax is the open-period cap when Settings.OpenMax is zero.
	DefaultOpenMax = 60 * time.Second
	// DefaultMultiplier is the open-period growth when Settings.Multiplier is zero.
	DefaultMultiplier = 2.0
	// DefaultHalfOpenProbes is the probe count when Settings.HalfOpenProbes is zero.
	DefaultHalfOpenProbes = 3
)

// Settings is a breaker policy, usually decoded from a rule document. Every
// zero value means the documented default, so Settings{} is a usable policy.
// Settings is comparable: compare two policies with == after
// [Settings.WithDefaults] to tell whether a rule update changed anything.
type Settings struct {
	// Mode is how the breaker decides: ModeWindow (the zero value) trips
	// on the ratios below; ModeAdaptive throttles with the SRE formula and
	// uses only Window, Buckets, SlowCallThreshold and K.
	Mode Mode
	// K is the ModeAdaptive multiplier: calls are refused with probability
	// max(0, (requests − K·accepts) / (requests + 1)). It must be at least
	// 1; zero means DefaultK (1.5) in ModeAdaptive. ModeWindow does not
	// use it.
	K float64
	// Window is the length of the rolling window over which calls are
	// counted. Zero means 10s.
	Window time.Duration
	// Buckets is the number of buckets the window is divided into; counts
	// expire one bucket (Window/Buckets) at a time. One bucket gives a fixed
	// window. Zero means 10; at most MaxBuckets.
	Buckets int
	// MinRequests is the number of completed calls (successes plus failures;
	// ignored calls and calls still running do not count) the window must
	// hold before the breaker may trip. Zero means 20.
	MinRequests uint32
	// FailureRatio trips the breaker when failures/completed calls reaches
	// it. It must be in (0, 1]; zero means 0.5.
	FailureRatio float64
	// SlowCallThreshold makes a call that lasts at least this long "slow".
	// Zero turns slow-call tripping off.
	SlowCallThreshold time.Duration
	// SlowCallRatio trips the breaker when slow calls/completed calls reaches
	// it; it only applies when SlowCallThreshold is set. It must be in (0, 1];
	// zero means 1, i.e. trip only when every call in the window was slow.
	SlowCallRatio float64
	// OpenBase is the open period after the first trip. Zero means 1s.
	OpenBase time.Duration
	// OpenMax caps the open period. It must not be less than OpenBase.
	// Zero means 60s.
	OpenMax time.Duration
	// Multiplier grows the open period on each consecutive trip: trip n is
	// open for OpenBase × Multiplier^(n−1), capped at OpenMax. It must be at
	// least 1 (1 keeps the period constant); zero means 2.
	Multiplier float64
	// Jitter spreads open periods so that many breakers tripped by one outage
	// do not probe in lockstep: each period is multiplied by a uniformly
	// random factor in [1−Jitter, 1+Jitter) and then capped at OpenMax. It
	// must be in [0, 1); zero means no jitter.
	Jitter float64
	// HalfOpenProbes is the number of calls admitted concurrently after an
	// open period. That many consecutive successes close the breaker; one
	// failure (or slow probe) trips it again. Zero means 3.
	HalfOpenProbes uint32
}

// WithDefaults returns s with every zero field replaced by its documented
// default. It does not validate; see [Settings.Validate].
func (s Settings) WithDefaults() Settings {
	if s.Mode == ModeAdaptive && s.K == 0 {
		s.K = DefaultK
	}
	if s.Window == 0 {
		s.Window = DefaultWindow
	}
	if s.Buckets == 0 {
		s.Buckets = DefaultBuckets
	}
	if s.MinRequests == 0 {
		s.MinRequests = DefaultMinRequests
	}
	if s.FailureRatio == 0 {
		s.FailureRatio = DefaultFailureRatio
	}
	if s.SlowCallRatio == 0 {
		s.SlowCallRatio = DefaultSlowCallRatio
	}
	if s.OpenBase == 0 {
		s.OpenBase = DefaultOpenBase
	}
	if s.OpenMax == 0 {
		s.OpenMax = DefaultOpenMax
	}
	if s.Multiplier == 0 {
		s.Multiplier = DefaultMultiplier
	}
	if s.HalfOpenProbes == 0 {
		s.HalfOpenProbes = DefaultHalfOpenProbes
	}
	return s
}

// SettingsError describes one invalid field of a [Settings]. Field is the
// field's name as written in a rule document (e.g. "failureRatio"), so a
// caller can prefix it with the document path.
type SettingsError struct {
	Field  string
	Reason string
}

// Error implements error.
func (e *SettingsError) Error() string {
	return "breaker: " + e.Field + ": " + e.Reason
}

// Validate reports every invalid field of s (after defaults are applied), as
// [*SettingsError] values joined with errors.Join; nil means s is valid.
func (s Settings) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &SettingsError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	e := s.WithDefaults()
	switch s.Mode {
	case ModeWindow:
		if s.K != 0 {
			bad("k", "applies to mode adaptive only")
		}
	case ModeAdaptive:
		if !(e.K >= 1) || math.IsInf(e.K, 0) {
			bad("k", "must be a finite number >= 1, got %v", e.K)
		}
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"minRequests", s.MinRequests != 0}, {"failureRatio", s.FailureRatio != 0},
			{"slowCallRatio", s.SlowCallRatio != 0}, {"openBase", s.OpenBase != 0},
			{"openMax", s.OpenMax != 0}, {"multiplier", s.Multiplier != 0},
			{"jitter", s.Jitter != 0}, {"halfOpenProbes", s.HalfOpenProbes != 0},
		} {
			if f.set {
				bad(f.name, "applies to mode window only; mode adaptive needs no threshold (it uses window, buckets, slowCallThreshold and k)")
			}
		}
	default:
		bad("mode", "unknown mode %v (want window or adaptive)", s.Mode)
	}
	if e.Window < 0 {
		bad("window", "must not be negative, got %v", e.Window)
	}
	switch {
	case e.Buckets < 0:
		bad("buckets", "must not be negative, got %d", e.Buckets)
	case e.Buckets > MaxBuckets:
		bad("buckets", "must be at most %d, got %d", MaxBuckets, e.Buckets)
	case e.Window > 0 && int64(e.Buckets) > int64(e.Window):
		bad("buckets", "%d buckets do not fit in a window of %v (a bucket must be at least 1ns)", e.Buckets, e.Window)
	}
	if !ratioOK(e.FailureRatio) {
		bad("failureRatio", "must be in (0, 1], got %v", e.FailureRatio)
	}
	if e.SlowCallThreshold < 0 {
		bad("slowCallThreshold", "must not be negative, got %v", e.SlowCallThreshold)
	}
	if !ratioOK(e.SlowCallRatio) {
		bad("slowCallRatio", "must be in (0, 1], got %v", e.SlowCallRatio)
	}
	if e.OpenBase < 0 {
		bad("openBase", "must not be negative, got %v", e.OpenBase)
	}
	switch {
	case e.OpenMax < 0:
		bad("openMax", "must not be negative, got %v", e.OpenMax)
	case e.OpenBase > 0 && e.OpenMax < e.OpenBase:
		what := ""
		if s.OpenMax == 0 {
			what = " (the default)"
		}
		bad("openMax", "%v%s is less than openBase %v", e.OpenMax, what, e.OpenBase)
	}
	if !(e.Multiplier >= 1) || math.IsInf(e.Multiplier, 0) {
		bad("multiplier", "must be a finite number >= 1, got %v", e.Multiplier)
	}
	if !(e.Jitter >= 0 && e.Jitter < 1) {
		bad("jitter", "must be in [0, 1), got %v", e.Jitter)
	}
	return errors.Join(errs...)
}

func ratioOK(r float64) bool { return r > 0 && r <= 1 }

// sanitize returns s with defaults applied and every field Validate would
// reject replaced by a usable value, so that New never fails.
func (s Settings) sanitize() Settings {
	e := s.WithDefaults()
	if e.Mode != ModeAdaptive {
		e.Mode, e.K = ModeWindow, 0
	} else if !(e.K >= 1) || math.IsInf(e.K, 0) {
		e.K = DefaultK
	}
	if e.Window < 0 {
		e.Window = DefaultWindow
	}
	if e.Buckets < 0 || e.Buckets > MaxBuckets {
		e.Buckets = DefaultBuckets
	}
	if int64(e.Buckets) > int64(e.Window) {
		e.Buckets = int(e.Window)
	}
	if !ratioOK(e.FailureRatio) {
		e.FailureRatio = DefaultFailureRatio
	}
	if e.SlowCallThreshold < 0 {
		e.SlowCallThreshold = 0
	}
	if !ratioOK(e.SlowCallRatio) {
		e.SlowCallRatio = DefaultSlowCallRatio
	}
	if e.OpenBase < 0 {
		e.OpenBase = DefaultOpenBase
	}
	if e.OpenMax < 0 {
		e.OpenMax = DefaultOpenMax
	}
	if e.OpenMax < e.OpenBase {
		e.OpenMax = e.OpenBase
	}
	if !(e.Multiplier >= 1) || math.IsInf(e.Multiplier, 0) {
		e.Multiplier = DefaultMultiplier
	}
	if !(e.Jitter >= 0 && e.Jitter < 1) {
		e.Jitter = 0
	}
	return e
}
