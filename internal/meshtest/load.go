package meshtest

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// Load is a bounded steady load: requests sent one at a time at a fixed
// rate, at most a fixed count, stopping by itself. Start one with
// StartLoad.
type Load struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	res    LoadResult
	stopAt int // stop after this many requests
}

// LoadResult is what a Load's requests saw.
type LoadResult struct {
	// Sent counts the requests sent; Failed those that got an error or
	// a status other than 200.
	Sent, Failed int
	// Errors holds the first errors, in order.
	Errors []string
	// ByBody counts the 200 answers by body (a Backend answers with its
	// name).
	ByBody map[string]int
	// MaxLatency is the slowest request's latency.
	MaxLatency time.Duration
}

// StartLoad sends up to n GET requests for target with header through c,
// one every interval, from one goroutine, until n are sent, Stop is
// called or tb ends; each request is bounded by 10 s.
func StartLoad(tb interface{ Cleanup(func()) }, c *http.Client, target string, header map[string]string, n int, every time.Duration) *Load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{cancel: cancel, done: make(chan struct{}), stopAt: n, res: LoadResult{ByBody: map[string]int{}}}
	go l.run(ctx, c, target, header, every)
	tb.Cleanup(func() { l.Stop() })
	return l
}

func (l *Load) run(ctx context.Context, c *http.Client, target string, header map[string]string, every time.Duration) {
	defer close(l.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for i := 0; i < l.stopAt; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		start := time.Now()
		body, err := Get(rctx, c, target, header)
		took := time.Since(start)
		cancel()
		if ctx.Err() != nil {
			return // stopped mid-request: not the request's failure
		}
		l.mu.Lock()
		l.res.Sent++
		l.res.MaxLatency = max(l.res.MaxLatency, took)
		if err != nil {
			l.res.Failed++
			if len(l.res.Errors) < 10 {
				l.res.Errors = append(l.res.Errors, time.Now().Format("15:04:05.000")+" "+err.Error())
			}
		} else {
			l.res.ByBody[body]++
		}
		l.mu.Unlock()
	}
}

// Result returns what the requests so far saw.
func (l *Load) Result() LoadResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.res
	r.Errors = append([]string(nil), r.Errors...)
	r.ByBody = make(map[string]int, len(l.res.ByBody))
	for k, v := range l.res.ByBody {
		r.ByBody[k] = v
	}
	return r
}

// Stop ends the load, waits for its goroutine and returns the result.
func (l *Load) Stop() LoadResult {
	l.cancel()
	<-l.done
	return l.Result()
}

// Wait waits until every request was sent (or Stop was called) and
// returns the result.
func (l *Load) Wait() LoadResult {
	<-l.done
	return l.Result()
}
