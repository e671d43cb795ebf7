// Lanes shows dynamic lanes on one machine with nothing installed: a lane
// is the value of one instance label, so deploying instances labelled
// env=feat-a is all it takes for feat-a's traffic to find them, at every
// hop, with base as the fallback where the lane has none.
//
// A gateway, where traffic enters, puts each call into a lane by its
// "lane" cookie (a lanes.entry rule) and calls front; three HTTP services
// then call each other, front → order-api → user-api, each with a base
// instance and instances for some of three lanes:
//
//	          front   order-api   user-api
//	feat-a      ✓         ✓           ✓
//	feat-b                            ✓
//	feat-c                ✓
//
// One rule covers the whole fleet (defaults.lanes). The tour calls the
// gateway in each lane and prints the instance that served each hop; then a
// feat-b instance of order-api appears and feat-b's calls use it at once,
// with no rule edit.
//
//	go run ./examples/lanes
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// fleetRules gives every service lanes by its env label (base: env=base)
// and lets the gateway, where traffic enters, put calls into a lane by
// cookie.
const fleetRules = `apiVersion: lightmesh/v1
defaults:
  lanes: {label: env, base: {labels: {env: base}}}
services:
  gateway:
    lanes:
      label: env
      base: {labels: {env: base}}
      entry: [{cookie: lane}]
`

// lanesAt says which lanes have an instance of each service.
var lanesAt = map[string][]string{
	"front":     {"feat-a"},
	"order-api": {"feat-a", "feat-c"},
	"user-api":  {"feat-a", "feat-b"},
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run is the tour; it returns an error when a call did not land where
// the lanes say it must.
func run(ctx context.Context, out io.Writer) error {
	static := discovery.NewStatic(nil)
	// One mesh for the three services and one for the gateway, the edge:
	// its entry rules are those of its local service.
	backends, err := mesh.New(ctx, mesh.WithRules(rules.NewMemory([]byte(fleetRules))), mesh.WithDiscovery(static),
		mesh.WithServices("front", "order-api", "user-api"))
	if err != nil {
		return err
	}
	defer backends.Close()
	edge, err := mesh.New(ctx, mesh.WithRules(rules.NewMemory([]byte(fleetRules))), mesh.WithDiscovery(static),
		mesh.WithServices("front"), mesh.WithLocalService("gateway"))
	if err != nil {
		return err
	}
	defer edge.Close()

	// next is who each service calls.
	next := map[string]string{"gateway": "front", "front": "order-api", "order-api": "user-api"}
	lists := map[string][]discovery.Instance{}
	start := func(svc, env string) discovery.Instance {
		m := backends
		if svc == "gateway" {
			m = edge
		}
		client := &http.Client{Transport: m.Transport(nil)}
		name := svc + "/" + env
		srv := httptest.NewServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			answer := name
			if to := next[svc]; to != "" {
				req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://"+to+"/", nil)
				resp, err := client.Do(req)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadGateway)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				answer += " > " + string(body)
			}
			io.WriteString(w, answer)
		})))
		return discovery.Instance{Address: strings.TrimPrefix(srv.URL, "http://"), Labels: map[string]string{"env": env}}
	}
	for _, svc := range []string{"front", "order-api", "user-api"} {
		for _, env := range append([]string{"base"}, lanesAt[svc]...) {
			in := start(svc, env)
			lists[svc] = append(lists[svc], in)
		}
		static.Set(svc, lists[svc])
	}
	if err := waitFor(ctx, func() bool {
		return len(edge.Table().Instances("front", "")) == 2 && len(backends.Table().Instances("user-api", "")) == 3
	}); err != nil {
		return err
	}
	gateway := start("gateway", "base")

	// Calls from outside come to the gateway, which enters them into lanes.
	call := func(lane string) (string, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+gateway.Address+"/", nil)
		if lane != "" {
			req.AddCookie(&http.Cookie{Name: "lane", Value: lane})
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%s: %s", resp.Status, body)
		}
		return string(body), err
	}
	check := func(lane, want string) error {
		got, err := call(lane)
		if err != nil {
			return err
		}
		label := lane
		if label == "" {
			label = "(none)"
		}
		fmt.Fprintf(out, "  cookie lane=%-7s %s\n", label, got)
		if got != want {
			return fmt.Errorf("lane %s went %s, want %s", label, got, want)
		}
		return nil
	}

	fmt.Fprintln(out, "Each hop takes its lane's instance where there is one, base elsewhere; the lane travels on:")
	for _, tc := range [][2]string{
		{"", "gateway/base > front/base > order-api/base > user-api/base"},
		{"feat-a", "gateway/base > front/feat-a > order-api/feat-a > user-api/feat-a"},
		{"feat-b", "gateway/base > front/base > order-api/base > user-api/feat-b"},
		{"feat-c", "gateway/base > front/base > order-api/feat-c > user-api/base"},
	} {
		if err := check(tc[0], tc[1]); err != nil {
			return err
		}
	}

	fmt.Fprintln(out, "\nA feat-b instance of order-api is deployed (no rule changes):")
	lists["order-api"] = append(lists["order-api"], start("order-api", "feat-b"))
	static.Set("order-api", lists["order-api"])
	if err := waitFor(ctx, func() bool { return len(backends.Table().Instances("order-api", "")) == 4 }); err != nil {
		return err
	}
	if err := check("feat-b", "gateway/base > front/base > order-api/feat-b > user-api/feat-b"); err != nil {
		return err
	}

	fmt.Fprintln(out, "\nThe lanes each service has now (Status, also on the status page):")
	for _, s := range backends.Status().Services {
		if s.Lanes != nil && len(s.Lanes.Lanes) > 0 {
			var parts []string
			for _, l := range s.Lanes.Lanes {
				parts = append(parts, fmt.Sprintf("%s (%d)", l.Lane, l.Instances))
			}
			fmt.Fprintf(out, "  %-10s %s\n", s.Name, strings.Join(parts, ", "))
		}
	}
	e := backends.Explain(mesh.ExplainRequest{Service: "user-api", Path: "/", Header: http.Header{"X-Env": {"feat-c"}}})
	fmt.Fprintf(out, "\nexplain user-api with X-Env: feat-c → %s\n", e.Lane.Decision)
	return nil
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}
