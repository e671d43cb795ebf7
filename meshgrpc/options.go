package meshgrpc

import (
	"context"
	"encoding/json"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/mesh"
)

// Option configures DialOptions or ServerOptions.
type Option interface{ apply(*config) }

type config struct {
	serviceConfig string   // the client's service config, lightmesh's balancer in it
	idempotent    []string // full method names, or "/pkg.Service/" for all of one service
	// methodTimeouts says the client's service config sets a method
	// timeout: the interceptors apply it (methodDeadline).
	methodTimeouts bool
	// refusalStatus builds the status of a call the server refuses
	// (WithRefusalStatus); nil for the default.
	refusalStatus func(context.Context, mesh.Refusal) *status.Status
}

// idempotentMethod reports whether the unary method may be sent again
// after the server may have acted on it.
func (c *config) idempotentMethod(method string) bool {
	for _, m := range c.idempotent {
		if m == method || strings.HasSuffix(m, "/") && strings.HasPrefix(method, m) {
			return true
		}
	}
	return false
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithServiceConfig gives the client's own gRPC service config (JSON, as
// for grpc.WithDefaultServiceConfig): its method configs (timeouts,
// retryPolicy, waitForReady, message sizes) apply to the client's calls,
// and its load-balancing part is replaced by lightmesh's balancer. A
// hedgingPolicy is not supported: the concurrent attempts of one call
// share its instance breaker's admission.
//
// Use it instead of grpc.WithDefaultServiceConfig: the lightmesh resolver
// sends the service config with every update, and grpc-go prefers that to
// a default one, so a default service config given beside DialOptions is
// ignored (it can no longer replace lightmesh's balancer). A document that
// is not valid makes grpc.NewClient fail with grpc-go's own parse error.
func WithServiceConfig(json string) Option {
	return optionFunc(func(c *config) { c.serviceConfig = json })
}

// WithIdempotentMethods names the client's unary methods that are safe to
// send again after the server may have acted on them: full method names
// ("/pkg.Users/Get"), or a service name ending in a slash ("/pkg.Users/")
// for all its methods. A retry rule resends such a call after a per-try
// timeout or a reset connection; any other call is resent only on a
// connect failure (it was never sent) or a listed status code the server
// answered (by default UNAVAILABLE, which the gRPC spec defines as safe to
// retry), unless the rule says nonIdempotent: true. A connection that
// broke after the call went out, with no answer at all, is a reset,
// although grpc-go reports it as UNAVAILABLE too.
func WithIdempotentMethods(methods ...string) Option {
	return optionFunc(func(c *config) { c.idempotent = append(c.idempotent, methods...) })
}

// WithRefusalStatus makes the server interceptors of ServerOptions answer
// every call the mesh refuses itself (see mesh.Refusal: today the inbound
// rate limit) with the status refusal returns, instead of the default
// ResourceExhausted "lightmesh: rate limited: inbound limit of service
// ...". Use it to attach the details the service's clients expect (an
// errdetails.ErrorInfo with the reason and route, an errdetails.RetryInfo
// with Refusal.RetryAfter, say). The grpc-retry-pushback-ms trailer is set
// either way; errors.Is(err, mesh.ErrRateLimited) still holds for the
// returned error in an interceptor outside lightmesh's. A nil refusal, or
// a nil or OK status from it, keeps the default; so does a refusal that
// panics (grpc-go would not recover it and the process would end), which
// is logged as an error with the panic. It applies to ServerOptions only.
func WithRefusalStatus(refusal func(ctx context.Context, r mesh.Refusal) *status.Status) Option {
	return optionFunc(func(c *config) { c.refusalStatus = refusal })
}

func newConfig(opts []Option) config {
	var c config
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	c.methodTimeouts = setsTimeout(c.serviceConfig)
	c.serviceConfig = withBalancer(c.serviceConfig)
	return c
}

// setsTimeout reports whether the service config sc (JSON) has a method
// config with a timeout.
func setsTimeout(sc string) bool {
	var doc struct {
		MethodConfig []struct {
			Timeout *string `json:"timeout"`
		} `json:"methodConfig"`
	}
	if json.Unmarshal([]byte(sc), &doc) != nil {
		return false
	}
	for _, mc := range doc.MethodConfig {
		if mc.Timeout != nil {
			return true
		}
	}
	return false
}

// methodDeadline returns ctx bounded by the timeout the client's service
// config sets for method, as grpc-go bounds the call with it, and its
// cancel function (nil when there is none). grpc-go applies it inside the
// invoker, where the mesh would not see it and would take the deadline
// exceeded for the server's own; applied here, the engine judges it as
// the caller's deadline, which counts for no breaker.
func (c *config) methodDeadline(ctx context.Context, conn *grpc.ClientConn, method string) (context.Context, context.CancelFunc) {
	if !c.methodTimeouts {
		return ctx, nil
	}
	if mc := conn.GetMethodConfig(method); mc.Timeout != nil && *mc.Timeout >= 0 {
		return context.WithTimeout(ctx, *mc.Timeout)
	}
	return ctx, nil
}

// withBalancer returns the service config sc with lightmesh's balancer as
// its load-balancing config; sc unchanged when it is not a JSON object
// (grpc.NewClient then reports why).
func withBalancer(sc string) string {
	if sc == "" {
		return serviceConfig
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(sc), &doc); err != nil || doc == nil {
		return sc
	}
	delete(doc, "loadBalancingPolicy")
	doc["loadBalancingConfig"] = json.RawMessage(`[{"` + BalancerName + `": {}}]`)
	out, err := json.Marshal(doc)
	if err != nil {
		return sc
	}
	return string(out)
}
