package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kratos/aegis/circuitbreaker/sre"
	"github.com/go-kratos/aegis/ratelimit"
	"github.com/go-kratos/aegis/ratelimit/bbr"
	zbreaker "github.com/zeromicro/go-zero/core/breaker"
	"github.com/zeromicro/go-zero/core/load"
	"github.com/zeromicro/go-zero/core/stat"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
)

// errRefused marks a call a peer's breaker refused without sending it.
var errRefused = errors.New("refused by the client's breaker")

// failingDependencyScenario: one backend (1 ms) fails 50% of its calls
// for one phase, 100% for the next, then recovers for two phases; one
// caller starts a call every 5 ms. Rows: lightmesh `breaker: {mode:
// adaptive}` (also with kratos' 3 s window) and the window breaker (`minRequests: 20, failureRatio:
// 0.5`), go-zero's core/breaker (googlebreaker, through
// DoWithAcceptable) and kratos aegis' circuitbreaker/sre used as kratos'
// circuitbreaker middleware uses it (a refusal is marked failed).
// "Time to recover" runs from the backend's recovery to the first 100 ms
// in which at least 95% of the calls succeeded.
func failingDependencyScenario(t *testing.T, p scenarioParams) string {
	type row struct {
		name string
		// client returns the row's call: nil, errRefused (or an error that
		// isRefusal accepts) or another error.
		client func(t *testing.T, b *backend) func(context.Context) error
	}
	lightmesh := func(breaker string) func(t *testing.T, b *backend) func(context.Context) error {
		return func(t *testing.T, b *backend) func(context.Context) error {
			doc := "apiVersion: lightmesh/v1\nservices:\n  svc:\n    breaker: " + breaker + "\n"
			m, _, err := startMesh(t, doc, map[string][]discovery.Instance{"svc": {{Address: b.addr}}})
			if err != nil {
				t.Fatal(err)
			}
			c := &http.Client{Transport: m.Transport(protectTransport(t))}
			return func(ctx context.Context) error {
				err := statusErr(get(ctx, c, "http://svc/"))
				if isRefusal(err) {
					return errRefused
				}
				return err
			}
		}
	}
	rows := []row{
		{"lightmesh breaker: {mode: adaptive}", lightmesh("{mode: adaptive}")},
		{"lightmesh breaker: {mode: adaptive, window: 3s} (kratos' window)", lightmesh("{mode: adaptive, window: 3s}")},
		{"lightmesh window breaker (minRequests 20, failureRatio 0.5)", lightmesh("{minRequests: 20, failureRatio: 0.5}")},
		{"go-zero core/breaker (googlebreaker)", func(t *testing.T, b *backend) func(context.Context) error {
			br := zbreaker.NewBreaker()
			c := &http.Client{Transport: protectTransport(t)}
			return func(ctx context.Context) error {
				err := br.DoWithAcceptable(func() error { return statusErr(get(ctx, c, "http://"+b.addr+"/")) },
					func(err error) bool { return err == nil })
				if errors.Is(err, zbreaker.ErrServiceUnavailable) {
					return errRefused
				}
				return err
			}
		}},
		{"kratos aegis circuitbreaker/sre", func(t *testing.T, b *backend) func(context.Context) error {
			br := sre.NewBreaker()
			c := &http.Client{Transport: protectTransport(t)}
			return func(ctx context.Context) error {
				if err := br.Allow(); err != nil {
					br.MarkFailed() // as kratos' middleware/circuitbreaker does
					return errRefused
				}
				err := statusErr(get(ctx, c, "http://"+b.addr+"/"))
				if err != nil {
					br.MarkFailed()
				} else {
					br.MarkSuccess()
				}
				return err
			}
		}},
	}
	const period = 5 * time.Millisecond
	var cells [][]string
	for _, r := range rows {
		b := &backend{}
		b.delay.Store(int64(time.Millisecond))
		startBackend(t, b, nil, false)
		call := r.client(t, b)
		pacedCalls(1, period, p.warmup, call) // healthy
		var ok, refused, failed int64
		type sample struct {
			at time.Time
			ok bool
		}
		var recovery []sample
		start := time.Now()
		phaseEnd := []time.Time{start.Add(p.failPhase), start.Add(2 * p.failPhase), start.Add(4 * p.failPhase)}
		failedBefore := b.failed.Load()
		b.failPermille.Store(500)
		recovered := false
		next := start
		for now := time.Now(); now.Before(phaseEnd[2]); now = time.Now() {
			switch {
			case !recovered && now.After(phaseEnd[1]):
				b.failPermille.Store(0)
				recovered = true
			case !recovered && now.After(phaseEnd[0]):
				b.failPermille.Store(1000)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := call(ctx)
			cancel()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, errRefused):
				refused++
			default:
				failed++
			}
			if recovered {
				recovery = append(recovery, sample{now, err == nil})
			}
			next = next.Add(period)
			time.Sleep(time.Until(next))
		}
		// Time to recover: the first 100 ms bucket after the recovery with
		// ≥ 95% of its calls succeeding.
		ttr := "not within " + (2 * p.failPhase).String()
		const win = 100 * time.Millisecond
		for i := 0; i < len(recovery); {
			j, good := i, 0
			for j < len(recovery) && recovery[j].at.Sub(recovery[i].at) < win {
				if recovery[j].ok {
					good++
				}
				j++
			}
			if j < len(recovery) && good*100 >= 95*(j-i) {
				ttr = ms(recovery[i].at.Sub(phaseEnd[1]))
				break
			}
			i++
		}
		cells = append(cells, []string{r.name, fmt.Sprint(ok), fmt.Sprint(refused), fmt.Sprint(failed),
			fmt.Sprint(b.failed.Load() - failedBefore), ttr})
	}
	return table("Failing dependency: 50% failing, then 100%, then recovered",
		fmt.Sprintf("One backend (1 ms); one caller starting a call every 5 ms. %s at 50%% failures, %s at 100%%, %s recovered. Refused: not sent by the client's breaker. Time to recover: from the recovery to the first 100 ms with ≥ 95%% of calls succeeding.", p.failPhase, p.failPhase, 2*p.failPhase),
		[]string{"row", "succeeded", "refused", "failed", "sent to the failing backend (failed there)", "time to recover"}, cells)
}

// overloadScenario: a server of capacity C = 4 slots × 20 ms = 200
// calls/s (a call waits for a free slot), offered 3 × C = 600 calls/s
// open-loop by a plain HTTP client (a call not answered within 1 s is
// abandoned). Rows: no shedding; lightmesh `inboundShedding: {mode:
// adaptive}` through m.Handler (the row says "not available" while the
// rule document does not know the field); go-zero core/load's adaptive
// shedder and kratos aegis' ratelimit/bbr, each wrapped around the
// handler as their frameworks' middlewares do (503 / 429 when refused).
// Goodput counts calls answered 200 within the 1 s, per second from the
// first call to the last answer; time to stabilise is
// from the start to the first 250 ms window after which every window's
// admitted p99 stays within 2 × the unloaded p99 (calls one at a time,
// before the rows).
func overloadScenario(t *testing.T, p scenarioParams) string {
	const (
		slots   = 4
		service = 20 * time.Millisecond
		rate    = 600 // 3 × C
		timeout = time.Second
	)
	capacity := float64(slots) * float64(time.Second) / float64(service)
	type row struct {
		name string
		// wrap returns the server middleware of the row and, for the
		// CPU-based peers, the CPU usage (‰) their shedder reads, or an
		// error when the row cannot run.
		wrap func(t *testing.T) (mw func(http.Handler) http.Handler, cpu func() int64, err error)
	}
	rows := []row{
		{"no shedding", func(*testing.T) (func(http.Handler) http.Handler, func() int64, error) { return nil, nil, nil }},
		{"lightmesh inboundShedding: {mode: adaptive}", func(t *testing.T) (func(http.Handler) http.Handler, func() int64, error) {
			doc := "apiVersion: lightmesh/v1\nservices:\n  svc:\n    inboundShedding: {mode: adaptive}\n"
			m, _, err := startMesh(t, doc, nil, mesh.WithLocalService("svc"))
			if err != nil {
				return nil, nil, err
			}
			return m.Handler, nil, nil
		}},
		{"go-zero core/load adaptive shedder", func(*testing.T) (func(http.Handler) http.Handler, func() int64, error) {
			shedder := load.NewAdaptiveShedder()
			return func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					promise, err := shedder.Allow()
					if err != nil {
						w.WriteHeader(http.StatusServiceUnavailable)
						return
					}
					rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
					next.ServeHTTP(rec, r)
					if rec.code >= 500 {
						promise.Fail()
					} else {
						promise.Pass()
					}
				})
			}, stat.CpuUsage, nil
		}},
		{"kratos aegis ratelimit/bbr", func(*testing.T) (func(http.Handler) http.Handler, func() int64, error) {
			limiter := bbr.NewLimiter()
			return func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					done, err := limiter.Allow()
					if err != nil {
						w.WriteHeader(http.StatusTooManyRequests)
						return
					}
					next.ServeHTTP(w, r)
					done(ratelimit.DoneInfo{})
				})
			}, func() int64 { return limiter.Stat().CPU }, nil
		}},
	}

	// The unloaded p99: the same server, one call at a time.
	quiet := startBackend(t, &backend{slots: make(chan struct{}, slots)}, nil, false)
	quiet.delay.Store(int64(service))
	qc := &http.Client{Transport: protectTransport(t)}
	qlat, _ := pacedCalls(1, 0, time.Duration(p.quietCalls)*service, func(ctx context.Context) error { return statusErr(get(ctx, qc, "http://"+quiet.addr+"/")) })
	unloaded := percentile(qlat, 99)

	var cells [][]string
	for _, r := range rows {
		wrap, cpu, err := r.wrap(t)
		if err != nil {
			cells = append(cells, []string{r.name, "not available: " + oneLine(err), "", "", "", "", "", ""})
			continue
		}
		b := startBackend(t, &backend{slots: make(chan struct{}, slots)}, wrap, false)
		b.delay.Store(int64(service))
		tr := protectTransport(t)
		c := &http.Client{Transport: tr, Timeout: timeout}
		type result struct {
			at  time.Duration
			lat time.Duration
			ok  bool
		}
		var mu sync.Mutex
		var results []result
		var wg sync.WaitGroup
		start := time.Now()
		var stopCPU func() string
		if cpu != nil {
			stopCPU = sampleCPU(cpu)
		}
		n := int(p.overloadRun.Seconds() * rate)
		for i := range n {
			time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / rate)))
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := time.Now()
				code, err := get(context.Background(), c, "http://"+b.addr+"/")
				res := result{at: s.Sub(start), lat: time.Since(s), ok: err == nil && code == http.StatusOK}
				mu.Lock()
				results = append(results, res)
				mu.Unlock()
			}()
		}
		cpuSeen := "–"
		if stopCPU != nil {
			cpuSeen = stopCPU()
		}
		wg.Wait()
		elapsed := time.Since(start) // the offered run and the drain of what it queued
		tr.CloseIdleConnections()

		var admitted, late []time.Duration
		const win = 250 * time.Millisecond
		// Windows by start time, over the offered run only (calls started
		// in its last instant would make a window of a few samples).
		windows := make([][]time.Duration, int(p.overloadRun/win))
		for _, res := range results {
			if !res.ok {
				continue
			}
			admitted = append(admitted, res.lat)
			if res.at >= p.overloadRun/2 {
				late = append(late, res.lat)
			}
			if i := int(res.at / win); i < len(windows) {
				windows[i] = append(windows[i], res.lat)
			}
		}
		// Stabilised: the start of the run of good windows that lasts to
		// the end, when it lasts at least a fifth of the run.
		first := len(windows)
		for first > 0 && len(windows[first-1]) > 0 && percentile(windows[first-1], 99) <= 2*unloaded {
			first--
		}
		stable := "never"
		if len(windows)-first >= max(1, len(windows)/5) {
			stable = ms(time.Duration(first) * win)
		}
		goodput := float64(len(admitted)) / elapsed.Seconds()
		cells = append(cells, []string{r.name, fmt.Sprintf("%.0f%%", 100*goodput/capacity), fmt.Sprint(len(results) - len(admitted)),
			ms(percentile(admitted, 50)), ms(percentile(admitted, 99)), ms(percentile(late, 99)), stable, cpuSeen})
	}
	return table("Overload: capacity C offered 3 × C",
		fmt.Sprintf("Server: %d slots × %s = C = %.0f calls/s; offered %d calls/s open-loop for %s by a plain client (1 s timeout). Unloaded p99 %s. Goodput: calls answered 200 per second from the first call to the last answer, as %% of C. Stabilised: from the start until every later 250 ms window's admitted p99 ≤ 2 × the unloaded p99 (never: not for the last fifth of the run). CPU the shedder read: the machine's usage, in ‰, that go-zero's and kratos' shedders decide on (they shed only above 900‰ and 800‰), sampled every 100 ms while offered.", slots, service, capacity, rate, p.overloadRun, ms(unloaded)),
		[]string{"row", "goodput (% of C)", "not served (shed, failed or timed out)", "admitted p50", "admitted p99", "admitted p99, second half", "stabilised after", "CPU the shedder read (mean)"}, cells)
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

// oneLine is err's message on one line, for a table cell.
func oneLine(err error) string {
	s := err.Error()
	for _, c := range []string{"\n", "|"} {
		s = strings.ReplaceAll(s, c, " ")
	}
	return s
}

// sampleCPU reads cpu every 100 ms until the returned function is
// called; that returns the mean, in ‰.
func sampleCPU(cpu func() int64) (stop func() string) {
	done := make(chan struct{})
	mean := make(chan string)
	go func() {
		var sum, n int64
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				sum += cpu()
				n++
			case <-done:
				mean <- fmt.Sprintf("%d‰", sum/max(n, 1))
				return
			}
		}
	}()
	return func() string {
		close(done)
		return <-mean
	}
}
