package engine

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/router"
)

// The README promises that the wait between retries doubles from
// retry.backoff and never exceeds ten times it, jitter included.
func TestRetryBackoffAtMostTenTimesBase(t *testing.T) {
	const base = 10 * time.Millisecond
	for n := range 8 {
		lo, hi := time.Duration(1<<62), time.Duration(0)
		for range 2000 {
			d := retryBackoff(base, n)
			lo, hi = min(lo, d), max(hi, d)
		}
		if hi > 10*base {
			t.Fatalf("retry %d waited up to %v, over 10× the %v base", n, hi, base)
		}
		want := min(base<<n, 10*base) // before jitter
		if lo < want/2 || lo > want {
			t.Fatalf("retry %d waited from %v, want about half of %v", n, lo, want)
		}
	}
}

// deadlineSender records the deadline of each try's context.
type deadlineSender struct{ deadlines []time.Time }

func (s *deadlineSender) Send(ctx context.Context, t *Try) Outcome {
	if _, err := t.Pick(nil); err != nil {
		return Outcome{Err: err}
	}
	d, _ := ctx.Deadline()
	s.deadlines = append(s.deadlines, d)
	return Outcome{Status: http.StatusOK}
}

func (s *deadlineSender) Discard() {}

// TestTimeoutCountsFromAdmit: the call's timeout and its first try's
// run from the time the adapter gave Admit (the call's start, read once
// per call), not from a clock read of Run's own.
func TestTimeoutCountsFromAdmit(t *testing.T) {
	for _, protection := range []string{
		"    timeout: 2s\n",
		"    timeout: 5s\n    retry: {attempts: 1, perTryTimeout: 2s}\n",
	} {
		st := admitState(t, protection)
		req := &router.Request{Method: http.MethodGet, Path: "/", Header: http.Header{"X-Env": {"staging"}}}
		var c Call
		if err := c.Begin(st, "svc", req, nil); err != nil {
			t.Fatal(err)
		}
		start := time.Now().Add(-time.Second)
		if err := c.Admit(start); err != nil {
			t.Fatal(err)
		}
		s := &deadlineSender{}
		if err := c.Run(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		c.Release()
		if want := start.Add(2 * time.Second); len(s.deadlines) != 1 || !s.deadlines[0].Equal(want) {
			t.Fatalf("%q: try deadlines %v, want [%v]", protection, s.deadlines, want)
		}
	}
}

// ctxSender records the context of each try.
type ctxSender struct{ ctxs []context.Context }

func (s *ctxSender) Send(ctx context.Context, t *Try) Outcome {
	if _, err := t.Pick(nil); err != nil {
		return Outcome{Err: err}
	}
	s.ctxs = append(s.ctxs, ctx)
	return Outcome{Status: http.StatusOK}
}

func (s *ctxSender) Discard() {}

// TestCallerDeadlineFirstNoTimer: when the caller's deadline comes before
// the mesh's timeouts, the try runs on the caller's own context: no
// context or timer of the mesh's, nothing left to release.
func TestCallerDeadlineFirstNoTimer(t *testing.T) {
	st := admitState(t, "    timeout: 5s\n    retry: {attempts: 1, perTryTimeout: 2s}\n")
	req := &router.Request{Method: http.MethodGet, Path: "/", Header: http.Header{"X-Env": {"staging"}}}
	for _, tc := range []struct {
		caller time.Duration
		own    bool
	}{{time.Second, false}, {3 * time.Second, true}} {
		ctx, cancel := context.WithTimeout(context.Background(), tc.caller)
		var c Call
		if err := c.Begin(st, "svc", req, nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Admit(time.Now()); err != nil {
			t.Fatal(err)
		}
		s := &ctxSender{}
		if err := c.Run(ctx, s); err != nil {
			t.Fatal(err)
		}
		if own := s.ctxs[0] != ctx; own != tc.own || c.HasTimeouts() != tc.own {
			t.Errorf("caller's deadline in %v: the try had a context of its own %v, timeouts to release %v; want %v", tc.caller, own, c.HasTimeouts(), tc.own)
		}
		c.Release()
		cancel()
	}
}
