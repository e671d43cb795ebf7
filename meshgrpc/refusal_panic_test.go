package meshgrpc_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
)

// TestRefusalStatusPanicKeepsTheServer: a refusal hook that panics (a
// nil map in the service's envelope code, say) runs only when the
// service is over its limit; grpc-go does not recover panics in
// interceptors, so it would take the whole process down at the worst
// moment. The call is refused with the default ResourceExhausted status
// instead, and the server keeps serving.
func TestRefusalStatusPanicKeepsTheServer(t *testing.T) {
	_, _, err := refusedCall(t, meshgrpc.WithRefusalStatus(func(context.Context, mesh.Refusal) *status.Status {
		var details map[string]string
		details["route"] = "boom"
		return nil
	}))
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted {
		t.Fatalf("refused call with a panicking hook: %v, want the default ResourceExhausted", err)
	}
}
