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

// Guard holds the authorization policy in force and swaps it atomically.
// Requests load it once; a policy that does not compile never replaces
// the one in force.
type Guard struct {
	cur    atomic.Pointer[router.Authorizer]
	logger *slog.Logger
	denied *prometheus.CounterVec
}

// GuardOptions configure a Guard. The zero value is usable.
type GuardOptions struct {
	// Logger receives rejected policies; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives lightmesh_authz_denied_total{service,rule};
	// nil means no metric is registered.
	Registerer prometheus.Registerer
	// Service names the local service in the metric.
	Service string
}

// NewGuard returns a Guard enforcing p (the authorization section of a
// service in the rule document). It fails when p does not compile.
func NewGuard(p router.Authorization, o GuardOptions) (*Guard, error) {
	a, err := router.CompileAuthorization(p)
	if err != nil {
		return nil, fmt.Errorf("identity: authorization.%w", err)
	}
	g := &Guard{logger: o.Logger}
	if g.logger == nil {
		g.logger = slog.Default()
	}
	g.denied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "lightmesh_authz_denied_total",
		Help:        "Calls refused by the authorization policy, by deciding rule (-1: the default).",
		ConstLabels: prometheus.Labels{"service": o.Service},
	}, []string{"rule"})
	if o.Registerer != nil {
		if err := o.Registerer.Register(g.denied); err != nil {
			return nil, fmt.Errorf("identity: registering metrics: %w", err)
		}
	}
	g.cur.Store(a)
	return g, nil
}

// Update compiles p and puts it in force for the next request. When p
// does not compile, the error names the place and the previous policy
// stays in force.
func (g *Guard) Update(p router.Authorization) error {
	a, err := router.CompileAuthorization(p)
	if err != nil {
		err = fmt.Errorf("identity: authorization.%w", err)
		g.logger.Error("identity: authorization policy rejected; the previous policy stays in force", "error", err)
		return err
	}
	g.cur.Store(a)
	return nil
}

// Decide decides with the policy in force and counts refusals.
func (g *Guard) Decide(caller, method, path string) router.Verdict {
	d := g.cur.Load().Decide(caller, method, path)
	if !d.Allowed {
		g.denied.WithLabelValues(ruleLabel(d.Rule)).Inc()
	}
	return d
}

// ruleLabel formats a rule index; strconv does not allocate below 100.
func ruleLabel(i int) string { return strconv.Itoa(i) }

// Handler returns next behind the guard: it puts the caller's SPIFFE ID
// in the request context (CallerID) and answers 403 with the reason when
// the policy refuses the call. A nil Guard only sets the ID.
func (g *Guard) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := RequestCallerID(r)
		caller := ""
		if ok {
			caller = id.String()
			r = r.WithContext(WithCallerID(r.Context(), id))
		}
		if g != nil {
			if d := g.Decide(caller, r.Method, r.URL.Path); !d.Allowed {
				if caller == "" {
					caller = "a caller without a certificate"
				}
				http.Error(w, fmt.Sprintf("403 forbidden: %s may not %s %s: %s", caller, r.Method, r.URL.Path, d.Reason), http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
