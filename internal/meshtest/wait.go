package meshtest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
)

// pollInterval is how often WaitFor checks its condition.
const pollInterval = 5 * time.Millisecond

// WaitFor checks cond every few milliseconds until it holds, and fails tb
// if it still does not hold after d; what names the awaited state in the
// failure.
func WaitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(pollInterval)
	}
}

// Next receives from ch until a value satisfies ok and returns it,
// dropping the others. It fails tb if none does within d; the failure
// names what and shows the last value received.
func Next[T any](tb testing.TB, ch <-chan T, d time.Duration, what string, ok func(T) bool) T {
	tb.Helper()
	timeout := time.After(d)
	var last T
	for {
		select {
		case v := <-ch:
			if ok(v) {
				return v
			}
			last = v
		case <-timeout:
			tb.Fatalf("no %s within %v; last received: %+v", what, d, last)
		}
	}
}

// WatchList runs src.Watch for service in the background until the test
// ends. It returns a channel of copies of the lists Watch delivers, and a
// stop function that cancels the watch and returns what Watch returned;
// stop fails tb if Watch does not return within 10 s, and may be called
// again.
func WatchList(tb testing.TB, src discovery.Source, service string) (<-chan []discovery.Instance, func() error) {
	tb.Helper()
	lists := make(chan []discovery.Instance, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- src.Watch(ctx, service, func(l []discovery.Instance) { lists <- slices.Clone(l) })
	}()
	var err error
	stopped := false
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				tb.Fatal("Watch did not return after cancel")
			}
		}
		return err
	}
	tb.Cleanup(func() { stop() })
	return lists, stop
}
