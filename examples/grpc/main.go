// Command grpc shows lightmesh with gRPC on one machine, nothing to
// install: two versions of an Echo service (base and staging) serve on
// loopback behind lightmesh's server interceptors, and a client dials
// lightmesh:///echo with meshgrpc.DialOptions. It shows a canary split,
// routing by metadata, a lane that arrives over HTTP and leaves over gRPC,
// and an instance breaker that opens on a failing server and sends the
// lane to its fallback. It exits by itself.
//
// The Echo service is lightmesh's test service (internal/grpctest): real
// gRPC over TCP, written without protoc.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
	"github.com/lightmesh/lightmesh/rules"
)

const echoRules = `apiVersion: lightmesh/v1
services:
  echo:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    outlierDetection: {minRequests: 5, failureRatio: 0.3, openBase: 2s, openMax: 2s}
    routes:
      - name: staging-lane                      # x-env: staging metadata, or the lane
        match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
        fallback: base
      - name: canary
        destinations: [{subset: base, weight: 90}, {subset: staging, weight: 10}]
`

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Two versions of the service, each behind lightmesh's server
	// interceptors (a server mesh of its own, as in separate processes).
	serverMesh, err := mesh.New(ctx, mesh.WithLocalService("echo"))
	if err != nil {
		return err
	}
	defer serverMesh.Close()
	var instances []discovery.Instance
	servers := map[string]*grpctest.Server{}
	for _, env := range []string{"base", "staging"} {
		s, stop, err := serve("echo-"+env, meshgrpc.ServerOptions(serverMesh)...)
		if err != nil {
			return err
		}
		defer stop()
		servers[env] = s
		instances = append(instances, discovery.Instance{Address: s.Addr, Labels: map[string]string{"env": env}})
	}

	// The client's mesh: rules and instances, then a gRPC client of
	// lightmesh:///echo.
	m, err := mesh.New(ctx,
		mesh.WithRules(rules.NewMemory([]byte(echoRules))),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"echo": instances})),
	)
	if err != nil {
		return err
	}
	defer m.Close()
	conn, err := grpc.NewClient("lightmesh:///echo", append(meshgrpc.DialOptions(m), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		return err
	}
	defer conn.Close()

	fmt.Println("1. canary split 90/10, no metadata")
	fmt.Println("  ", tally(ctx, conn, 100))

	fmt.Println("2. x-env: staging in the outgoing metadata")
	fmt.Println("  ", tally(metadata.AppendToOutgoingContext(ctx, "x-env", "staging"), conn, 10))

	fmt.Println("3. a lane that arrives over HTTP (X-Env: staging) and leaves over gRPC")
	front, stopFront, err := frontend(m, conn)
	if err != nil {
		return err
	}
	defer stopFront()
	for _, env := range []string{"staging", ""} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, front, nil)
		if env != "" {
			req.Header.Set("X-Env", env)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("   HTTP with X-Env %-9q -> front -> %s\n", env, body)
	}

	fmt.Println("4. echo-staging starts failing: its instance breaker opens, the lane falls back to base")
	servers["staging"].Code.Store(uint32(codes.Unavailable))
	lane := metadata.AppendToOutgoingContext(ctx, "x-env", "staging")
	fmt.Println("  ", tally(lane, conn, 20))
	for _, b := range m.Status().Breakers {
		name := map[string]string{servers["base"].Addr: "echo-base", servers["staging"].Addr: "echo-staging"}[b.Instance]
		if b.State == "open" {
			fmt.Printf("   instance breaker of %s: open for %v more\n", name, time.Until(b.OpenUntil).Round(100*time.Millisecond))
		} else {
			fmt.Printf("   instance breaker of %s: %s\n", name, b.State)
		}
	}
	servers["staging"].Code.Store(uint32(codes.OK))
	time.Sleep(2100 * time.Millisecond)
	fmt.Println("5. echo-staging recovered; after the open period the lane is back on staging")
	fmt.Println("  ", tally(lane, conn, 10))
	return nil
}

// tally makes n calls and counts the answers by server, and errors by code.
func tally(ctx context.Context, conn *grpc.ClientConn, n int) string {
	got := map[string]int{}
	for range n {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		name, err := grpctest.Call(cctx, conn)
		cancel()
		if err != nil {
			name = "error " + status.Code(err).String()
		}
		got[name]++
	}
	keys := make([]string, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s:%d", k, got[k]))
	}
	return strings.Join(parts, "  ")
}

// frontend serves an HTTP handler, wrapped with the mesh Handler, that
// calls echo over gRPC with its request's context: the lane goes along.
func frontend(m *mesh.Mesh, conn *grpc.ClientConn) (string, func(), error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, err := grpctest.Call(r.Context(), conn)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		io.WriteString(w, name)
	}))}
	go srv.Serve(lis)
	return "http://" + lis.Addr().String(), func() { srv.Close() }, nil
}

// serve starts an Echo server named name.
func serve(name string, opts ...grpc.ServerOption) (*grpctest.Server, func(), error) {
	s, err := grpctest.Serve(name, opts...)
	if err != nil {
		return nil, nil, err
	}
	return s, s.Stop, nil
}
