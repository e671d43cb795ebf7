// Package identity gives a Go service a SPIFFE workload identity without a
// sidecar: X.509 SVIDs and trust bundles from files on disk (rotated by
// cert-manager, csi-driver-spiffe or a script) or from the SPIFFE Workload
// API, mutual TLS for servers (strict, or permissive: plaintext and mTLS
// on one port) and clients (verifying the server's SPIFFE ID), the
// caller's SPIFFE ID in the request context, and ordered allow/deny
// authorization by caller identity, path and method.
//
// Certificates are taken from the Source at every handshake, so a
// rotation applies to the next connection without restarting a server or
// dropping a connection that is already open.
//
// The gRPC side lives in the subpackage grpcidentity, so HTTP-only
// binaries never link grpc-go.
package identity
