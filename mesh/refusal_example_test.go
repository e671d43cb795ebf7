package mesh_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// A service whose errors are JSON answers the mesh's refusals in JSON too.
func ExampleWithRefusalWriter() {
	m, err := mesh.New(context.Background(),
		mesh.WithRules(rules.NewMemory([]byte(`apiVersion: lightmesh/v1
services:
  orders:
    inbound:
      - name: api
        match: {path: {prefix: /api/}}
        rateLimit: {rps: 0.01, burst: 1}
`))),
		mesh.WithLocalService("orders"),
		mesh.WithRefusalWriter(func(w http.ResponseWriter, r *http.Request, rf mesh.Refusal) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(rf.HTTPStatus())
			json.NewEncoder(w).Encode(map[string]string{
				"code": "TOO_MANY_REQUESTS", "reason": rf.Reason, "rule": rf.Service + "/" + rf.Route,
			})
		}),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	srv := httptest.NewServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "order list")
	})))
	defer srv.Close()

	for range 2 {
		resp, err := http.Get(srv.URL + "/api/orders")
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%d %s", resp.StatusCode, body)
	}
	// Output:
	// 200 order list
	// 429 {"code":"TOO_MANY_REQUESTS","reason":"rate_limited","rule":"orders/api"}
}
