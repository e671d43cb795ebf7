// Chi shows lightmesh in chi services: front calls user-api by its
// logical name through the mesh Transport; user-api has two instances,
// env=base and env=staging. The rules send X-Env: staging to the staging
// instance (a lane), and the mesh mints a request id (UUIDv7) for a
// request that arrives without one, which every hop sees.
//
// chi middlewares are net/http ones, so m.Handler is one: r.Use(m.Handler)
// first, and every middleware after it finds the lane and request id in
// r.Context(); calls made with that context carry them on. chi's own
// middleware.RequestID finds the mesh's id in the X-Request-Id header.
//
//	go run ./examples/chi
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
	"github.com/lightmesh/lightmesh/trace"
)

// rulesDoc routes user-api's staging lane to its staging subset.
const rulesDoc = `apiVersion: lightmesh/v1
services:
  user-api:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - name: staging-lane
        match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
        fallback: base
      - name: default
        destinations: [{subset: base}]
`

// Answer is what front answers: its own request id and what user-api saw.
type Answer struct {
	RequestID string `json:"requestId"`
	UserAPI   struct {
		Instance  string `json:"instance"`
		RequestID string `json:"requestId"` // from its context
		Header    string `json:"header"`    // its X-Request-Id header
	} `json:"userApi"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	front, closeAll, err := start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer closeAll()
	for _, env := range []string{"", "staging"} {
		a, id, err := Call(ctx, front, env, "")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("X-Env %-8q → user-api %-8s request id %s (front) %s (user-api), answered with X-Request-Id %s\n",
			env, a.UserAPI.Instance, a.RequestID, a.UserAPI.RequestID, id)
	}
}

// start runs user-api's two instances and front on loopback ports, each a
// chi router with the mesh's Handler as its first middleware, and returns front's URL and a
// function that stops everything.
func start(ctx context.Context) (front string, closeAll func(), err error) {
	var stops []func()
	closeAll = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	static := discovery.NewStatic(nil)
	startCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// One mesh for the three servers here; in production each process
	// has its own, reading the same rules.
	m, err := mesh.New(startCtx,
		mesh.WithRules(rules.NewMemory([]byte(rulesDoc))),
		mesh.WithDiscovery(static),
		mesh.WithTrace(trace.WithRequestIDMinting(trace.UUIDv7)),
	)
	if err != nil {
		return "", nil, err
	}
	stops = append(stops, func() { m.Close() })

	var instances []discovery.Instance
	for _, env := range []string{"base", "staging"} {
		r := chi.NewRouter()
		r.Use(m.Handler)
		r.Get("/whoami", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{
				"instance":  env,
				"requestId": trace.RequestIDFromContext(r.Context()),
				"header":    r.Header.Get("X-Request-Id"),
			})
		})
		addr, stop, err := serve(r)
		if err != nil {
			return "", nil, err
		}
		stops = append(stops, stop)
		instances = append(instances, discovery.Instance{Address: addr, Labels: map[string]string{"env": env}})
	}
	static.Set("user-api", instances)
	// Discovery reports in the background: wait until the mesh knows
	// user-api's instances, as a deployment waits for registration.
	for len(m.Table().Instances("user-api", "")) < len(instances) {
		select {
		case <-time.After(5 * time.Millisecond):
		case <-startCtx.Done():
			return "", nil, fmt.Errorf("user-api's instances not discovered: %w", startCtx.Err())
		}
	}

	client := &http.Client{Transport: m.Transport(nil), Timeout: 5 * time.Second}
	r := chi.NewRouter()
	// The mesh first; chi's RequestID after it finds the mesh's id in
	// X-Request-Id (middleware.GetReqID returns it).
	r.Use(m.Handler, middleware.Recoverer, middleware.RequestID, echoRequestID)
	r.Get("/hello", func(w http.ResponseWriter, r *http.Request) {
		// The request's context carries lane and request id to user-api.
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://user-api/whoami", nil)
		resp, err := client.Do(req)
		if err != nil {
			writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
			return
		}
		defer resp.Body.Close()
		var a Answer
		a.RequestID = trace.RequestIDFromContext(r.Context())
		if err := json.NewDecoder(resp.Body).Decode(&a.UserAPI); err != nil {
			writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, a)
	})
	addr, stop, err := serve(r)
	if err != nil {
		return "", nil, err
	}
	stops = append(stops, stop)
	return "http://" + addr, closeAll, nil
}

// echoRequestID is an ordinary middleware: it answers with chi's request
// id (the mesh's, read from X-Request-Id) under X-Request-Id, as many
// services do for their callers.
func echoRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", middleware.GetReqID(r.Context()))
		next.ServeHTTP(w, r)
	})
}

// writeJSON answers v as JSON with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// Call asks front for /hello with X-Env env and X-Request-Id id (each
// when not empty) and returns its answer and its X-Request-Id header.
func Call(ctx context.Context, front, env, id string) (Answer, string, error) {
	var a Answer
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, front+"/hello", nil)
	if err != nil {
		return a, "", err
	}
	if env != "" {
		req.Header.Set("X-Env", env)
	}
	if id != "" {
		req.Header.Set("X-Request-Id", id)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return a, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return a, "", fmt.Errorf("front answered %s: %s", resp.Status, body)
	}
	return a, resp.Header.Get("X-Request-Id"), json.Unmarshal(body, &a)
}

// serve serves h on a loopback port and returns its address and a stop
// function.
func serve(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }, nil
}
