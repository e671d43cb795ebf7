package engine

import (
	"context"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/deadline"
)

// BenchmarkTryDeadline is the experiment behind the try's timeout (issue
// 22): what a try's deadline costs in process, beside the alternatives. Each iteration makes the try's context, derives a child
// with context.WithCancel as net/http's Transport does for every request,
// asks for its Done channel (the transport selects on it) and ends both,
// the call finishing long before its deadline:
//
//   - std: context.WithDeadline, what Run did;
//   - caller-first: the caller's deadline comes first, so Run makes no
//     context of its own (the try runs on the caller's);
//   - watcher: what Run does now, a deadline.Context, watched by the
//     State's one timer instead of a timer of its own.
//
// In a loop like this one the runtime timer costs little; what it costs
// is a wake-up of the network poller when the process idles between
// calls, which BenchmarkCPUPaired (bench/) measures.
func BenchmarkTryDeadline(b *testing.B) {
	b.Run("ctx=std", func(b *testing.B) {
		b.ReportAllocs()
		parent := context.Background()
		for b.Loop() {
			ctx, cancel := context.WithDeadline(parent, time.Now().Add(time.Second))
			c, cc := context.WithCancel(ctx)
			_ = c.Done()
			cc()
			cancel()
		}
	})
	b.Run("ctx=caller-first", func(b *testing.B) {
		b.ReportAllocs()
		parent, stop := context.WithDeadline(context.Background(), time.Now().Add(time.Hour))
		defer stop()
		for b.Loop() {
			deadline := time.Now().Add(2 * time.Hour)
			ctx := parent
			if d, ok := parent.Deadline(); !ok || d.After(deadline) {
				b.Fatal("the caller's deadline comes first")
			}
			c, cc := context.WithCancel(ctx)
			_ = c.Done()
			cc()
		}
	})
	b.Run("ctx=watcher", func(b *testing.B) {
		b.ReportAllocs()
		parent := context.Background()
		w := deadline.NewWatcher()
		for b.Loop() {
			ctx := w.WithDeadline(parent, time.Now().Add(time.Second))
			c, cc := context.WithCancel(ctx)
			_ = c.Done()
			cc()
			ctx.End()
		}
	})
}
