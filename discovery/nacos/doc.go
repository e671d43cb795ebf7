// Package nacos serves lightmesh rule documents and service instances
// from a Nacos 2.x server through the official Go SDK
// (github.com/nacos-group/nacos-sdk-go/v2).
//
// RuleSource reads a rule document from a config item (dataId, group,
// namespace) and listens for changes: it is a Catalog of one item.
// Catalog serves one rule document per service. Discovery subscribes to
// services in Nacos naming and turns their instances into
// discovery.Instance values; Register, or Discovery.Register sharing the
// discovery's connection, registers the current process as an instance
// with labels as its metadata, finding its own address when given none,
// and deregisters it on Close.
//
// Each of them owns one SDK client, created from a Config (server
// addresses, namespace, credentials, timeouts, log and cache directories)
// and closed by Close. ConfigFromEnv reads the usual NACOS_* environment
// variables. Credentials never appear in String, in logs or in errors.
//
// # What the SDK imposes
//
//   - Its log output goes through Config.Logger, or nowhere when that is
//     nil (this package's own warnings then go to slog.Default()). The SDK keeps one logger for the whole process: each client
//     this package creates installs its Config's, so the last one created
//     decides, and a program may install its own. Nothing else depends on
//     it: the catalogs hear the server's pushes on their own connections.
//   - nacos-sdk-go v2.3.5 can lose a config push (see Catalog); the
//     catalogs answer the pushes themselves and read the pushed item.
//   - Nacos 2.x keeps one instance per service and naming connection.
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
