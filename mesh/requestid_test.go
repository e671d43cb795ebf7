package mesh_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
	"github.com/lightmesh/lightmesh/trace"
)

// seenIDs is what the second hop saw of one request: its request id in
// the context and under each header.
type seenIDs struct{ ctx, requestID, traceID string }

// twoHops starts front (a mesh Handler with opts, calling back through
// the mesh Transport) and back (a mesh Handler of another mesh without
// minting). It returns front's URL and functions reporting what front's
// handler and back last saw.
func twoHops(t *testing.T, opts ...mesh.Option) (front string, atFront, atBack func() seenIDs) {
	t.Helper()
	var mu sync.Mutex
	var f, b seenIDs
	backMesh := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) { return mesh.New(ctx) })
	back := httptest.NewServer(backMesh.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		b = seenIDs{trace.RequestIDFromContext(r.Context()), r.Header.Get("X-Request-Id"), r.Header.Get("X-Trace-Id")}
		mu.Unlock()
	})))
	t.Cleanup(back.Close)
	inst := []discovery.Instance{{Address: strings.TrimPrefix(back.URL, "http://")}}
	fm := newMesh(t, rules.NewMemory([]byte("apiVersion: lightmesh/v1\nservices:\n  back: {}\n")),
		discovery.NewStatic(map[string][]discovery.Instance{"back": inst}), opts...)
	client := &http.Client{Transport: fm.Transport(nil)}
	fs := httptest.NewServer(fm.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		f = seenIDs{trace.RequestIDFromContext(r.Context()), r.Header.Get("X-Request-Id"), r.Header.Get("X-Trace-Id")}
		mu.Unlock()
		req, _ := http.NewRequestWithContext(r.Context(), "GET", "http://back/", nil)
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		resp.Body.Close()
	})))
	t.Cleanup(fs.Close)
	get := func(mu *sync.Mutex, s *seenIDs) func() seenIDs {
		return func() seenIDs { mu.Lock(); defer mu.Unlock(); return *s }
	}
	return fs.URL, get(&mu, &f), get(&mu, &b)
}

// getFront sends GET url with header and fails t unless it answers 200.
func getFront(t *testing.T, url string, header map[string]string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
}

// TestRequestIDMintedCrossesTwoHops: with WithRequestIDMinting, a request
// arriving without a request id gets one in the chosen format; the
// handler sees it in its context and its request headers, and the next
// service receives it under X-Request-Id and X-Trace-Id and in its
// context. A received id is kept, whichever configured header carried it.
func TestRequestIDMintedCrossesTwoHops(t *testing.T) {
	formats := []struct {
		f    trace.RequestIDFormat
		want *regexp.Regexp
	}{
		{trace.UUIDv4, regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)},
		{trace.UUIDv7, regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)},
		{trace.W3CTraceID, regexp.MustCompile(`^[0-9a-f]{32}$`)},
	}
	for _, tc := range formats {
		t.Run(tc.f.String(), func(t *testing.T) {
			url, atFront, atBack := twoHops(t, mesh.WithTrace(trace.WithRequestIDMinting(tc.f)))
			getFront(t, url, nil)
			f, b := atFront(), atBack()
			if !tc.want.MatchString(f.ctx) {
				t.Fatalf("front's context has request id %q, want one matching %s", f.ctx, tc.want)
			}
			if f.requestID != f.ctx || f.traceID != f.ctx {
				t.Errorf("front's request headers X-Request-Id %q, X-Trace-Id %q; want the minted %q under both", f.requestID, f.traceID, f.ctx)
			}
			if b != (seenIDs{f.ctx, f.ctx, f.ctx}) {
				t.Errorf("second hop saw %+v, want the minted %q in its context and under X-Request-Id and X-Trace-Id", b, f.ctx)
			}
			getFront(t, url, nil)
			if again := atFront().ctx; again == f.ctx {
				t.Errorf("two requests got the same id %q", again)
			}
			if tc.f == trace.UUIDv7 {
				ms, _ := strconv.ParseInt(strings.ReplaceAll(f.ctx, "-", "")[:12], 16, 64)
				if d := time.Since(time.UnixMilli(ms)); d < 0 || d > time.Minute {
					t.Errorf("UUIDv7 %q holds the time %v, want about now", f.ctx, time.UnixMilli(ms))
				}
			}
		})
	}
	t.Run("traceparent", func(t *testing.T) {
		url, atFront, atBack := twoHops(t, mesh.WithTrace(trace.WithRequestIDMinting(trace.W3CTraceID)))
		getFront(t, url, map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
		if f, b := atFront(), atBack(); f.ctx != "4bf92f3577b34da6a3ce929d0e0e4736" || b.requestID != f.ctx {
			t.Errorf("with a traceparent, front minted %q and back got %q; want the trace id 4bf92f3577b34da6a3ce929d0e0e4736", f.ctx, b.requestID)
		}
	})
	t.Run("received id kept", func(t *testing.T) {
		url, atFront, atBack := twoHops(t, mesh.WithTrace(trace.WithRequestIDMinting(trace.UUIDv7)))
		getFront(t, url, map[string]string{"X-Trace-Id": "legacy-42"})
		if f, b := atFront(), atBack(); f.ctx != "legacy-42" || b != (seenIDs{"legacy-42", "legacy-42", "legacy-42"}) {
			t.Errorf("a received X-Trace-Id: front saw %+v, back %+v; want legacy-42 kept and sent on under both headers", f, b)
		}
	})
	t.Run("off by default", func(t *testing.T) {
		url, atFront, atBack := twoHops(t)
		getFront(t, url, nil)
		if f, b := atFront(), atBack(); f != (seenIDs{}) || b != (seenIDs{}) {
			t.Errorf("without minting, front saw %+v and back %+v; want no request id", f, b)
		}
	})
}
