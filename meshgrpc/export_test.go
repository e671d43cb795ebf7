package meshgrpc

import (
	"google.golang.org/grpc"

	"github.com/lightmesh/lightmesh/internal/meshlink"
	"github.com/lightmesh/lightmesh/mesh"
)

// UnaryServerInterceptor returns the unary server interceptor of m, for
// tests that call it directly with metadata grpc-go would not send.
func UnaryServerInterceptor(m *mesh.Mesh) grpc.UnaryServerInterceptor {
	return unaryServerInterceptor(m.Engine(meshlink.Key{}), nil)
}
