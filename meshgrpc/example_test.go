package meshgrpc_test

import (
	"context"
	"fmt"
	"log"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
	"github.com/lightmesh/lightmesh/rules"
)

// A gRPC client and servers in the mesh: the client dials the service's
// logical name and the rules pick the instance by the call's metadata. The
// servers here run a small Echo service that answers with their name.
func Example() {
	var instances []discovery.Instance
	for _, env := range []string{"base", "staging"} {
		// A real service registers its own services on the server made
		// with grpc.NewServer(meshgrpc.ServerOptions(m)...).
		srv, err := grpctest.Serve(env + "-1")
		if err != nil {
			log.Fatal(err)
		}
		defer srv.Stop()
		instances = append(instances, discovery.Instance{Address: srv.Addr, Labels: map[string]string{"env": env}})
	}
	m, err := mesh.New(context.Background(),
		mesh.WithRules(rules.NewMemory([]byte(`apiVersion: lightmesh/v1
services:
  echo:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
      - destinations: [{subset: base}]
`))),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"echo": instances})),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	conn, err := grpc.NewClient("lightmesh:///echo",
		append(meshgrpc.DialOptions(m), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	ctx := context.Background()
	name, err := grpctest.Call(ctx, conn)
	fmt.Println(name, err)
	name, err = grpctest.Call(metadata.AppendToOutgoingContext(ctx, "x-env", "staging"), conn)
	fmt.Println(name, err)
	// Output:
	// base-1 <nil>
	// staging-1 <nil>
}
