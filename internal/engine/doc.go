// Package engine is lightmesh's protocol-neutral call engine, shared by the
// HTTP adapter (package mesh) and the gRPC adapter (package meshgrpc).
//
// An [Engine] holds the [State] in force — the routing table and the
// stateful protection built from the rules (breakers, token buckets, retry
// budgets) — behind one atomic pointer. The mesh's manager goroutine
// builds each new State off the request path ([State.WithRules],
// [State.WithInstances]: validation already happened in package router, so
// building cannot fail and changes nothing that is serving) and publishes
// it with one store.
//
// A [Call] carries one logical request through the engine: Begin matches a
// route and chooses a subset, Admit applies the rate limit, and Run makes
// the tries. Each try is one [Try] value, created, routed and reported in
// one place: the service breaker admits it (NewTry), Pick picks an
// instance (skipping ejected ones) that its own breaker admits, and Done
// reports the outcome, once, to both breakers after one function (judge)
// decided whose deadline, if any, ended it. HTTP's retry loop (Run), the
// gRPC picker's Done callback (AttemptDone, per attempt) and a gRPC
// stream's first response or end (NewTry and Done, from grpc-go's stats
// handler) are the same operation. Run bounds the tries by the call and
// per-try timeouts and decides on a retry (policy, budget, another
// instance). The adapters only translate: request attributes in (method,
// path or full method, headers or metadata), one try's outcome out (status
// code, gRPC code, transport error). The decision path (match, pick,
// admit, allow) does not allocate.
//
// The inbound side is one function too: [Engine.Enter] applies the local
// service's inbound limit, extracts the lane and trace context and starts
// the server span, and [Incoming.Finish] records the call, for
// mesh.Handler and meshgrpc's server interceptors alike.
//
// Users never import this package; its exported names are for lightmesh's
// own adapters.
package engine
