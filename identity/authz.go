package identity

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/router"
)

// Authorizers give the authorization in force for the calls a local
// service receives. *mesh.Mesh is one (from the rule document's
// authorization section, kept current with the document); *Policy is a
// fixed one for programs without a mesh.
type Authorizers interface {
	Authorizer(service string) *router.Authorizer
}

// Policy is an authorization held outside a rule document, compiled once
// per Update.
type Policy struct {
	cur    atomic.Pointer[router.Authorizer]
	logger *slog.Logger
}

// NewPolicy compiles p; the error names the place in p.
func NewPolicy(p router.Authorization, logger *slog.Logger) (*Policy, error) {
	a, err := router.CompileAuthorization(p)
	if err != nil {
		return nil, fmt.Errorf("identity: authorization.%w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	h := &Policy{logger: logger}
	h.cur.Store(a)
	return h, nil
}

// Update compiles p and puts it in force for the next request. When p
// does not compile, the error names the place and the previous policy
// stays in force.
func (h *Policy) Update(p router.Authorization) error {
	a, err := router.CompileAuthorization(p)
	if err != nil {
		err = fmt.Errorf("identity: authorization.%w", err)
		h.logger.Error("identity: authorization policy rejected; the previous policy stays in force", "error", err)
		return err
	}
	h.cur.Store(a)
	return nil
}

// Authorizer returns the policy in force, whatever the service.
func (h *Policy) Authorizer(string) *router.Authorizer { return h.cur.Load() }

// Guard enforces the authorization in force for one local service, read
// from its Authorizers at every request, and counts refusals.
type Guard struct {
	from    Authorizers
	service string
	denied  *prometheus.CounterVec
}

// GuardOptions configure a Guard.
type GuardOptions struct {
	// Service is the local service whose authorization applies; it also
	// labels the metric.
	Service string
	// Registerer receives lightmesh_authz_denied_total{service,rule};
	// nil means no metric is registered.
	Registerer prometheus.Registerer
}

// NewGuard returns a Guard enforcing what from gives for o.Service.
func NewGuard(from Authorizers, o GuardOptions) (*Guard, error) {
	g := &Guard{from: from, service: o.Service}
	g.denied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "lightmesh_authz_denied_total",
		Help:        "Calls refused by the authorization policy, by deciding rule (-1: the default; unknown: no authorization known for the service).",
		ConstLabels: prometheus.Labels{"service": o.Service},
	}, []string{"rule"})
	if o.Registerer != nil {
		if err := o.Registerer.Register(g.denied); err != nil {
			return nil, fmt.Errorf("identity: registering metrics: %w", err)
		}
	}
	return g, nil
}

// Decide decides with the policy in force and counts refusals. It fails
// closed: when the policy of the service is not known (Verdict.Unknown,
// see mesh.Mesh.Authorizer) the call is refused.
func (g *Guard) Decide(caller, method, path string) router.Verdict {
	d := g.from.Authorizer(g.service).Decide(caller, method, path)
	if !d.Allowed {
		g.denied.WithLabelValues(ruleLabel(d)).Inc()
	}
	return d
}

// ruleLabel names the deciding rule of a refusal; strconv does not
// allocate below 100.
func ruleLabel(d router.Verdict) string {
	if d.Unknown {
		return "unknown"
	}
	return strconv.Itoa(d.Rule)
}

// RefusalMessage returns what a refused caller is told for d, the verdict
// of a call by caller ("" for none) of path with method: for an unknown
// policy, that the service cannot authorize calls yet and why; otherwise
// who may not call what, and why. Handler writes it; grpcidentity's
// interceptors return it with an empty method (gRPC calls are POST).
func (g *Guard) RefusalMessage(d router.Verdict, caller, method, path string) string {
	if d.Unknown {
		return fmt.Sprintf("service %s cannot authorize calls: %s", g.service, d.Reason)
	}
	if caller == "" {
		caller = "a caller without a certificate"
	}
	if method == "" {
		return fmt.Sprintf("%s may not call %s: %s", caller, path, d.Reason)
	}
	return fmt.Sprintf("%s may not %s %s: %s", caller, method, path, d.Reason)
}

// Handler returns next behind the guard: it makes the caller's SPIFFE ID
// available to next (CallerID) and answers 403 with the reason when the
// policy refuses the call, 503 when the policy of the service is not
// known (router.Verdict.Unknown). A nil Guard only sets the ID. With
// http.Server.ConnContext set to ConnContext, an allowed request costs
// no allocation.
func (g *Guard) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := CallerID(r.Context()) // with ConnContext: once per connection
		if !ok {
			if id, ok = RequestCallerID(r); ok {
				r = r.WithContext(WithCallerID(r.Context(), id))
			}
		}
		caller := ""
		if ok {
			caller = id.String()
		}
		if g != nil {
			if d := g.Decide(caller, r.Method, r.URL.Path); !d.Allowed {
				code := http.StatusForbidden
				if d.Unknown {
					code = http.StatusServiceUnavailable
				}
				http.Error(w, g.RefusalMessage(d, caller, r.Method, r.URL.Path), code)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
