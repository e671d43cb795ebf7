// Quickstart is the tour of lightmesh on one machine with nothing
// installed. Three services run in this process, each on its own loopback
// port: front and order-api (wrapped with the mesh Handler, calling on
// through the mesh Transport) and user-api (two instances labelled
// env=base, two env=staging). The tour routes by header, follows a lane
// across two hops, splits 90/10, retries around a failing instance while
// its breaker ejects it and lets it back once it recovers, applies a rate
// limit, moves traffic and rejects a broken rule file, then prints the
// metrics and the status page. Each step is a rewrite of one rule file
// that the mesh watches.
//
//	go run ./examples/quickstart          # the tour, then exit (a few seconds)
//	go run ./examples/quickstart -serve   # then keep serving the status page and /metrics
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// subsets is the part of every document that names user-api's subsets.
const subsets = `    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
`

// doc returns a rule document: order-api with no rules (every instance),
// user-api with its subsets, then the given protection and routes.
func doc(userAPI string) string {
	return "apiVersion: lightmesh/v1\nservices:\n  order-api: {}\n  user-api:\n" + subsets + userAPI
}

var (
	byHeader = doc(`    routes:
      - name: staging-lane
        match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
        fallback: base
      - name: default
        destinations: [{subset: base}]
`)
	canary = doc(`    routes:
      - name: staging-lane
        match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
      - name: canary
        destinations: [{subset: base, weight: 90}, {subset: staging, weight: 10}]
`)
	// protected retries a failed call once on another instance and keeps a
	// breaker per instance: one that fails half of at least 4 calls is
	// ejected for a second (longer if it trips again).
	protected = doc(`    retry: {attempts: 1}
    outlierDetection: {minRequests: 4, failureRatio: 0.5, openBase: 1s}
    routes:
      - destinations: [{subset: base}]
`)
	limited = doc(`    rateLimit: {rps: 2, burst: 5}
    routes:
      - destinations: [{subset: base}]
`)
	moved = doc(`    routes:
      - name: all-to-staging
        destinations: [{subset: staging}]
`)
	// broken has a negative weight and a reference to a subset that does
	// not exist: the mesh must reject it and keep the previous rules.
	broken = doc(`    routes:
      - destinations: [{subset: base, weight: -5}, {subset: canary, weight: 10}]
`)
)

func main() {
	serveFlag := flag.Bool("serve", false, "after the tour, keep serving the status page and /metrics (with a little traffic) until interrupted")
	addr := flag.String("addr", "127.0.0.1:9901", "the admin address of -serve")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *serveFlag, *addr); err != nil {
		log.Fatal(err)
	}
}

// backend is one instance of user-api: it answers with its name, or 503
// while failing is set.
type backend struct {
	name    string
	failing atomic.Bool
	served  atomic.Int64 // requests answered (503s included)
}

func (b *backend) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	b.served.Add(1)
	if b.failing.Load() {
		http.Error(w, b.name+" is failing", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, b.name)
}

func run(ctx context.Context, serveAfter bool, adminAddr string) error {
	tour, cancel := context.WithTimeout(ctx, 25*time.Second)
	defer cancel()

	backends := map[string]*backend{}
	var userAPI []discovery.Instance
	for _, b := range []struct{ name, env string }{{"base-1", "base"}, {"base-2", "base"}, {"staging-1", "staging"}, {"staging-2", "staging"}} {
		be := &backend{name: b.name}
		addr, stop, err := serve("127.0.0.1:0", be)
		if err != nil {
			return err
		}
		defer stop()
		backends[b.name] = be
		userAPI = append(userAPI, discovery.Instance{Address: addr, Labels: map[string]string{"env": b.env}})
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

	// One mesh serves the three services here; in production each service
	// process has its own, reading the same rules.
	reg := prometheus.NewRegistry()
	events := make(chan mesh.RulesEvent, 8)
	instances := discovery.NewStatic(map[string][]discovery.Instance{"user-api": userAPI})
	m, err := mesh.New(tour,
		mesh.WithRules(rules.NewFile(ruleFile, 50*time.Millisecond)),
		mesh.WithDiscovery(instances),
		mesh.WithRegisterer(reg),
		mesh.WithOnRulesChange(func(ev mesh.RulesEvent) { events <- ev }),
		// The tour prints what happens itself, so the mesh's own log shows
		// warnings and errors only (step 7's rejection among them). Without
		// WithLogger the mesh logs through slog.Default(), info included.
		mesh.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))),
	)
	if err != nil {
		return err
	}
	defer m.Close()
	<-events // the first document

	client := &http.Client{Transport: m.Transport(nil), Timeout: 2 * time.Second}

	// order-api and front: the mesh Handler puts the caller's lane in the
	// request context, and the call each makes with that context stays in
	// the lane: neither copies a header.
	hop := func(name, next string) http.Handler {
		return m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := get(r.Context(), client, next, "")
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			fmt.Fprintf(w, "%s → %s", name, body)
		}))
	}
	orderAddr, stopOrder, err := serve("127.0.0.1:0", hop("order-api", "http://user-api/whoami"))
	if err != nil {
		return err
	}
	defer stopOrder()
	instances.Set("order-api", []discovery.Instance{{Address: orderAddr}})
	// Discovery reports it in the background: wait until the mesh knows
	// it, as a real deployment waits for registration.
	for len(m.Table().Instances("order-api", "")) == 0 {
		select {
		case <-time.After(5 * time.Millisecond):
		case <-tour.Done():
			return fmt.Errorf("order-api's instance not discovered: %w", tour.Err())
		}
	}
	front, stopFront, err := serve("127.0.0.1:0", hop("front", "http://order-api/"))
	if err != nil {
		return err
	}
	defer stopFront()

	admin := http.NewServeMux()
	admin.Handle("/lightmesh/status", m.StatusHandler())
	admin.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	adminListen := "127.0.0.1:0"
	if serveAfter {
		adminListen = adminAddr
	}
	adminAddr, stopAdmin, err := serve(adminListen, admin)
	if err != nil {
		return err
	}
	defer stopAdmin()

	fmt.Println("lightmesh quickstart: user-api = base-1, base-2 (env=base), staging-1, staging-2 (env=staging)")
	fmt.Println()
	fmt.Println("1. route by header")
	report(tour, client, "   no header        ", "", 20)
	report(tour, client, "   X-Env: staging   ", "staging", 20)

	fmt.Println("2. the lane crosses two hops: front → order-api → user-api, nobody copies X-Env")
	for _, env := range []string{"staging", ""} {
		body, err := get(tour, http.DefaultClient, "http://"+front+"/", env)
		if err != nil {
			return err
		}
		fmt.Printf("   %-17s %s", label(env), body)
	}
	fmt.Println("   a lane per feature branch, found by instance label with no rule edit: go run ./examples/lanes")

	fmt.Println("3. canary 90/10 (rule file rewritten)")
	if err := publish(tour, ruleFile, canary, events); err != nil {
		return err
	}
	report(tour, client, "   no header        ", "", 100)

	fmt.Println("4. base-2 starts failing: each failed try is retried on base-1, and base-2's breaker ejects it")
	if err := publish(tour, ruleFile, protected, events); err != nil {
		return err
	}
	backends["base-2"].failing.Store(true)
	before := backends["base-2"].served.Load()
	report(tour, client, "   40 calls         ", "", 40)
	fmt.Printf("   base-2 answered %d tries with 503 before its breaker opened; the callers saw none of them\n",
		backends["base-2"].served.Load()-before)
	backends["base-2"].failing.Store(false)
	time.Sleep(1200 * time.Millisecond) // the open period, 1s
	fmt.Println("   base-2 recovers; after the open period its breaker lets probes through and closes")
	report(tour, client, "   40 calls         ", "", 40)

	fmt.Println("5. rate limit: 2 calls/s, bursts of 5, 20 calls at once")
	if err := publish(tour, ruleFile, limited, events); err != nil {
		return err
	}
	ok, refused := 0, 0
	for range 20 {
		_, err := get(tour, client, "http://user-api/whoami", "")
		switch {
		case err == nil:
			ok++
		case errors.Is(err, mesh.ErrRateLimited):
			refused++
		default:
			return err
		}
	}
	fmt.Printf("   sent: %d, refused with mesh.ErrRateLimited before sending: %d\n", ok, refused)

	fmt.Println("6. move all traffic to staging (rule file rewritten)")
	if err := publish(tour, ruleFile, moved, events); err != nil {
		return err
	}
	report(tour, client, "   no header        ", "", 20)

	fmt.Println("7. a broken rule file is rejected; the step-6 rules keep serving")
	if err := publish(tour, ruleFile, broken, events); err != nil {
		fmt.Println("   rejected:", indent(err.Error()))
	} else {
		return errors.New("the broken document was applied")
	}
	report(tour, client, "   no header        ", "", 20)

	fmt.Println("8. metrics (GET /metrics, a few of the series)")
	if err := printMetrics(tour, "http://"+adminAddr+"/metrics"); err != nil {
		return err
	}
	fmt.Println("9. status page (GET /lightmesh/status?format=json, summarised)")
	if err := printStatus(tour, "http://"+adminAddr+"/lightmesh/status?format=json"); err != nil {
		return err
	}

	if !serveAfter {
		fmt.Println()
		fmt.Println("run with -serve to keep the status page and /metrics open in a browser")
		return nil
	}
	fmt.Println()
	fmt.Printf("serving: http://%s/lightmesh/status and http://%s/metrics (a call every 100ms through front); Ctrl-C to stop\n", adminAddr, adminAddr)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			env := ""
			if i%4 == 0 {
				env = "staging"
			}
			get(ctx, http.DefaultClient, "http://"+front+"/", env)
		}
	}
}

func label(env string) string {
	if env == "" {
		return "no header"
	}
	return "X-Env: " + env
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

// report makes n calls to user-api and prints where they went.
func report(ctx context.Context, client *http.Client, label, env string, n int) {
	counts := map[string]int{}
	for range n {
		body, err := get(ctx, client, "http://user-api/whoami", env)
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

// printMetrics prints the retry, breaker and rejection series and
// user-api's request counts by subset and code.
func printMetrics(ctx context.Context, url string) error {
	body, err := get(ctx, http.DefaultClient, url, "")
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "lightmesh_retries_total{"),
			strings.HasPrefix(line, "lightmesh_breaker_transitions_total{"),
			strings.HasPrefix(line, "lightmesh_rejections_total{"),
			strings.HasPrefix(line, "lightmesh_requests_total{") && strings.Contains(line, `destination_service="user-api"`):
			fmt.Println("  ", line)
		}
	}
	return sc.Err()
}

// printStatus prints the rules in force, the last rejection and the
// breakers from the status page's JSON.
func printStatus(ctx context.Context, url string) error {
	body, err := get(ctx, http.DefaultClient, url, "")
	if err != nil {
		return err
	}
	var st mesh.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		return err
	}
	fmt.Printf("   rules %s from %s\n", st.Rules.Version, st.Rules.Source)
	if r := st.LastRejection; r != nil {
		fmt.Printf("   last rejection: %s: %s\n", r.Version, strings.SplitN(r.Error, "\n", 2)[0])
	}
	for _, s := range st.Services {
		var insts []string
		for _, in := range s.Instances {
			var labels []string
			for k, v := range in.Labels {
				labels = append(labels, k+"="+v)
			}
			slices.Sort(labels)
			insts = append(insts, fmt.Sprintf("%s (%s, %s)", in.Address, strings.Join(append(labels, "weight "+strconv.Itoa(in.Weight)), " "), in.State))
		}
		fmt.Printf("   service %-9s instances: %s\n", s.Name, strings.Join(insts, ", "))
	}
	for _, b := range st.Breakers {
		fmt.Printf("   breaker %s %s: %s\n", b.Service, b.Instance, b.State)
	}
	return nil
}

// serve runs h on addr and returns its address and a stop function.
func serve(addr string, h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }, nil
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n             ") }
