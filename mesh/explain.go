package mesh

import (
	"net/http"
	"strings"
	"time"

	"github.com/lightmesh/lightmesh/internal/engine"
	"github.com/lightmesh/lightmesh/router"
)

// ExplainRequest describes a call for Explain.
type ExplainRequest struct {
	// Service is the logical name called.
	Service string
	// Method and Path are the HTTP method (GET when empty) and URL path.
	Method, Path string
	// GRPCMethod, for a gRPC call, is its full method name
	// (/pkg.Service/Method): the path routes match, with method POST.
	GRPCMethod string
	// Header holds the call's headers or gRPC metadata, in any case.
	Header http.Header
}

// Explanation is a call's decision with its trace: every route tried and
// why it did or did not match, the split, the candidates at each step
// (with the labels, healthy, not ejected), the fallback and why, the
// instance, the policy in force with the live state it reads, and the
// rules' version. WriteText prints it for a person; its JSON form is for
// tools.
type Explanation = engine.Explanation

// Explain returns the decision a call described by req would get now, on
// the rules and instances in force, with its trace. It sends nothing and
// touches nothing: no breaker admits a call, no token is taken, no budget
// or rotation moves, so the instance named is the one the next call takes
// if no other comes first. The status page's explain view and the
// lightmesh command call it; the request path never builds a trace.
func (m *Mesh) Explain(req ExplainRequest) *Explanation {
	rr := &router.Request{Method: req.Method, Path: req.Path, Metadata: make(map[string][]string, len(req.Header))}
	if rr.Method == "" {
		rr.Method = http.MethodGet
	}
	if req.GRPCMethod != "" {
		rr.Method, rr.Path = http.MethodPost, req.GRPCMethod
	}
	for k, v := range req.Header {
		k = strings.ToLower(k)
		rr.Metadata[k] = append(rr.Metadata[k], v...)
	}
	e := m.eng.Load().Explain(req.Service, rr, time.Now())
	st := m.Status()
	e.Rules, e.Source = st.Rules.Version, st.Rules.Source
	e.GRPC = req.GRPCMethod != ""
	return e
}
