package meshtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// callTimeout bounds each call Call makes.
const callTimeout = 5 * time.Second

// Get sends GET target through c with the given headers (nil for none)
// and returns the response body. A status other than 200 is an error that
// carries the body.
func Get(ctx context.Context, c *http.Client, target string, header map[string]string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return "", err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	return string(body), err
}

// Call sends GET http://<service>/ through c, with env as X-Env unless it
// is empty, and returns the answering Backend's name. It gives up after
// 5 s. It does not need a testing.TB, so load generators may call it from
// their own goroutines.
func Call(c *http.Client, service, env string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var header map[string]string
	if env != "" {
		header = map[string]string{"X-Env": env}
	}
	return Get(ctx, c, "http://"+service+"/", header)
}

// Routes makes n Calls and counts the answers by backend name; it fails tb
// at the first call that fails.
func Routes(tb testing.TB, c *http.Client, service, env string, n int) map[string]int {
	tb.Helper()
	got := map[string]int{}
	for range n {
		name, err := Call(c, service, env)
		if err != nil {
			tb.Fatalf("call %s (X-Env %q): %v", service, env, err)
		}
		got[name]++
	}
	return got
}

// ExpectOnly makes n Calls and fails tb unless every one reached one of
// names.
func ExpectOnly(tb testing.TB, c *http.Client, service, env string, n int, names ...string) {
	tb.Helper()
	got := Routes(tb, c, service, env, n)
	for name := range got {
		if !slices.Contains(names, name) {
			tb.Fatalf("X-Env %q: calls went to %v, want only %v", env, got, names)
		}
	}
}

// BaggageMembers returns a baggage header value of n filler members
// (m0=v,m1=v,...) followed by extra, as a stranger might send.
func BaggageMembers(n int, extra string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "m%d=v,", i)
	}
	return b.String() + extra
}
