package mesh_test

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// recordRT answers every request in process, like cannedRT, and keeps the
// header of the last request it was given.
type recordRT struct{ header http.Header }

func (r *recordRT) RoundTrip(req *http.Request) (*http.Response, error) {
	r.header = req.Header
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Header: http.Header{}, Request: req, ProtoMajor: 1, ProtoMinor: 1}, nil
}

// TestRoutingCallCost: a routed call that the mesh adds no header to
// (no lane header, no lane or trace in its context) costs one allocation of the SDK's
// own over the base RoundTripper's, and its header goes out as the
// caller wrote it, without the caller's request being changed.
func TestRoutingCallCost(t *testing.T) {
	inst := []discovery.Instance{{Address: "10.0.0.1:80", Labels: map[string]string{"env": "base"}}}
	m, err := mesh.New(context.Background(),
		mesh.WithRules(rules.NewMemory([]byte(benchRules))),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"svc": inst})))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := &recordRT{}
	rt := m.Transport(base)
	req, _ := http.NewRequest(http.MethodGet, "http://svc/v1", nil)
	req.Header.Set("Accept", "text/plain")
	call := func(rt http.RoundTripper) func() {
		return func() {
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	call(rt)()
	if got := base.header.Get("Accept"); got != "text/plain" || len(base.header) != 1 {
		t.Fatalf("sent header %v, want only Accept: text/plain", base.header)
	}
	if req.URL.Host != "svc" || len(req.Header) != 1 || req.Host != "svc" {
		t.Fatalf("caller's request changed: host %q, Host %q, header %v", req.URL.Host, req.Host, req.Header)
	}
	bare := testing.AllocsPerRun(200, call(base))
	meshed := testing.AllocsPerRun(200, call(rt))
	if meshed-bare > 1 {
		t.Fatalf("a routed call allocates %.0f times over the base RoundTripper's %.0f, want at most 1", meshed-bare, bare)
	}
}
