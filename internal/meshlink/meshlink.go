// Package meshlink is how lightmesh's gRPC adapter (package meshgrpc)
// reaches a mesh's call engine without a method that programs outside
// lightmesh could call: mesh.Mesh.Engine takes a Key, and only packages of
// this module can make one, because this package is internal and Key has an
// unexported field. No package-level state is involved.
package meshlink

// Key proves that a caller is one of lightmesh's own packages. The zero
// value is the key.
type Key struct{ _ [0]func() }
