package deadline

import (
	"context"
	"testing"
	"time"
)

// BenchmarkWithDeadline makes and ends a timeout context per iteration,
// a Watcher's beside context.WithDeadline's, on one goroutine and on
// every processor at once (RunParallel): the Watcher's lock is taken
// twice per context.
func BenchmarkWithDeadline(b *testing.B) {
	parent := context.Background()
	b.Run("ctx=std", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, cancel := context.WithDeadline(parent, time.Now().Add(time.Second))
			cancel()
		}
	})
	b.Run("ctx=watcher", func(b *testing.B) {
		b.ReportAllocs()
		w := NewWatcher()
		for b.Loop() {
			w.WithDeadline(parent, time.Now().Add(time.Second)).End()
		}
	})
	b.Run("ctx=std/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, cancel := context.WithDeadline(parent, time.Now().Add(time.Second))
				cancel()
			}
		})
	})
	b.Run("ctx=watcher/parallel", func(b *testing.B) {
		b.ReportAllocs()
		w := NewWatcher()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				w.WithDeadline(parent, time.Now().Add(time.Second)).End()
			}
		})
	})
}
