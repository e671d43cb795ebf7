package mesh_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

func hostOf(t *testing.T, srv *httptest.Server) string {
	u, _ := url.Parse(srv.URL)
	return u.Host
}

// TestRetryIsNotHeldByASlowRejectedBody: a 503 whose body stalls
// (headers sent, body slow: a shedding proxy, a server stuck in a write)
// is retried on the healthy instance at once. The mesh used to read the
// rejected body before the retry, under the try's timeout: with a call
// timeout the retry never ran ("timeout, 1 try"); without one the caller
// waited for the whole body of a response it never saw.
func TestRetryIsNotHeldByASlowRejectedBody(t *testing.T) {
	for _, tc := range []struct{ name, extra string }{
		{"timeout 2s", "    timeout: 2s\n"},
		{"no timeout", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var badHits, goodHits atomic.Int64
			bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				badHits.Add(1)
				w.WriteHeader(503)
				w.Write([]byte("overloaded"))
				w.(http.Flusher).Flush()
				select { // the rest of the body comes late
				case <-r.Context().Done():
				case <-time.After(3 * time.Second):
				}
			}))
			defer bad.Close()
			good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				goodHits.Add(1)
				io.WriteString(w, "ok")
			}))
			defer good.Close()
			doc := svcDoc(tc.extra + "    retry: {attempts: 1, backoff: 1ms, \"on\": [\"503\"]}\n")
			m := newMesh(t, rules.NewMemory([]byte(doc)), discovery.NewStatic(map[string][]discovery.Instance{"svc": {{Address: hostOf(t, bad)}, {Address: hostOf(t, good)}}}))
			client := &http.Client{Transport: m.Transport(nil)}
			for i := range 2 { // round-robin: one of the two calls tries the bad instance first
				start := time.Now()
				resp, err := client.Get("http://svc/")
				took := time.Since(start)
				code := 0
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				t.Logf("call %d: code %d err %v after %v (bad hits %d, good hits %d)", i, code, err, took, badHits.Load(), goodHits.Load())
				if err != nil || code != 200 || took > time.Second {
					t.Errorf("call %d: code %d err %v after %v; want 200 from the healthy instance at once", i, code, err, took)
				}
			}
		})
	}
}

// TestHTTP2StreamResetIsRetried: retry "on: reset" covers a stream the
// server resets over HTTP/2 (RST_STREAM, here a handler aborted) as it
// covers the same failure over HTTP/1 (the connection closed: EOF).
func TestHTTP2StreamResetIsRetried(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			var badHits, goodHits atomic.Int64
			mk := func(h http.HandlerFunc) *httptest.Server {
				s := httptest.NewUnstartedServer(h)
				s.EnableHTTP2 = h2
				s.Config.ErrorLog = nil
				s.StartTLS()
				t.Cleanup(s.Close)
				return s
			}
			bad := mk(func(w http.ResponseWriter, r *http.Request) {
				badHits.Add(1)
				panic(http.ErrAbortHandler)
			})
			good := mk(func(w http.ResponseWriter, r *http.Request) {
				goodHits.Add(1)
				io.WriteString(w, r.Proto)
			})
			doc := svcDoc("    retry: {attempts: 1, backoff: 1ms, \"on\": [reset, connect-failure]}\n")
			m := newMesh(t, rules.NewMemory([]byte(doc)), discovery.NewStatic(map[string][]discovery.Instance{"svc": {{Address: hostOf(t, bad)}, {Address: hostOf(t, good)}}}))
			base := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2}
			client := &http.Client{Transport: m.Transport(base)}
			for i := range 2 {
				resp, err := client.Get("https://svc/")
				code, body := 0, ""
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					code, body = resp.StatusCode, string(b)
				}
				t.Logf("call %d: code %d body %q err %v (bad %d, good %d)", i, code, body, err, badHits.Load(), goodHits.Load())
				if err != nil || code != 200 {
					t.Errorf("call %d: code %d err %v; want the reset retried on the good instance", i, code, err)
				}
			}
		})
	}
}

// TestStatusShowsAnInstanceKeptByTheEjectionCap: an instance whose
// outlier breaker is open but which the ejection cap keeps (it takes every
// call here, both instances failing) is shown "kept", not "ejected" (which
// takes no call).
func TestStatusShowsAnInstanceKeptByTheEjectionCap(t *testing.T) {
	a, b := newFlaky(t, "a"), newFlaky(t, "b")
	a.status.Store(http.StatusInternalServerError)
	b.status.Store(http.StatusInternalServerError)
	m, _, client := meshFor(t, svcDoc("    outlierDetection: {minRequests: 2, failureRatio: 0.5, openBase: 1h, openMax: 1h}\n"), a, b)
	for range 20 {
		send(client, "GET", "http://svc/")
	}
	before := map[string]int64{"a": a.hits.Load(), "b": b.hits.Load()}
	for range 20 {
		send(client, "GET", "http://svc/")
	}
	took := map[string]int64{"a": a.hits.Load() - before["a"], "b": b.hits.Load() - before["b"]}
	addr := map[string]string{a.instance().Address: "a", b.instance().Address: "b"}
	for _, s := range m.Status().Services {
		if s.Name != "svc" {
			continue
		}
		for _, in := range s.Instances {
			name := addr[in.Address]
			t.Logf("instance %s: status %q, took %d of the last 20 calls", name, in.State, took[name])
			if in.State == mesh.InstanceEjected && took[name] > 0 {
				t.Errorf("instance %s shown %q (takes no call) but took %d of the last 20 calls", name, in.State, took[name])
			}
		}
	}
}

// TestHandlerRecordsTheFinalStatusAfterEarlyHints: mesh.Handler records
// a response's final status, not an informational one before it: a 500
// after 103 Early Hints counts as a 500 in lightmesh_requests_total (and
// the server span and inbound shedding see it so).
func TestHandlerRecordsTheFinalStatusAfterEarlyHints(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMeshNoRules(t, mesh.WithRegisterer(reg))
	srv := httptest.NewServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusInternalServerError)
	})))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 {
		t.Fatalf("client saw %d", resp.StatusCode)
	}
	n500 := meshtest.Metric(t, reg, "lightmesh_requests_total", map[string]string{"direction": "inbound", "code": "500"})
	n103 := meshtest.Metric(t, reg, "lightmesh_requests_total", map[string]string{"direction": "inbound", "code": "103"})
	t.Logf("inbound requests_total: code 500 = %v, code 103 = %v", n500, n103)
	if n500 != 1 || n103 > 0 { // Metric gives -1 for a series that does not exist
		t.Errorf("the client got 500; metrics recorded code 500 x%v and code 103 x%v", n500, n103)
	}
}
