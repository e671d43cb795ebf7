package grpcidentity_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/identity/grpcidentity"
	"github.com/lightmesh/lightmesh/identity/identitytest"
	"github.com/lightmesh/lightmesh/router"
)

func workload(t *testing.T, ca *identitytest.CA, path string) *identity.FileSource {
	t.Helper()
	dir := t.TempDir()
	if _, err := ca.WriteFiles(dir, path); err != nil {
		t.Fatal(err)
	}
	src, err := identity.NewFileSource(context.Background(), identity.Files{
		Cert: dir + "/svid.pem", Key: dir + "/svid_key.pem", Bundle: dir + "/bundle.pem",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// callerHealth answers Check with an error carrying the caller's SPIFFE
// ID from the context, so the test sees what the handler saw.
type callerHealth struct {
	healthpb.UnimplementedHealthServer
	hits atomic.Int64
}

func (h *callerHealth) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	h.hits.Add(1)
	id, ok := identity.CallerID(ctx)
	if !ok {
		return nil, status.Error(codes.Unknown, "caller=anonymous")
	}
	return nil, status.Error(codes.Unknown, "caller="+id.String())
}

func serve(t *testing.T, src identity.Source, mode identity.Mode, g *identity.Guard) (string, *callerHealth) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(grpcidentity.ServerCredentials(src, mode)),
		grpc.ChainUnaryInterceptor(grpcidentity.UnaryServerInterceptor(g)),
		grpc.ChainStreamInterceptor(grpcidentity.StreamServerInterceptor(g)))
	h := &callerHealth{}
	healthpb.RegisterHealthServer(s, h)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String(), h
}

func call(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func watch(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	_, err = s.Recv()
	return err
}

const check = "/grpc.health.v1.Health/Check"

func TestGRPCThreeWorkloads(t *testing.T) {
	ca, err := identitytest.NewCA("example.org")
	if err != nil {
		t.Fatal(err)
	}
	api, front, batch := workload(t, ca, "/api"), workload(t, ca, "/front"), workload(t, ca, "/batch")
	policy, err := identity.NewPolicy(router.Authorization{Default: "deny", Rules: []router.AuthorizationRule{
		{Action: "allow", Callers: []string{"spiffe://example.org/front"}, Paths: []string{"/grpc.health.v1.Health/*"}},
		{Action: "allow", Callers: []string{"none"}, Paths: []string{check}},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := identity.NewGuard(policy, identity.GuardOptions{Service: "api"})
	if err != nil {
		t.Fatal(err)
	}
	apiID := spiffeid.RequireFromString("spiffe://example.org/api")
	for _, mode := range []identity.Mode{identity.Strict, identity.Permissive} {
		t.Run(mode.String(), func(t *testing.T) {
			addr, h := serve(t, api, mode, g)
			err := call(t, addr, grpcidentity.ClientCredentials(front, apiID))
			if status.Convert(err).Message() != "caller=spiffe://example.org/front" {
				t.Fatalf("front: %v; want its call served with its ID in the context", err)
			}
			err = call(t, addr, grpcidentity.ClientCredentials(batch, apiID))
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "spiffe://example.org/batch may not call "+check+": denied by default") {
				t.Fatalf("batch: %v; want PermissionDenied naming the caller and the reason", err)
			}
			// Streams: the guard answers before the handler (which
			// answers Unimplemented) for a caller it refuses.
			for _, c := range []struct {
				src  identity.Source
				want codes.Code
			}{{front, codes.Unimplemented}, {batch, codes.PermissionDenied}} {
				if err := watch(t, addr, grpcidentity.ClientCredentials(c.src, apiID)); status.Code(err) != c.want {
					t.Fatalf("Watch: %v; want %v", err, c.want)
				}
			}
			before := h.hits.Load()
			err = call(t, addr, insecure.NewCredentials())
			switch mode {
			case identity.Strict:
				if status.Code(err) != codes.Unavailable || h.hits.Load() != before {
					t.Fatalf("plaintext caller in strict mode: %v; want Unavailable, no call served", err)
				}
			case identity.Permissive:
				if status.Convert(err).Message() != "caller=anonymous" {
					t.Fatalf("plaintext caller in permissive mode: %v; want served without an ID", err)
				}
			}
		})
	}
}

func TestGRPCWrongServerID(t *testing.T) {
	ca, err := identitytest.NewCA("example.org")
	if err != nil {
		t.Fatal(err)
	}
	impostor, front := workload(t, ca, "/impostor"), workload(t, ca, "/front")
	addr, h := serve(t, impostor, identity.Strict, nil)
	err = call(t, addr, grpcidentity.ClientCredentials(front, spiffeid.RequireFromString("spiffe://example.org/api")))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "server presented spiffe://example.org/impostor, expected spiffe://example.org/api") {
		t.Fatalf("error %v; want Unavailable naming both IDs", err)
	}
	if h.hits.Load() != 0 {
		t.Fatalf("%d calls reached the server; want 0", h.hits.Load())
	}
}
