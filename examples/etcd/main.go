// Command etcd shows lightmesh with etcd as its control plane: two
// instances of a service "user-api" register themselves in etcd with
// labels (env=base, env=staging), a client routes to them through the
// mesh with rules read from an etcd key, and the rules are changed live:
// a valid change moves traffic at once, a broken one is rejected while
// the last good rules keep serving. Then the staging instance leaves and
// its lane falls back to base. It exits by itself.
//
// With ETCD_ENDPOINTS unset it runs an embedded etcd server in a
// temporary directory, so it needs nothing installed:
//
//	go run ./examples/etcd
//	ETCD_ENDPOINTS=127.0.0.1:2379 go run ./examples/etcd
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/discovery/etcd"
	"github.com/lightmesh/lightmesh/mesh"
)

const (
	rulesKey = "/lightmesh-example/rules"
	prefix   = "/lightmesh-example/services"
)

const laneRules = `apiVersion: lightmesh/v1
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

const allToStaging = `apiVersion: lightmesh/v1
services:
  user-api:
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
  user-api:
    subsets:
      base: {labels: {env: base}}
    routes:
      - destinations: [{subset: canary}]
`

func main() {
	if err := run(os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run is the example, printing what it shows to out.
func run(out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	endpoints := os.Getenv("ETCD_ENDPOINTS")
	if endpoints == "" {
		addr, stop, err := startEmbedded()
		if err != nil {
			return err
		}
		defer stop()
		endpoints = addr
		fmt.Fprintln(out, "ETCD_ENDPOINTS not set: started an embedded etcd at", addr)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(endpoints, ","), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	defer cli.Close()
	defer cli.Delete(context.Background(), rulesKey)

	// Two instances of user-api register themselves, with labels.
	var regs []*etcd.Registration
	for _, s := range []struct{ name, env string }{{"base-1", "base"}, {"staging-1", "staging"}} {
		addr, stop, err := serve(s.name)
		if err != nil {
			return err
		}
		defer stop()
		reg, err := etcd.Register(ctx, cli, prefix, "user-api", s.name,
			discovery.Instance{Address: addr, Labels: map[string]string{"env": s.env}}, 10*time.Second)
		if err != nil {
			return err
		}
		defer reg.Close(context.Background())
		regs = append(regs, reg)
		fmt.Fprintf(out, "registered %-9s env=%-7s at %s as %s\n", s.name, s.env, addr, reg.Key())
	}

	if _, err := cli.Put(ctx, rulesKey, laneRules); err != nil {
		return fmt.Errorf("put rules: %w", err)
	}
	events := make(chan mesh.RulesEvent, 16)
	m, err := mesh.New(ctx,
		mesh.WithRules(etcd.NewRuleSource(cli, rulesKey)),
		mesh.WithDiscovery(etcd.NewDiscovery(cli, prefix)),
		mesh.WithOnRulesChange(func(ev mesh.RulesEvent) { events <- ev }),
	)
	if err != nil {
		return err
	}
	defer m.Close()
	<-events
	waitInstances(ctx, m, 2)
	client := &http.Client{Transport: m.Transport(nil), Timeout: 2 * time.Second}

	fmt.Fprintln(out, "\n1. rules from", m.Status().Rules.Source, "version", m.Status().Rules.Version)
	report(ctx, out, client, "no header      ", "")
	report(ctx, out, client, "X-Env: staging ", "staging")

	fmt.Fprintln(out, "\n2. etcdctl put", rulesKey, "<all traffic to staging>")
	if err := publish(ctx, out, cli, allToStaging, events); err != nil {
		return err
	}
	report(ctx, out, client, "no header      ", "")

	fmt.Fprintln(out, "\n3. etcdctl put", rulesKey, "<a broken document>")
	err = publish(ctx, out, cli, broken, events)
	if err == nil {
		return errors.New("the broken document was applied")
	}
	fmt.Fprintln(out, "   rejected:", err)
	if r := m.Status().LastRejection; r != nil {
		fmt.Fprintf(out, "   status: last rejection is revision %s, rejected at %s: %s\n", r.Version, r.At.Format(time.TimeOnly),
			strings.SplitN(r.Error, "\n", 2)[0])
		fmt.Fprintln(out, "   status: rules in force are still revision", m.Status().Rules.Version)
	}
	report(ctx, out, client, "no header      ", "")

	fmt.Fprintln(out, "\n4. staging-1 deregisters; its traffic falls back to base")
	if err := regs[1].Close(ctx); err != nil {
		return err
	}
	waitInstances(ctx, m, 1)
	report(ctx, out, client, "no header      ", "")
	return nil
}

// publish puts doc at the rule key and waits for the mesh to apply or
// reject it, returning the rejection.
func publish(ctx context.Context, out io.Writer, cli *clientv3.Client, doc string, events <-chan mesh.RulesEvent) error {
	start := time.Now() // before the put: the time to apply includes etcd's write and the watch
	resp, err := cli.Put(ctx, rulesKey, doc)
	if err != nil {
		return fmt.Errorf("put rules: %w", err)
	}
	want := fmt.Sprint(resp.Header.Revision)
	for {
		select {
		case ev := <-events:
			if ev.Version != want {
				continue
			}
			if ev.Err == nil {
				// ev.At is when the mesh applied it, not when this loop
				// read the event.
				fmt.Fprintf(out, "   applied revision %s %v after the put began\n", ev.Version, ev.At.Sub(start).Round(10*time.Microsecond))
			}
			return ev.Err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func waitInstances(ctx context.Context, m *mesh.Mesh, n int) {
	for len(m.Table().Instances("user-api", "")) != n && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
}

func report(ctx context.Context, out io.Writer, client *http.Client, label, env string) {
	counts := map[string]int{}
	for range 20 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://user-api/", nil)
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
	fmt.Fprintf(out, "   %s base-1:%-3d staging-1:%-3d errors:%d\n", label, counts["base-1"], counts["staging-1"], counts["error"])
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

// startEmbedded runs a one-member etcd in a temporary directory on free
// loopback ports.
func startEmbedded() (string, func(), error) {
	dir, err := os.MkdirTemp("", "lightmesh-example-etcd")
	if err != nil {
		return "", nil, err
	}
	ports := make([]url.URL, 2)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			os.RemoveAll(dir)
			return "", nil, err
		}
		ports[i] = url.URL{Scheme: "http", Host: ln.Addr().String()}
		ln.Close()
	}
	cfg := embed.NewConfig()
	cfg.Name = "lightmesh-example"
	cfg.Dir = dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = ports[:1], ports[:1]
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = ports[1:], ports[1:]
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("embedded etcd: %w", err)
	}
	stop := func() { e.Close(); os.RemoveAll(dir) }
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		stop()
		return "", nil, errors.New("embedded etcd did not start within 30s")
	}
	return ports[0].Host, stop, nil
}
