package router_test

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/router"
)

// Load accepts exactly the documents a mesh accepts. A rejected document
// lists every problem, each with its path in the document, line and
// column.
func ExampleLoad() {
	_, err := router.Load([]byte(`apiVersion: lightmesh/v1
services:
  user-api:
    subsets:
      base: {labels: {env: base}}
    retry: {attempts: 20}
    routes:
      - destinatons: [{subset: base}]
`))
	var verr *router.ValidationError
	if errors.As(err, &verr) {
		for _, p := range verr.Problems {
			fmt.Printf("%s (line %d): %s\n", p.Path, p.Line, p.Reason)
		}
	}
	// Output:
	// services.user-api.retry.attempts (line 6): must be 0..10
	// services.user-api.routes[0].destinatons (line 8): unknown field; did you mean "destinations"?
}

// A Table routes a request to an instance with the rules Load compiled,
// without a mesh: what the mesh does for every call.
func ExampleTable_Route() {
	rules, err := router.Load([]byte(`apiVersion: lightmesh/v1
services:
  user-api:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - name: staging-lane
        match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
      - name: default
        destinations: [{subset: base}]
`))
	if err != nil {
		panic(err)
	}
	table := router.NewTable(rules, map[string][]discovery.Instance{"user-api": {
		{Address: "10.0.0.1:8080", Labels: map[string]string{"env": "base"}},
		{Address: "10.0.0.2:8080", Labels: map[string]string{"env": "staging"}},
	}})
	res, err := table.Route("user-api", &router.Request{Method: http.MethodGet, Path: "/users", Header: http.Header{"X-Env": {"staging"}}}, nil)
	fmt.Println(res.Route, res.Subset, res.Instance.Address, err)
	// Output: staging-lane staging 10.0.0.2:8080 <nil>
}
