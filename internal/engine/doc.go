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
// the tries — each through the service breaker, with an instance picked
// (skipping ejected ones) and admitted by its own breaker, bounded by the
// call and per-try timeouts — classifies each outcome for the breakers and
// decides on a retry (policy, budget, another instance). The adapters only
// translate: request attributes in (method, path or full method, headers
// or metadata), one try's outcome out (status code, gRPC code, transport
// error). The decision path (match, pick, admit, allow) does not allocate.
//
// Users never import this package; its exported names are for lightmesh's
// own adapters.
package engine
