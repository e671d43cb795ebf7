package mesh

import (
	"net/http"

	"go.opentelemetry.io/otel/propagation"
)

// Middleware returns the server-side wrapper as a function, for routers
// that chain func(http.Handler) http.Handler.
func (m *Mesh) Middleware() func(http.Handler) http.Handler { return m.Handler }

// Handler wraps next so each request's lane (its lane headers or baggage),
// trace context and request id are in the request's context. Outgoing
// calls the handler makes through the mesh Transport with that context
// stay in the same lane.
func (m *Mesh) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := m.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
