// Package mesh is what services import: New builds a Mesh from a rule
// source and an instance source; Transport wraps an http.RoundTripper so
// calls to logical service names (http://user-api/...) are routed by the
// rules to a concrete instance; Handler wraps an http.Handler so the
// request's lane and trace context reach the service's own outgoing calls.
//
// The rules and instances the request path uses are one immutable
// router.Table behind an atomic pointer. One background goroutine (the
// manager) owns every change: it receives documents and instance lists
// from the watchers, validates and compiles them, and publishes a new
// table with one store. A request loads the pointer once and never waits
// for a watcher. An invalid document is rejected with a precise error,
// logged and kept for Status, and the last good rules keep serving.
package mesh
