package meshtest

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// LogBuffer is an io.Writer that collects log output and that tests may
// read while the goroutines of a mesh, a source or a registration write
// to it. The zero value is ready to use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Count returns how many times substr occurs in what was written so far.
func (l *LogBuffer) Count(substr string) int { return strings.Count(l.String(), substr) }

// Logger returns a logger writing text records of every level, debug
// included, into l.
func (l *LogBuffer) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// CaptureDefaultLog points slog.Default at a new LogBuffer (info level
// and above, as the default logger writes) until tb ends, and returns the
// buffer. Tests using it must not run in parallel.
func CaptureDefaultLog(tb testing.TB) *LogBuffer {
	tb.Helper()
	var l LogBuffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&l, nil)))
	tb.Cleanup(func() { slog.SetDefault(prev) })
	return &l
}
