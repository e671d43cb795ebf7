// Gin shows lightmesh in Gin services: front calls user-api by its
// logical name through the mesh Transport; user-api has two instances,
// env=base and env=staging. The rules send X-Env: staging to the staging
// instance (a lane), and the mesh mints a request id (UUIDv7) for a
// request that arrives without one, which every hop sees.
//
// The mesh wraps the whole Gin engine (m.Handler(r)), so every r.Use
// middleware runs inside it and finds the lane and request id in
// c.Request.Context(); calls made with that context carry them on.
//
//	go run ./examples/gin
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

	"github.com/gin-gonic/gin"

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
	gin.SetMode(gin.ReleaseMode)
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
// Gin engine wrapped by the mesh's Handler, and returns front's URL and a
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
		r := gin.New()
		r.GET("/whoami", func(c *gin.Context) {
			c.JSON(http.StatusOK, gin.H{
				"instance":  env,
				"requestId": trace.RequestIDFromContext(c.Request.Context()),
				"header":    c.GetHeader("X-Request-Id"),
			})
		})
		addr, stop, err := serve(m.Handler(r))
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
	r := gin.New()
	r.Use(gin.Recovery(), echoRequestID) // inside m.Handler: they see the lane and request id
	r.GET("/hello", func(c *gin.Context) {
		// The request's context carries lane and request id to user-api.
		req, _ := http.NewRequestWithContext(c.Request.Context(), http.MethodGet, "http://user-api/whoami", nil)
		resp, err := client.Do(req)
		if err != nil {
			c.JSON(http.StatusBadGateway, gin.H{"error": err.Error()})
			return
		}
		defer resp.Body.Close()
		var a Answer
		a.RequestID = trace.RequestIDFromContext(c.Request.Context())
		if err := json.NewDecoder(resp.Body).Decode(&a.UserAPI); err != nil {
			c.JSON(http.StatusBadGateway, gin.H{"error": err.Error()})
			return
		}
		c.JSON(http.StatusOK, a)
	})
	addr, stop, err := serve(m.Handler(r)) // the mesh outside, Gin's middlewares inside
	if err != nil {
		return "", nil, err
	}
	stops = append(stops, stop)
	return "http://" + addr, closeAll, nil
}

// echoRequestID is an ordinary Gin middleware: it answers with the
// request id under X-Request-Id, as many services do for their callers.
func echoRequestID(c *gin.Context) {
	c.Header("X-Request-Id", trace.RequestIDFromContext(c.Request.Context()))
	c.Next()
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
