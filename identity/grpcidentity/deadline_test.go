package grpcidentity_test

import (
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/identity/grpcidentity"
	"github.com/lightmesh/lightmesh/identity/identitytest"
)

// A client that starts a TLS handshake on a permissive gRPC server and
// then goes silent must be cut off by the server's grpc.ConnectionTimeout,
// as in strict mode: sniffing the first byte must not lift the deadline
// grpc-go puts on the handshake, or every such client holds a connection
// and a goroutine forever.
func TestPermissiveKeepsConnectionTimeout(t *testing.T) {
	ca, err := identitytest.NewCA("example.org")
	if err != nil {
		t.Fatal(err)
	}
	src := workload(t, ca, "/api")
	for _, mode := range []identity.Mode{identity.Strict, identity.Permissive} {
		t.Run(mode.String(), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			s := grpc.NewServer(grpc.Creds(grpcidentity.ServerCredentials(src, mode)),
				grpc.ConnectionTimeout(300*time.Millisecond))
			go s.Serve(ln)
			defer s.Stop()

			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// The first byte of a TLS record (handshake), then silence.
			if _, err := c.Write([]byte{0x16}); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			start := time.Now()
			_, err = c.Read(make([]byte, 1))
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the server still holds the silent connection after %v; grpc.ConnectionTimeout is 300ms", time.Since(start).Round(time.Millisecond))
			}
		})
	}
}
