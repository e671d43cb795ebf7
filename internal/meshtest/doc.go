// Package meshtest holds helpers shared by lightmesh's tests: real
// httptest backends, polling with a deadline, waiting on a channel for a
// matching value, HTTP calls through a mesh client, a goroutine-safe log
// buffer, rule documents that route by lane, and latency reporting for
// benchmarks.
//
// It is imported only from _test.go files. It must not import mesh:
// mesh's package-internal tests would then form an import cycle, so
// helpers that need a *mesh.Mesh stay in the test files that use them.
package meshtest
