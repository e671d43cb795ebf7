// Package nacos serves lightmesh rule documents and service instances
// from a Nacos 2.x server through the official Go SDK
// (github.com/nacos-group/nacos-sdk-go/v2).
//
// RuleSource reads a rule document from a config item (dataId, group,
// namespace) and listens for changes; Discovery subscribes to services in
// Nacos naming and turns their instances into discovery.Instance values;
// Register registers the current process as an instance with labels as
// its metadata and deregisters it on Close.
//
// Each of them owns one SDK client, created from a Config (server
// addresses, namespace, credentials, timeouts, log and cache directories)
// and closed by Close. ConfigFromEnv reads the usual NACOS_* environment
// variables. Credentials never appear in String, in logs or in errors.
//
// # What the SDK imposes
//
//   - Its log output goes through Config.Logger, or nowhere when that is
//     nil. The SDK keeps one logger for the whole process and resets it
//     each time a client is created; this package installs Config.Logger
//     right after, so with several clients the last one created decides.
//   - Its cache and log files go to a private directory (see
//     Config.CacheDir), removed by Close, never to the working directory.
//     Its local snapshot is off: a rule read fails rather than serving a
//     stale file, and the mesh keeps its last good rules instead.
//   - Config listeners are registered with the server on a 5 s timer, so
//     a change made within about 5 s of a Watch starting may take that
//     long to arrive; after that changes arrive as the server pushes them
//     (tens of milliseconds).
//   - The SDK rate-limits reads of one config item to about 5 per second
//     per process, so changes faster than that are coalesced.
//   - Nacos weights are floats (default 1.0); Discovery turns them into
//     discovery.Instance weights as round(weight*100), which keeps their
//     proportions: 1.0 → 100, 0.5 → 50. Weight 0 means no traffic.
package nacos
