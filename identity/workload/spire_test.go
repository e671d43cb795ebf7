package workload_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/identity/grpcidentity"
	"github.com/lightmesh/lightmesh/identity/workload"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
	"github.com/lightmesh/lightmesh/rules"
)

// spireAgent returns the Workload API address of the real SPIRE agent
// scripts/spire.sh started (LIGHTMESH_SPIRE_SOCKET); it skips without
// one, and fails with LIGHTMESH_REQUIRE_SPIRE=1 (as .ci/run sets).
func spireAgent(t *testing.T) string {
	t.Helper()
	addr := os.Getenv("LIGHTMESH_SPIRE_SOCKET")
	if addr == "" {
		if os.Getenv("LIGHTMESH_REQUIRE_SPIRE") == "1" {
			t.Fatal("LIGHTMESH_REQUIRE_SPIRE=1 but LIGHTMESH_SPIRE_SOCKET is not set (export LIGHTMESH_SPIRE_SOCKET=$(bash scripts/spire.sh start))")
		}
		t.Skip("no SPIRE agent: export LIGHTMESH_SPIRE_SOCKET=$(bash scripts/spire.sh start) to run against a real one")
	}
	return addr
}

// spire runs scripts/spire.sh with args against the server the script
// started (same LIGHTMESH_SPIRE_HOME, SPIRE_BIN_DIR, LIGHTMESH_SPIRE_PORT).
func spire(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("bash", append([]string{"../../scripts/spire.sh"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/spire.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func serial(t *testing.T, src *workloadapi.X509Source) (string, string) {
	t.Helper()
	s, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	return s.ID.String(), s.Certificates[0].SerialNumber.String()
}

// Against a real SPIRE v1.13.3 server and agent (scripts/spire.sh): two
// meshes take their SVIDs from the agent through workload.NewSource, an
// HTTP and a gRPC call between them go over mutual TLS and the handlers
// see the caller's SPIFFE ID, the authorization in the rules refuses what
// it does not allow, and when the agent rotates the SVIDs a load loop over
// kept-alive and new connections and gRPC sees no failure, and a new
// connection presents the new certificate. With x509SVIDTTL 20 the server
// backdates each SVID by 10 s (a 30 s life) and the agent renews it at
// about half its life, some 5 s after it was issued (rotationutil in
// SPIRE v1.13.3), so the rotation comes within seconds.
//
// Both meshes run in this process, so the unix workload attestor gives
// them the same selectors (unix:uid:N): SPIRE cannot tell them apart, and
// a second entry with the same selector does not give the second mesh a
// second ID. What is real here is what a process matching several entries
// gets: the agent sends every matching SVID ordered by entry ID, and
// NewSource (go-spiffe's default picker) serves the first. The test
// registers /api (entry ID ...-a) before /front (...-b), both for this
// uid, and checks that both meshes serve /api, also after rotation; the
// server verifies and authorizes that ID as the caller.
func TestRealSPIREAgent(t *testing.T) {
	addr := spireAgent(t)
	run := fmt.Sprintf("lm-%d", time.Now().UnixNano())
	apiID := "spiffe://lightmesh.test/" + run + "/api"
	frontID := "spiffe://lightmesh.test/" + run + "/front"
	sel := fmt.Sprintf("unix:uid:%d", os.Getuid())
	spire(t, "entry", "-entryID", run+"-a", "-spiffeID", apiID, "-selector", sel, "-x509SVIDTTL", "20")
	t.Cleanup(func() { spire(t, "delete", run+"-a") })
	spire(t, "entry", "-entryID", run+"-b", "-spiffeID", frontID, "-selector", sel, "-x509SVIDTTL", "20")
	t.Cleanup(func() { spire(t, "delete", run+"-b") })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The agent learns new entries at its next sync (every 5 s).
	newSource := func() *workloadapi.X509Source {
		src, err := workload.NewSource(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { src.Close() })
		return src
	}
	apiSrc, frontSrc := newSource(), newSource()
	// The agent may still serve an entry deleted since its last sync (an
	// earlier run's); once it has synced it serves ours, and never /front:
	// /api was registered first, and its entry ID sorts first.
	for name, src := range map[string]*workloadapi.X509Source{"api": apiSrc, "front": frontSrc} {
		deadline := time.Now().Add(20 * time.Second)
		for {
			id, _ := serial(t, src)
			if id == apiID {
				break
			}
			if id == frontID || time.Now().After(deadline) {
				t.Fatalf("%s source serves %s; want %s, the matching entry with the lowest entry ID", name, id, apiID)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	doc := fmt.Sprintf(`apiVersion: lightmesh/v1
services:
  api:
    serverID: %[1]s
    authorization:
      default: deny
      rules:
        - action: allow
          callers: [%[1]s]
          paths: [/orders*]
  apigrpc:
    serverID: %[1]s
    authorization:
      default: deny
      rules:
        - action: allow
          callers: [%[1]s]
          paths: [/grpc.health.v1.Health/Check]
`, apiID)

	// The serving mesh holds the rules its guards enforce.
	serving, err := mesh.New(ctx, mesh.WithRules(rules.NewMemory([]byte(doc))), mesh.WithIdentity(apiSrc))
	if err != nil {
		t.Fatal(err)
	}
	defer serving.Close()

	// HTTP, strict mutual TLS, guarded; the handler answers the caller's
	// ID and records the client certificate's serial.
	var seen sync.Map
	httpGuard, err := identity.NewGuard(serving, identity.GuardOptions{Service: "api"})
	if err != nil {
		t.Fatal(err)
	}
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hsrv := &http.Server{ConnContext: identity.ConnContext, Handler: httpGuard.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.TLS.PeerCertificates[0].SerialNumber.String(), true)
		id, _ := identity.CallerID(r.Context())
		io.WriteString(w, id.String())
	}))}
	go hsrv.Serve(identity.Listen(hln, identity.ServerTLSConfig(apiSrc), identity.Strict))
	defer hsrv.Close()

	// gRPC, the same way; Check answers the caller's ID in its error.
	grpcGuard, err := identity.NewGuard(serving, identity.GuardOptions{Service: "apigrpc"})
	if err != nil {
		t.Fatal(err)
	}
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gsrv := grpc.NewServer(grpc.Creds(grpcidentity.ServerCredentials(apiSrc, identity.Strict)),
		grpc.ChainUnaryInterceptor(grpcidentity.UnaryServerInterceptor(grpcGuard)),
		grpc.ChainStreamInterceptor(grpcidentity.StreamServerInterceptor(grpcGuard)))
	healthpb.RegisterHealthServer(gsrv, callerHealth{})
	go gsrv.Serve(gln)
	defer gsrv.Stop()

	// The calling mesh: its own source, the same rules, both services.
	calling, err := mesh.New(ctx, mesh.WithRules(rules.NewMemory([]byte(doc))), mesh.WithIdentity(frontSrc),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{
			"api": {{Address: hln.Addr().String()}}, "apigrpc": {{Address: gln.Addr().String()}},
		})),
		mesh.WithServices("api", "apigrpc"))
	if err != nil {
		t.Fatal(err)
	}
	defer calling.Close()
	kept := &http.Client{Timeout: 5 * time.Second, Transport: calling.Transport(nil)}
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: calling.Transport(nil)}
	defer kept.CloseIdleConnections()
	defer fresh.CloseIdleConnections()
	cc, err := grpc.NewClient("lightmesh:///apigrpc", meshgrpc.DialOptions(calling)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	health := healthpb.NewHealthClient(cc)

	get := func(c *http.Client, path string) (int, string, error) {
		resp, err := c.Get("http://api" + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	check := func() error {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		_, err := health.Check(cctx, &healthpb.HealthCheckRequest{})
		if st := status.Convert(err); st.Code() != codes.Unknown || st.Message() != "caller="+apiID {
			return fmt.Errorf("gRPC Check: %v; want the handler's answer caller=%s", err, apiID)
		}
		return nil
	}

	if code, body, err := get(kept, "/orders/1"); err != nil || code != 200 || body != apiID {
		t.Fatalf("GET http://api/orders/1: %d %q %v; want 200 served to %s over mutual TLS", code, body, err, apiID)
	}
	if code, body, err := get(kept, "/admin"); err != nil || code != http.StatusForbidden || !strings.Contains(body, "denied by default") {
		t.Fatalf("GET http://api/admin: %d %q %v; want 403 denied by default", code, body, err)
	}
	if err := check(); err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = health.List(cctx, &healthpb.HealthListRequest{})
	ccancel()
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("gRPC List: %v; want PermissionDenied (only Check is allowed)", err)
	}

	// Rotation under load: HTTP on a kept-alive connection, HTTP on a new
	// connection each time, and gRPC, until both sources serve a new SVID.
	_, api0 := serial(t, apiSrc)
	_, front0 := serial(t, frontSrc)
	lctx, lcancel := context.WithCancel(ctx)
	defer lcancel()
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	worker := func(call func() error) {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for n := 0; n < 2000; n++ { // bounded: 40 s at most
			select {
			case <-lctx.Done():
				return
			case <-tick.C:
			}
			if err := call(); err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
				continue
			}
			ok.Add(1)
		}
	}
	httpCall := func(c *http.Client, newConn bool) func() error {
		return func() error {
			if newConn {
				c.CloseIdleConnections()
			}
			code, body, err := get(c, "/orders/1")
			if err == nil && (code != 200 || body != apiID) {
				err = fmt.Errorf("GET /orders/1: %d %q", code, body)
			}
			return err
		}
	}
	wg.Add(3)
	go worker(httpCall(kept, false))
	go worker(httpCall(fresh, true))
	go worker(check)

	start := time.Now()
	var api1, front1 string
	for {
		var id string
		id, api1 = serial(t, apiSrc)
		_, front1 = serial(t, frontSrc)
		if id != apiID {
			t.Fatalf("after rotation the api source serves %s; want %s", id, apiID)
		}
		if api1 != api0 && front1 != front0 {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("the agent did not rotate both SVIDs within 30 s (x509SVIDTTL 20): api serial %s -> %s, front %s -> %s", api0, api1, front0, front1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rotated := time.Since(start)
	// A connection made now presents the new client certificate.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, _, err := get(fresh, "/orders/1"); err == nil {
			if _, ok := seen.Load(front1); ok {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server never saw the front source's new certificate (serial %s) on a new connection", front1)
		}
		fresh.CloseIdleConnections()
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // load on the new certificates too
	lcancel()
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d calls failed while SPIRE rotated the SVIDs; first: %v", n, n+ok.Load(), firstErr.Load())
	}
	if ok.Load() < 100 {
		t.Fatalf("only %d calls completed; the load did not run", ok.Load())
	}
	t.Logf("SPIRE rotated both SVIDs %v into the load; %d calls (HTTP kept-alive, HTTP new connections, gRPC), 0 failed", rotated.Round(100*time.Millisecond), ok.Load())
}

// callerHealth answers Check with an error carrying the caller's SPIFFE
// ID from the context, so the test sees what the handler saw.
type callerHealth struct {
	healthpb.UnimplementedHealthServer
}

func (callerHealth) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	id, ok := identity.CallerID(ctx)
	if !ok {
		return nil, status.Error(codes.Unknown, "caller=anonymous")
	}
	return nil, status.Error(codes.Unknown, "caller="+id.String())
}
