package meshtest

import (
	"context"
	"io"
	"testing"
	"time"
)

// Start calls start with a context that expires after timeout, fails tb
// if it returns an error, and closes what it returned when tb ends. It
// suits constructors such as mesh.New, which meshtest cannot name.
func Start[C io.Closer](tb testing.TB, timeout time.Duration, start func(context.Context) (C, error)) C {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := start(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}
