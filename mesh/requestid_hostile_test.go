package mesh_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
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

// TestRequestIDInvalidIncomingNotPassedOn: with minting on, a request
// arriving with an over-long X-Request-Id gets a minted id, and that id —
// not the hostile value — is what the handler reads from its request
// headers and what the next hop receives, even when the handler is a
// reverse proxy that copies the incoming headers onto the outgoing call.
func TestRequestIDInvalidIncomingNotPassedOn(t *testing.T) {
	var mu sync.Mutex
	var atBack, atFrontHeader, atFrontCtx string
	backMesh := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) { return mesh.New(ctx) })
	back := httptest.NewServer(backMesh.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		atBack = r.Header.Get("X-Request-Id")
		mu.Unlock()
	})))
	t.Cleanup(back.Close)
	inst := []discovery.Instance{{Address: strings.TrimPrefix(back.URL, "http://")}}
	fm := newMesh(t, rules.NewMemory([]byte("apiVersion: lightmesh/v1\nservices:\n  back: {}\n")),
		discovery.NewStatic(map[string][]discovery.Instance{"back": inst}),
		mesh.WithTrace(trace.WithRequestIDMinting(trace.UUIDv4)))
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: "back"})
	proxy.Transport = fm.Transport(nil)
	front := httptest.NewServer(fm.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		atFrontHeader, atFrontCtx = r.Header.Get("X-Request-Id"), trace.RequestIDFromContext(r.Context())
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	})))
	t.Cleanup(front.Close)

	hostile := strings.Repeat("a", trace.MaxRequestIDLen+1)
	getFront(t, front.URL, map[string]string{"X-Request-Id": hostile})
	mu.Lock()
	defer mu.Unlock()
	if atFrontCtx == "" || atFrontCtx == hostile {
		t.Fatalf("front's context has request id %.40q, want a minted one", atFrontCtx)
	}
	if atFrontHeader != atFrontCtx {
		t.Errorf("front's handler reads X-Request-Id %.40q (%d bytes), want the minted %q", atFrontHeader, len(atFrontHeader), atFrontCtx)
	}
	if atBack != atFrontCtx {
		t.Errorf("next hop received X-Request-Id %.40q (%d bytes), want the minted %q", atBack, len(atBack), atFrontCtx)
	}
}

// TestRequestIDReceivedUnderOneHeaderSeenUnderAll: with minting on, a
// request that arrives with its id under X-Trace-Id only (an older
// caller's convention), or with an over-long X-Request-Id beside it,
// keeps that id, and a framework middleware reading X-Request-Id (echo's
// and chi's RequestID) finds the same id there instead of making up a
// second one for the same request.
func TestRequestIDReceivedUnderOneHeaderSeenUnderAll(t *testing.T) {
	for name, header := range map[string]map[string]string{
		"X-Trace-Id only":                {"X-Trace-Id": "legacy-42"},
		"beside an invalid X-Request-Id": {"X-Trace-Id": "legacy-42", "X-Request-Id": strings.Repeat("a", trace.MaxRequestIDLen+1)},
	} {
		t.Run(name, func(t *testing.T) {
			url, atFront, atBack := twoHops(t, mesh.WithTrace(trace.WithRequestIDMinting(trace.UUIDv7)))
			getFront(t, url, header)
			want := seenIDs{"legacy-42", "legacy-42", "legacy-42"}
			if f := atFront(); f != want {
				t.Errorf("front's handler saw context %q, X-Request-Id %.40q, X-Trace-Id %q; want legacy-42 under both headers", f.ctx, f.requestID, f.traceID)
			}
			if b := atBack(); b != want {
				t.Errorf("second hop saw %+v, want legacy-42 under both headers", b)
			}
		})
	}
}
