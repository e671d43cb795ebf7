package meshtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// LoadRequestTimeout bounds each request of a Load.
const LoadRequestTimeout = 10 * time.Second

// LoadCall is what one request of a Load saw.
type LoadCall struct {
	// Start is when it was sent; zero for a request never sent (the load
	// was stopped first).
	Start   time.Time
	Latency time.Duration
	// Body is the answer's body (a Backend answers with its name).
	Body string
	// Err is the transport's error, or an error for a status other than
	// 200.
	Err error
}

// Load is a bounded open-loop load: at most n GET requests, one every
// 1/rate seconds, each on a goroutine of its own so that a stuck request
// does not slow the rate; it stops by itself after n. Start one with
// StartLoad.
type Load struct {
	calls []LoadCall
	sent  atomic.Int64 // requests started
	ended atomic.Int64 // requests ended
	stop  context.CancelFunc
	done  chan struct{} // closed when every request sent has ended
}

// StartLoad sends up to n GET requests for target through c at rate per
// second. prepare, when not nil, may change request i (add headers) just
// before it is sent. The load is stopped when tb ends.
func StartLoad(tb testing.TB, c *http.Client, target string, n, rate int, prepare func(i int, req *http.Request)) *Load {
	tb.Helper()
	if n < 0 || rate <= 0 {
		tb.Fatalf("StartLoad: %d requests at %d a second", n, rate)
	}
	ctx, stop := context.WithCancel(context.Background())
	l := &Load{calls: make([]LoadCall, n), stop: stop, done: make(chan struct{})}
	go l.run(ctx, c, target, rate, prepare)
	tb.Cleanup(func() { l.Stop() })
	return l
}

func (l *Load) run(ctx context.Context, c *http.Client, target string, rate int, prepare func(int, *http.Request)) {
	defer close(l.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := range l.calls {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		wg.Add(1)
		l.sent.Add(1)
		go func() {
			defer wg.Done()
			defer l.ended.Add(1)
			rctx, cancel := context.WithTimeout(context.Background(), LoadRequestTimeout)
			defer cancel()
			req, err := http.NewRequestWithContext(rctx, http.MethodGet, target, nil)
			if err != nil {
				panic(err) // a test's target is a valid URL
			}
			if prepare != nil {
				prepare(i, req)
			}
			call := &l.calls[i]
			call.Start = time.Now()
			resp, err := c.Do(req)
			if err == nil {
				var b []byte
				b, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
				}
				call.Body = string(b)
			}
			call.Latency, call.Err = time.Since(call.Start), err
		}()
	}
}

// WithHeader returns a StartLoad prepare function that sets the header
// key to value on every request.
func WithHeader(key, value string) func(int, *http.Request) {
	return func(_ int, req *http.Request) { req.Header.Set(key, value) }
}

// Sent returns the number of requests sent so far.
func (l *Load) Sent() int { return int(l.sent.Load()) }

// InFlight returns the number of requests sent and not yet answered.
func (l *Load) InFlight() int { return int(l.sent.Load() - l.ended.Load()) }

// Stop sends no more requests, waits for those in flight and returns
// what all of them saw.
func (l *Load) Stop() LoadResult {
	l.stop()
	<-l.done
	return l.result()
}

// Wait waits, at most d, until every request was sent and answered and
// returns what they saw; it fails tb if the load has not finished by
// then.
func (l *Load) Wait(tb testing.TB, d time.Duration) LoadResult {
	tb.Helper()
	select {
	case <-l.done:
	case <-time.After(d):
		tb.Fatalf("load of %d requests not finished after %v (%d sent)", len(l.calls), d, l.Sent())
	}
	return l.result()
}

// Calls returns each request's record, in the order sent; call it after
// Stop or Wait.
func (l *Load) Calls() []LoadCall {
	<-l.done
	return l.calls[:l.Sent()]
}

// LoadResult sums up a Load's requests.
type LoadResult struct {
	// Sent counts the requests sent; Failed those that got an error or
	// a status other than 200.
	Sent, Failed int
	// Errors holds the first errors, each with its request's latency.
	Errors []string
	// ByBody counts the 200 answers by body.
	ByBody map[string]int
	// MaxLatency is the slowest request's latency.
	MaxLatency time.Duration
}

func (l *Load) result() LoadResult {
	r := LoadResult{ByBody: map[string]int{}}
	for _, c := range l.Calls() {
		r.Sent++
		r.MaxLatency = max(r.MaxLatency, c.Latency)
		if c.Err != nil {
			r.Failed++
			if len(r.Errors) < 10 {
				r.Errors = append(r.Errors, fmt.Sprintf("%s after %v: %v", c.Start.Format("15:04:05.000"), c.Latency.Round(time.Millisecond), c.Err))
			}
			continue
		}
		r.ByBody[c.Body]++
	}
	return r
}
