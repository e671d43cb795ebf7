package mesh_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
	"github.com/lightmesh/lightmesh/trace"
)

// exampleRules sends X-Env: staging to the staging subset of user-api and
// everything else to base.
const exampleRules = `apiVersion: lightmesh/v1
services:
  user-api:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
      - destinations: [{subset: base}]
`

// exampleBackends starts one base and one staging instance of user-api that
// answer with their name, and returns them as instances.
func exampleBackends() ([]discovery.Instance, func()) {
	var list []discovery.Instance
	var servers []*httptest.Server
	for _, env := range []string{"base", "staging"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s instance", env)
		}))
		servers = append(servers, srv)
		list = append(list, discovery.Instance{Address: strings.TrimPrefix(srv.URL, "http://"), Labels: map[string]string{"env": env}})
	}
	return list, func() {
		for _, s := range servers {
			s.Close()
		}
	}
}

// exampleGet sends a GET to url with the header X-Env: env (none when env
// is empty) and returns the body.
func exampleGet(ctx context.Context, client *http.Client, url, env string) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if env != "" {
		req.Header.Set("X-Env", env)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// A mesh with rules held in memory (rules.Memory.Set publishes new ones)
// and a static instance list.
func ExampleNew() {
	instances, stop := exampleBackends()
	defer stop()
	m, err := mesh.New(context.Background(),
		mesh.WithRules(rules.NewMemory([]byte(exampleRules))),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"user-api": instances})),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	fmt.Println("rules from", m.Status().Rules.Source)
	// Output: rules from memory
}

// A mesh whose rules live in a file, watched for changes (here polled
// every second; an editor's rename-replace is followed).
func ExampleNew_file() {
	dir, _ := os.MkdirTemp("", "lightmesh-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "rules.yaml")
	os.WriteFile(path, []byte(exampleRules), 0o644)

	m, err := mesh.New(context.Background(), mesh.WithRules(rules.NewFile(path, time.Second)))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	fmt.Println(strings.HasPrefix(m.Status().Rules.Version, "sha256:"))
	// Output: true
}

// Transport sends requests for a service's logical name to one of its
// instances, as the rules say.
func ExampleMesh_Transport() {
	instances, stop := exampleBackends()
	defer stop()
	m, err := mesh.New(context.Background(),
		mesh.WithRules(rules.NewMemory([]byte(exampleRules))),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"user-api": instances})),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	client := &http.Client{Transport: m.Transport(nil)}
	fmt.Println(exampleGet(context.Background(), client, "http://user-api/users/42", ""))
	fmt.Println(exampleGet(context.Background(), client, "http://user-api/users/42", "staging"))
	// Output:
	// base instance
	// staging instance
}

// Handler puts the caller's lane (and trace context) in each request's
// context; calls made with that context stay in the lane.
func ExampleMesh_Handler() {
	instances, stop := exampleBackends()
	defer stop()
	m, err := mesh.New(context.Background(),
		mesh.WithRules(rules.NewMemory([]byte(exampleRules))),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"user-api": instances})),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	client := &http.Client{Transport: m.Transport(nil)}

	front := httptest.NewServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lane, _ := trace.LaneFromContext(r.Context()).Get("x-env")
		// No header copied: the lane travels in r.Context().
		fmt.Fprintf(w, "lane %q, user-api answered: %s", lane, exampleGet(r.Context(), client, "http://user-api/", ""))
	})))
	defer front.Close()
	fmt.Println(exampleGet(context.Background(), http.DefaultClient, front.URL, "staging"))
	// Output: lane "staging", user-api answered: staging instance
}

// StatusHandler serves what the process runs — rules, last rejection,
// instances, breakers — as JSON or a small HTML page.
func ExampleMesh_StatusHandler() {
	instances, stop := exampleBackends()
	defer stop()
	src := rules.NewMemory([]byte(exampleRules))
	events := make(chan mesh.RulesEvent, 1)
	m, err := mesh.New(context.Background(),
		mesh.WithRules(src),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"user-api": instances})),
		mesh.WithOnRulesChange(func(ev mesh.RulesEvent) {
			if ev.Err != nil {
				events <- ev
			}
		}),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	src.Set([]byte(strings.Replace(exampleRules, "{subset: base}", "{subset: bsae}", 1))) // a typo: rejected
	<-events

	admin := httptest.NewServer(m.StatusHandler())
	defer admin.Close()
	var st mesh.Status
	json.Unmarshal([]byte(exampleGet(context.Background(), http.DefaultClient, admin.URL+"?format=json", "")), &st)
	fmt.Println("rules from", st.Rules.Source)
	fmt.Println("rejected:", strings.SplitN(st.LastRejection.Error, "\n", 2)[0])
	for _, s := range st.Services {
		fmt.Println(s.Name, "has", len(s.Instances), "instances")
	}
	// Output:
	// rules from memory
	// rejected: router: invalid document: services.user-api.routes[1].destinations[0].subset: unknown subset "bsae"; did you mean "base"? (line 10, column 25)
	// user-api has 2 instances
}

// A service facing the public internet ignores the lane its callers send
// (trace.WithoutInboundLanes): a stranger's X-Env: staging, as a header or
// as lane baggage, does not take the service's own calls to staging. Code
// may still put a request it trusts in a lane with trace.ContextWithLane.
func ExampleWithTrace_edge() {
	instances, stop := exampleBackends()
	defer stop()
	m, err := mesh.New(context.Background(),
		mesh.WithRules(rules.NewMemory([]byte(exampleRules))),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"user-api": instances})),
		mesh.WithTrace(trace.WithoutInboundLanes()),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	client := &http.Client{Transport: m.Transport(nil)}
	edge := httptest.NewServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, exampleGet(r.Context(), client, "http://user-api/", ""))
	})))
	defer edge.Close()

	fmt.Println(exampleGet(context.Background(), http.DefaultClient, edge.URL, "staging"))
	// Output: base instance
}
