// Quickstart runs lightmesh on one machine with nothing installed: four
// in-process backends of a service "user-api" (two labelled env=base, two
// env=staging), a front service wrapped with the mesh Handler, and a
// client using the mesh Transport. It routes by X-Env, splits 90/10,
// rewrites the rule file to move traffic, then writes a broken rule and
// shows it rejected while traffic keeps flowing. It exits by itself.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

const byHeader = `apiVersion: lightmesh/v1
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

const canary = `apiVersion: lightmesh/v1
services:
  user-api:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - name: staging-lane
        match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
      - name: canary
        destinations: [{subset: base, weight: 90}, {subset: staging, weight: 10}]
`

const moved = `apiVersion: lightmesh/v1
services:
  user-api:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - name: all-to-staging
        destinations: [{subset: staging}]
`

// broken has a negative weight and a reference to a subset that does not
// exist: the mesh must reject it and keep the previous rules.
const broken = `apiVersion: lightmesh/v1
services:
  user-api:
    subsets:
      base: {labels: {env: base}}
    routes:
      - destinations: [{subset: base, weight: -5}, {subset: canary, weight: 10}]
`

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var instances []discovery.Instance
	for _, b := range []struct{ name, env string }{{"base-1", "base"}, {"base-2", "base"}, {"staging-1", "staging"}, {"staging-2", "staging"}} {
		addr, stop, err := serve(backend(b.name))
		if err != nil {
			return err
		}
		defer stop()
		instances = append(instances, discovery.Instance{Address: addr, Labels: map[string]string{"env": b.env}})
	}

	dir, err := os.MkdirTemp("", "lightmesh-quickstart")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ruleFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(ruleFile, []byte(byHeader), 0o644); err != nil {
		return err
	}

	events := make(chan mesh.RulesEvent, 8)
	m, err := mesh.New(ctx,
		mesh.WithRules(rules.NewFile(ruleFile, 50*time.Millisecond)),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"user-api": instances})),
		mesh.WithOnRulesChange(func(ev mesh.RulesEvent) { events <- ev }),
	)
	if err != nil {
		return err
	}
	defer m.Close()
	<-events // the first document

	client := &http.Client{Transport: m.Transport(nil), Timeout: 2 * time.Second}

	// A front service: the mesh Handler puts the caller's lane in the
	// request context, and the call it makes to user-api with that context
	// stays in the lane.
	front, stopFront, err := serve(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := get(r.Context(), client, "http://user-api/whoami", "")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		io.WriteString(w, body)
	})))
	if err != nil {
		return err
	}
	defer stopFront()

	fmt.Println("lightmesh quickstart: service user-api = base-1, base-2 (env=base), staging-1, staging-2 (env=staging)")
	fmt.Println()
	fmt.Println("1. route by header (rules v1)")
	report(ctx, client, "   no header           ", "http://user-api/whoami", "", 20)
	report(ctx, client, "   X-Env: staging      ", "http://user-api/whoami", "staging", 20)
	report(ctx, client, "   via front, staging  ", "http://"+front+"/", "staging", 20)

	fmt.Println("2. canary 90/10 (rule file rewritten)")
	if err := publish(ctx, ruleFile, canary, events); err != nil {
		return err
	}
	report(ctx, client, "   no header           ", "http://user-api/whoami", "", 100)

	fmt.Println("3. move all traffic to staging (rule file rewritten)")
	if err := publish(ctx, ruleFile, moved, events); err != nil {
		return err
	}
	report(ctx, client, "   no header           ", "http://user-api/whoami", "", 20)

	fmt.Println("4. a broken rule file is rejected; the step-3 rules keep serving")
	if err := publish(ctx, ruleFile, broken, events); err != nil {
		fmt.Println("   rejected:", indent(err.Error()))
	} else {
		return errors.New("the broken document was applied")
	}
	report(ctx, client, "   no header           ", "http://user-api/whoami", "", 20)
	fmt.Println()
	fmt.Println("active rules:", m.Status().Rules.Version, "from", m.Status().Rules.Source)
	return nil
}

// publish writes doc to the rule file and waits for the mesh to apply or
// reject it, returning the rejection.
func publish(ctx context.Context, path, doc string, events <-chan mesh.RulesEvent) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	select {
	case ev := <-events:
		return ev.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func report(ctx context.Context, client *http.Client, label, url, env string, n int) {
	counts := map[string]int{}
	for range n {
		body, err := get(ctx, client, url, env)
		if err != nil {
			counts["error"]++
			continue
		}
		counts[strings.TrimSpace(body)]++
	}
	fmt.Printf("%s base-1:%-3d base-2:%-3d staging-1:%-3d staging-2:%-3d errors:%d\n", label,
		counts["base-1"], counts["base-2"], counts["staging-1"], counts["staging-2"], counts["error"])
}

func get(ctx context.Context, client *http.Client, url, env string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	if env != "" {
		req.Header.Set("X-Env", env)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	return string(body), err
}

func backend(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, name)
	})
}

// serve runs h on a free loopback port and returns its address and a stop
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

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n             ") }
