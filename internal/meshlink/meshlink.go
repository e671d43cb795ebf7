// Package meshlink is how lightmesh's gRPC adapter (package meshgrpc)
// reaches a mesh's call engine without a public method on mesh.Mesh that
// users would see and could not use: package mesh fills in Engine when it
// is initialised, as grpc-go's own packages link through grpc/internal.
// Engine is set once, before any code of the importing program runs, and
// never changes.
package meshlink

import "github.com/lightmesh/lightmesh/internal/engine"

// Engine returns the engine of m, a *mesh.Mesh (typed any: this package
// cannot import mesh, which imports it). Package mesh sets it.
var Engine func(m any) *engine.Engine
