// Package bench compares lightmesh with its peers: a bare http.Transport,
// otelhttp, raw gobreaker, go-zero's breaker, failsafe-go, hystrix-go,
// sentinel-golang and a hop through a local nginx or HAProxy standing in
// for a sidecar; and, in timed scenarios rather than benchmarks, the
// protection lightmesh gives beside go-zero's and kratos' (a slow
// instance, a failing dependency, an overloaded server, slow start:
// TestProtectScenarios).
//
// It is a Go module of its own so that the library's go.mod names only
// the library's dependencies. Everything lives in the _test.go files; run
// ./run.sh, or go test -run x -bench . from this directory. See README.md.
package bench
