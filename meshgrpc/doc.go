// Package meshgrpc brings lightmesh to gRPC: the rules, routing,
// protection, lanes and metrics that mesh.Transport and mesh.Handler give
// HTTP, for grpc-go clients and servers, from the same Mesh and the same
// rule document. It is a package of its own (as otelgrpc sits beside
// otelhttp) so that programs speaking only HTTP never link grpc-go.
//
// # Client
//
//	conn, err := grpc.NewClient("lightmesh:///user-api", meshgrpc.DialOptions(m)...)
//
// DialOptions installs, for this client only:
//
//   - a resolver for the lightmesh scheme (grpc.WithResolvers, never
//     registered globally) that feeds the instances the mesh discovers for
//     the service, with their labels and weights as endpoint attributes,
//     follows every discovery change, and sends the service config that
//     names the lightmesh balancer (grpc-go prefers it to a default service
//     config; give the client's own method configs with WithServiceConfig);
//   - the lightmesh balancer (grpc-go's endpointsharding with a pick_first
//     child per instance, so connections are reused across calls and shut
//     down when an instance leaves). Its picker is rebuilt on every child
//     change and every rule or instance change, and runs the same router as
//     HTTP: the route's match on the outgoing metadata (the rules' headers),
//     the full method name (the rules' path), the lane in the context,
//     weighted subsets and the fallback; instances whose breaker is open are
//     skipped. When the chosen subset has no instance at all the call fails
//     at once with codes.Unavailable naming service, subset and route, even
//     a wait-for-ready call; while connections are still being set up it
//     waits, within the call's deadline; when they all failed it fails with
//     codes.Unavailable, and a wait-for-ready call waits;
//   - unary and stream interceptors for the client rate limit
//     (codes.ResourceExhausted), the service breaker (codes.Unavailable), the
//     call timeout, retries of unary calls (per-try timeout, retry budget,
//     another instance each time; after a per-try timeout or a reset only
//     for methods named by WithIdempotentMethods or a rule with
//     nonIdempotent: true), lane and W3C trace propagation into the
//     outgoing metadata, spans in span mode, and metrics;
//   - a stream's life taken from grpc-go without a stats handler: the
//     breakers and the latency histogram judge a stream at its first
//     response (its headers arriving, whenever the caller reads them; a
//     half-open probe slot is given back when that is overdue; a stream is
//     never a slow call), its end (grpc.OnFinish: also when the caller's
//     context ends or the ClientConn is closed under it) goes to the
//     metrics and the span;
//   - for a mesh with an identity (mesh.WithIdentity), the transport
//     credentials: mutual TLS verifying the server's SPIFFE ID for a
//     service whose rules set serverID, plaintext otherwise, and a check
//     that refuses (codes.Unauthenticated) a call to such a service on a
//     connection of credentials given after DialOptions.
//
// Errors the mesh itself returns are status errors that also keep
// errors.Is working: errors.Is(err, mesh.ErrCircuitOpen),
// errors.Is(err, mesh.ErrRateLimited), errors.Is(err, router.ErrNoInstance).
//
// # Server
//
//	srv := grpc.NewServer(meshgrpc.ServerOptions(m)...)
//
// The server interceptors put the lane, trace context and request id of
// each incoming call into its context (so calls the handler makes, over
// gRPC or HTTP, stay in the lane), apply the inbound rate limit of the
// mesh's local service (codes.ResourceExhausted, with a
// grpc-retry-pushback-ms trailer; WithRefusalStatus answers with the
// service's own status and details instead), record metrics, and in span
// mode start a server span.
//
// # With otelgrpc
//
// A service that already uses otelgrpc's stats handlers keeps them; use
// lightmesh's default propagate-only mode. lightmesh then creates no span of
// its own: it sets its routing attributes (lightmesh.service, subset, route,
// instance) on otelgrpc's client span, and on the server keeps otelgrpc's
// server span as the parent of the handler's work. In span mode on the
// server the same holds (otelgrpc's span is used, not a second one); on the
// client, lightmesh's span becomes the parent of otelgrpc's.
//
// The balancer is registered with grpc-go under the name "lightmesh" when
// this package is imported, as grpc-go wants balancers installed; it holds
// no state: each client's mesh reaches it through its resolver's state.
// This package reaches the mesh's engine through mesh.Mesh.Engine, which
// only lightmesh's own packages can call (it takes an internal/meshlink.Key).
package meshgrpc
