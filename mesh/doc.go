// Package mesh is what services import: New builds a Mesh from a rule
// source and an instance source; Transport wraps an http.RoundTripper so
// calls to logical service names (http://user-api/...) are routed by the
// rules to a concrete instance; Handler wraps an http.Handler so the
// request's lane and trace context reach the service's own outgoing calls;
// StatusHandler shows ops what the process runs.
//
// The rules, instances and the stateful protection built from them
// (breakers, limiters, retry budgets) form one immutable state behind an
// atomic pointer. One background goroutine, the manager, owns every
// change: it receives documents and instance lists from the watchers,
// validates and compiles them, carries over breakers and limiters whose
// settings did not change, and publishes the new state with one store. A
// request loads the pointer once and never waits for a watcher. An
// invalid document is rejected with a precise error, logged, counted and
// kept for Status, and the last good rules keep serving.
//
// Warnings and errors (rejections with every problem, control-plane
// outages, first-use misses) go to slog.Default() unless WithLogger
// gives another logger; they are never discarded.
//
// Metrics are off unless WithRegisterer is given; tracing uses the global
// OpenTelemetry providers unless WithTrace passes others, and only
// propagates context unless span mode is asked for.
package mesh
