// Command nacos shows lightmesh with Nacos as its control plane: two
// instances of a service register themselves in Nacos naming with labels
// as metadata (env=base, env=staging), a client routes to them through
// the mesh with rules read from a Nacos config item, and the rules are
// changed live: a valid change moves traffic, a broken one is rejected
// while the last good rules keep serving. Then the staging instance
// deregisters and its lane falls back to base. It exits by itself.
//
// It needs a Nacos 2.x server (NACOS_NAMESPACE, NACOS_USERNAME,
// NACOS_PASSWORD, NACOS_ACCESS_KEY and NACOS_SECRET_KEY are read too):
//
//	bash scripts/nacos.sh start
//	NACOS_SERVER_ADDR=127.0.0.1:8848 go run ./examples/nacos
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
	"strings"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/discovery/nacos"
	"github.com/lightmesh/lightmesh/mesh"
)

const (
	group   = "LIGHTMESH_EXAMPLE"
	dataID  = "lightmesh-example-rules.yaml"
	service = "lightmesh-example-user-api"
)

const laneRules = `apiVersion: lightmesh/v1
services:
  SERVICE:
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

const allToStaging = `apiVersion: lightmesh/v1
services:
  SERVICE:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - name: all-to-staging
        destinations: [{subset: staging}]
        fallback: base
`

// broken routes to a subset that does not exist.
const broken = `apiVersion: lightmesh/v1
services:
  SERVICE:
    subsets:
      base: {labels: {env: base}}
    routes:
      - destinations: [{subset: canary}]
`

func main() {
	cfg, err := nacos.ConfigFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "examples/nacos needs a Nacos 2.x server:", err)
		fmt.Fprintln(os.Stderr, "  bash scripts/nacos.sh start")
		fmt.Fprintln(os.Stderr, "  NACOS_SERVER_ADDR=127.0.0.1:8848 go run ./examples/nacos")
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		log.Fatal(err)
	}
}

func doc(tmpl string) string { return strings.ReplaceAll(tmpl, "SERVICE", service) }

func run(cfg nacos.Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	fmt.Println("Nacos:", cfg) // secrets never print

	// Two instances register themselves, labels as metadata.
	var regs []*nacos.Registration
	for _, s := range []struct{ name, env string }{{"base-1", "base"}, {"staging-1", "staging"}} {
		addr, stop, err := serve(s.name)
		if err != nil {
			return err
		}
		defer stop()
		reg, err := nacos.Register(cfg, service, group, discovery.Instance{Address: addr, Labels: map[string]string{"env": s.env}})
		if err != nil {
			return err
		}
		defer reg.Close()
		regs = append(regs, reg)
		fmt.Printf("registered %-9s env=%-7s at %s in %s@%s\n", s.name, s.env, addr, service, group)
	}

	if err := nacos.Publish(cfg, dataID, group, doc(laneRules)); err != nil {
		return err
	}
	src, err := nacos.NewRuleSource(cfg, dataID, group)
	if err != nil {
		return err
	}
	defer src.Close()
	disc, err := nacos.NewDiscovery(cfg, group)
	if err != nil {
		return err
	}
	defer disc.Close()
	events := make(chan mesh.RulesEvent, 16)
	m, err := mesh.New(ctx, mesh.WithRules(src), mesh.WithDiscovery(disc),
		mesh.WithOnRulesChange(func(ev mesh.RulesEvent) { events <- ev }))
	if err != nil {
		return err
	}
	defer m.Close() // runs before the sources close
	<-events
	waitInstances(ctx, m, 2)
	client := &http.Client{Transport: m.Transport(nil), Timeout: 2 * time.Second}

	fmt.Println("\n1. rules from", m.Status().Rules.Source)
	report(ctx, client, "no header      ", "")
	report(ctx, client, "X-Env: staging ", "staging")

	fmt.Println("\n2. publish <all traffic to staging>  (the first change after start can take up to 5 s:")
	fmt.Println("   the Nacos SDK registers listeners on a 5 s timer; later changes arrive in tens of ms)")
	if err := publish(ctx, cfg, doc(allToStaging), events); err != nil {
		return err
	}
	report(ctx, client, "no header      ", "")

	fmt.Println("\n3. publish <a broken document>")
	err = publish(ctx, cfg, doc(broken), events)
	if err == nil {
		return errors.New("the broken document was applied")
	}
	fmt.Println("   rejected:", err)
	report(ctx, client, "no header      ", "")

	fmt.Println("\n4. staging-1 deregisters; its traffic falls back to base")
	if err := regs[1].Close(); err != nil {
		return err
	}
	waitInstances(ctx, m, 1)
	report(ctx, client, "no header      ", "")

	fmt.Println("\n5. publish the first rules again")
	return publish(ctx, cfg, doc(laneRules), events)
}

// publish writes doc to the config item and waits for the mesh to apply
// or reject it, returning the rejection.
func publish(ctx context.Context, cfg nacos.Config, doc string, events <-chan mesh.RulesEvent) error {
	if err := nacos.Publish(cfg, dataID, group, doc); err != nil {
		return err
	}
	start := time.Now()
	select {
	case ev := <-events:
		if ev.Err == nil {
			fmt.Printf("   applied version %s after %v\n", ev.Version, time.Since(start).Round(time.Millisecond))
		}
		return ev.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func waitInstances(ctx context.Context, m *mesh.Mesh, n int) {
	for len(m.Table().Instances(service, "")) != n && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
}

func report(ctx context.Context, client *http.Client, label, env string) {
	counts := map[string]int{}
	for range 20 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+service+"/", nil)
		if env != "" {
			req.Header.Set("X-Env", env)
		}
		resp, err := client.Do(req)
		if err != nil {
			counts["error"]++
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		counts[string(body)]++
	}
	fmt.Printf("   %s base-1:%-3d staging-1:%-3d errors:%d\n", label, counts["base-1"], counts["staging-1"], counts["error"])
}

// serve runs a backend answering with its name on a free loopback port.
func serve(name string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, name)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }, nil
}
