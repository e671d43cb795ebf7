package workload_test

import (
	"context"
	"encoding/pem"
	"net"
	"path/filepath"
	"testing"
	"time"

	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"

	"github.com/lightmesh/lightmesh/identity/identitytest"
	"github.com/lightmesh/lightmesh/identity/workload"
)

// agent is a SPIFFE Workload API server speaking go-spiffe's published
// protocol (the SPIRE agent's side of it): it streams an X.509 SVID
// response now and another each time one is sent on next.
type agent struct {
	workloadpb.UnimplementedSpiffeWorkloadAPIServer
	next chan *workloadpb.X509SVIDResponse
}

func (a *agent) FetchX509SVID(_ *workloadpb.X509SVIDRequest, s grpc.ServerStreamingServer[workloadpb.X509SVIDResponse]) error {
	for {
		select {
		case r := <-a.next:
			if err := s.Send(r); err != nil {
				return err
			}
		case <-s.Context().Done():
			return nil
		}
	}
}

func der(t *testing.T, p []byte) []byte {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("no PEM block")
	}
	return b.Bytes
}

func response(t *testing.T, ca *identitytest.CA, path string) *workloadpb.X509SVIDResponse {
	t.Helper()
	c, k, err := ca.Issue(path)
	if err != nil {
		t.Fatal(err)
	}
	return &workloadpb.X509SVIDResponse{Svids: []*workloadpb.X509SVID{{
		SpiffeId: "spiffe://example.org" + path, X509Svid: der(t, c), X509SvidKey: der(t, k), Bundle: der(t, ca.BundlePEM()),
	}}}
}

// NewSource takes the SVID the agent streams and follows its rotations.
// This runs against a Workload API server made here from go-spiffe's
// published protocol, not a real SPIRE agent (see the README).
func TestSourceFollowsAgent(t *testing.T) {
	ca, err := identitytest.NewCA("example.org")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{next: make(chan *workloadpb.X509SVIDResponse, 1)}
	srv := grpc.NewServer()
	workloadpb.RegisterSpiffeWorkloadAPIServer(srv, a)
	go srv.Serve(ln)
	defer srv.Stop()

	first := response(t, ca, "/front")
	a.next <- first
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	src, err := workload.NewSource(ctx, "unix://"+sock)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	svid, err := src.GetX509SVID()
	if err != nil || svid.ID.String() != "spiffe://example.org/front" {
		t.Fatalf("GetX509SVID = %v, %v; want spiffe://example.org/front", svid, err)
	}
	was := svid.Certificates[0].SerialNumber
	a.next <- response(t, ca, "/front")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		svid, _ = src.GetX509SVID()
		if svid.Certificates[0].SerialNumber.Cmp(was) != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the source never took the agent's rotated SVID")
		}
	}
	if b, err := src.GetX509BundleForTrustDomain(ca.TrustDomain); err != nil || b.Empty() {
		t.Fatalf("bundle: %v %v", b, err)
	}
}
