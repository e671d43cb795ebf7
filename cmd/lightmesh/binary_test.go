package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery/etcd/etcdtest"
	"github.com/lightmesh/lightmesh/router"
)

// builtBinary is the lightmesh command built once for the tests that run
// it as an operator does.
var builtBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lightmesh-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	builtBinary = filepath.Join(dir, "lightmesh")
	if out, err := exec.Command("go", "build", "-o", builtBinary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binary runs the built lightmesh command with args and env (on top of
// PATH and HOME only), and returns its exit code and outputs.
func binary(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(builtBinary, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("lightmesh %v: %v", args, err)
	}
	return code, out.String(), errb.String()
}

// nacosLocation returns a fresh Nacos location of the real server at
// $LIGHTMESH_NACOS_ADDR with the credentials from the environment, or
// skips (fails when LIGHTMESH_REQUIRE_NACOS=1) without one.
func nacosLocation(t *testing.T, name string) (string, map[string]string) {
	t.Helper()
	addr := os.Getenv("LIGHTMESH_NACOS_ADDR")
	if addr == "" {
		if os.Getenv("LIGHTMESH_REQUIRE_NACOS") == "1" {
			t.Fatal("LIGHTMESH_REQUIRE_NACOS=1 but LIGHTMESH_NACOS_ADDR is not set")
		}
		t.Skip("LIGHTMESH_NACOS_ADDR not set (bash scripts/nacos.sh start)")
	}
	env := map[string]string{}
	if u := os.Getenv("LIGHTMESH_NACOS_USERNAME"); u != "" {
		env["NACOS_USERNAME"], env["NACOS_PASSWORD"] = u, os.Getenv("LIGHTMESH_NACOS_PASSWORD")
	}
	group := fmt.Sprintf("LIGHTMESH_CLI_%d", time.Now().UnixNano())
	return "nacos://" + addr + "/" + group + "/" + name, env
}

// writeFile writes data to a file in a test directory and returns its
// path.
func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const casV1 = `apiVersion: lightmesh/v1
services:
  user-api:
    timeout: 2s
    retry: {attempts: 2}
`

// pushNeverLosesAnEdit: get prints the version it read; a push of that
// file after a colleague published is refused, shows what the push would
// change in the colleague's document and publishes nothing; --force
// publishes; a file never read from the location does not overwrite it.
func pushNeverLosesAnEdit(t *testing.T, location string, env map[string]string) {
	run := func(want int, args ...string) (string, string) {
		t.Helper()
		code, out, errs := binary(t, env, args...)
		if code != want {
			t.Fatalf("lightmesh %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, errs)
		}
		return out, errs
	}
	v1 := writeFile(t, "v1.yaml", casV1)
	out, _ := run(0, "push", "-f", v1, location)
	if !strings.Contains(out, "published "+v1+" to "+location+" (version ") {
		t.Errorf("push printed %q", out)
	}

	// Alice reads it, with its version, in YAML and JSON.
	alice, _ := run(0, "get", location)
	if !strings.HasPrefix(alice, "# lightmesh-version: ") || !strings.Contains(alice, casV1) {
		t.Fatalf("get printed:\n%s", alice)
	}
	js, _ := run(0, "get", "-o", "json", location)
	var got fetched
	if err := json.Unmarshal([]byte(js), &got); err != nil || got.Document != casV1 || got.Version == "" || !strings.Contains(alice, "# lightmesh-version: "+got.Version+" ") {
		t.Errorf("get -o json: %v %+v, and the text version line:\n%s", err, got, alice)
	}
	aliceFile := writeFile(t, "alice.yaml", strings.Replace(alice, "attempts: 2", "attempts: 3", 1))

	// Bob reads it too, changes the timeout and publishes first.
	bob, _ := run(0, "get", location)
	bobFile := writeFile(t, "bob.yaml", strings.Replace(bob, "timeout: 2s", "timeout: 5s", 1))
	run(0, "push", "-f", bobFile, location)

	// Alice's push would erase Bob's edit: refused, with the diff.
	_, errs := run(1, "push", "-f", aliceFile, location)
	for _, want := range []string{"changed since it was read", "~ services.user-api.timeout: \"5s\" → \"2s\"", "~ services.user-api.retry.attempts: 2 → 3", "Nothing was published"} {
		if !strings.Contains(errs, want) {
			t.Errorf("conflicting push: stderr lacks %q:\n%s", want, errs)
		}
	}
	if now, _ := run(0, "get", location); !strings.Contains(now, "timeout: 5s") || strings.Contains(now, "attempts: 3") {
		t.Fatalf("after a refused push the location holds:\n%s", now)
	}

	// A file never read from the location does not replace what is there.
	_, errs = run(1, "push", "-f", v1, location)
	if !strings.Contains(errs, "was not read from") || !strings.Contains(errs, "push --force") {
		t.Errorf("push of a file not read from the location: %s", errs)
	}

	// A file read from another location (staging) does not replace what
	// is here either: its version is another store's.
	elsewhere := writeFile(t, "elsewhere.yaml", strings.Replace(alice, location, location+"-staging", 1))
	_, errs = run(1, "push", "-f", elsewhere, location)
	if !strings.Contains(errs, "was read from "+location+"-staging, not "+location) || !strings.Contains(errs, "was not read from") {
		t.Errorf("push of a file read from another location: %s", errs)
	}

	// --force replaces it. (Nacos serves reads from a cache refreshed
	// just after a write: read until it shows, for a bounded time.)
	run(0, "push", "--force", "-f", aliceFile, location)
	var now string
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		now, _ = run(0, "get", location)
		if strings.Contains(now, "attempts: 3") || time.Now().After(deadline) {
			break
		}
	}
	if !strings.Contains(now, "timeout: 2s") || !strings.Contains(now, "attempts: 3") || strings.Count(now, "# lightmesh-version") != 1 {
		t.Fatalf("after push --force the location holds:\n%s", now)
	}
}

func TestPushNeverLosesAnEditEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	pushNeverLosesAnEdit(t, "etcd://"+srv.Endpoint()+"/lightmesh/rules", nil)
}

func TestPushNeverLosesAnEditNacos(t *testing.T) {
	location, env := nacosLocation(t, "rules.yaml")
	pushNeverLosesAnEdit(t, location, env)
}

// TestPushServiceToAnotherServicesKey: a per-service document pushed to
// another service's key is refused, naming both, and nothing is
// published; the location printed has no double slash.
func TestPushServiceToAnotherServicesKey(t *testing.T) {
	srv := etcdtest.Start(t)
	base := "etcd://" + srv.Endpoint() + "/lightmesh/rules/"
	doc := writeFile(t, "user-api.yaml", "apiVersion: lightmesh/v1\nservices:\n  user-api: {timeout: 1s}\n")
	code, out, errs := binary(t, nil, "push", "--service", "user-api", "-f", doc, base+"order-api")
	if code == 0 || !strings.Contains(errs, `is the document of "order-api", not of "user-api"`) {
		t.Errorf("push --service user-api to order-api's key: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs := binary(t, nil, "get", base+"order-api"); code == 0 || !strings.Contains(errs, "no document there") {
		t.Errorf("order-api's key after the refused push: exit %d %s", code, errs)
	}
	code, out, errs = binary(t, nil, "push", "--service", "user-api", "-f", doc, base+"user-api")
	if code != 0 || !strings.Contains(out, "to "+base+"user-api (version") || strings.Contains(out+errs, "//lightmesh") {
		t.Errorf("push to its own key: exit %d\n%s%s", code, out, errs)
	}
}

// TestDiffComparesWhatIsInForce: diff and push --dry-run compare what is
// in force, defaults included: a fleet-wide default changed is a change
// for every service that takes it, a default written out is none; diff
// exits 1 on changes, 0 without, 2 on an invalid document.
func TestDiffComparesWhatIsInForce(t *testing.T) {
	implicit := writeFile(t, "implicit.yaml", "apiVersion: lightmesh/v1\nservices:\n  user-api:\n    retry: {attempts: 2}\n")
	explicit := writeFile(t, "explicit.yaml", `apiVersion: lightmesh/v1
services:
  user-api:
    timeout: off
    retry: {attempts: 2, budget: 0.2, backoff: 25ms, perTryTimeout: 0s,
            "on": [connect-failure, reset, per-try-timeout, "502", "503", "504", unavailable]}
`)
	code, out, errs := binary(t, nil, "diff", implicit, explicit)
	if code != 0 || strings.TrimSpace(out) != "no change for traffic" {
		t.Errorf("defaults written out: exit %d\n%s%s", code, out, errs)
	}

	oldDefaults := writeFile(t, "old-defaults.yaml", "apiVersion: lightmesh/v1\ndefaults: {timeout: 2s, retry: {attempts: 1}}\nservices:\n  user-api: {timeout: 1s}\n")
	newDefaults := writeFile(t, "new-defaults.yaml", "apiVersion: lightmesh/v1\ndefaults: {timeout: 3s, retry: {attempts: 1}}\nservices:\n  user-api: {timeout: 1s}\n")
	code, out, errs = binary(t, nil, "diff", oldDefaults, newDefaults)
	if code != 1 || !strings.Contains(out, `~ defaults.timeout: "2s" → "3s"`) || strings.Contains(out, "user-api") {
		t.Errorf("a default timeout changed: exit %d\n%s%s", code, out, errs)
	}

	// The per-service layout: the defaults document alone.
	oldPart := writeFile(t, "_defaults.yaml", "apiVersion: lightmesh/v1\ndefaults: {timeout: 2s}\n")
	newPart := writeFile(t, "_defaults-v2.yaml", "apiVersion: lightmesh/v1\ndefaults: {timeout: 2s, rateLimit: {rps: 100}}\n")
	code, out, errs = binary(t, nil, "diff", "--service", "_defaults", oldPart, newPart)
	if code != 1 || !strings.Contains(out, `+ defaults.rateLimit: {"rps":100,"burst":100}`) {
		t.Errorf("the defaults document: exit %d\n%s%s", code, out, errs)
	}

	bad := writeFile(t, "bad.yaml", "apiVersion: lightmesh/v1\nservices:\n  user-api: {timeout: 2}\n")
	code, out, errs = binary(t, nil, "diff", implicit, bad)
	if code != 2 || !strings.Contains(errs, "services.user-api.timeout: a duration needs a unit: write 2s or 2000ms") {
		t.Errorf("an invalid document: exit %d\n%s%s", code, out, errs)
	}

	// push --dry-run shows the same against what is live.
	srv := etcdtest.Start(t)
	location := "etcd://" + srv.Endpoint() + "/lightmesh/rules/_defaults"
	if code, out, errs := binary(t, nil, "push", "--service", "_defaults", "-f", oldPart, location); code != 0 {
		t.Fatalf("push: %d %s%s", code, out, errs)
	}
	code, out, errs = binary(t, nil, "push", "--dry-run", "--service", "_defaults", "-f", newPart, location)
	if code != 0 || !strings.Contains(out, `+ defaults.rateLimit: {"rps":100,"burst":100}`) || !strings.Contains(out, "dry run: nothing was published") {
		t.Errorf("push --dry-run of the defaults: exit %d\n%s%s", code, out, errs)
	}
}

// TestExplainShowsWhatIsInForce: explain's policy is what applies, the
// defaults and built-in defaults filled in and marked; an unset per-try
// timeout reads as the call's timeout; a gRPC call's retry conditions are
// gRPC codes, an HTTP call's status codes; a misspelled --service is
// answered with the name it most likely means.
func TestExplainShowsWhatIsInForce(t *testing.T) {
	rulesFile := writeFile(t, "rules.yaml", `apiVersion: lightmesh/v1
defaults:
  timeout: 3s
  breaker: {minRequests: 7}
services:
  user-api:
    retry: {attempts: 1}
`)
	args := []string{"explain", "-f", rulesFile, "--instance", "user-api=10.0.0.1:8080", "--service", "user-api"}
	code, out, errs := binary(t, nil, args...)
	for _, want := range []string{
		"timeout 3s (from defaults)",
		"retry: 1 attempts, per try the call's timeout, on [connect-failure reset per-try-timeout 502 503 504], budget 0.2, backoff 25ms",
		"breaker: minRequests 7, failureRatio 0.5, window 10s, open 1s..1m0s (from defaults)",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("explain: exit %d, no %q in\n%s%s", code, want, out, errs)
		}
	}
	code, out, errs = binary(t, nil, append(args, "--grpc-method", "/users.v1.Users/Get")...)
	if code != 0 || !strings.Contains(out, "on [connect-failure reset per-try-timeout unavailable]") || strings.Contains(out, "503") {
		t.Errorf("explain of a gRPC call: exit %d\n%s%s", code, out, errs)
	}

	code, out, errs = binary(t, nil, "explain", "-f", rulesFile, "--instance", "user-api=10.0.0.1:8080", "--service", "user-ap")
	if code != 1 || !strings.Contains(errs, `no rule and no discovery entry names user-ap; did you mean user-api?`) {
		t.Errorf("explain of a misspelled service: exit %d\n%s%s", code, out, errs)
	}
}

// TestExplainShowsAuthorization: lightmesh explain shows a service's
// server ID and authorization in force, and for --caller and the call the
// decision and the rule that decided it; a --caller that is not a SPIFFE
// ID is refused.
func TestExplainShowsAuthorization(t *testing.T) {
	rulesFile := writeFile(t, "rules.yaml", `apiVersion: lightmesh/v1
services:
  api:
    serverID: spiffe://example.org/api
    authorization:
      default: deny
      rules:
        - {action: allow, callers: [spiffe://example.org/front], paths: [/api.v1.Users/*]}
`)
	args := []string{"explain", "-f", rulesFile, "--instance", "api=10.0.0.1:8080", "--service", "api"}
	code, out, errs := binary(t, nil, append(args, "--caller", "spiffe://example.org/front", "--grpc-method", "/api.v1.Users/Get")...)
	for _, want := range []string{
		"server ID: spiffe://example.org/api (mutual TLS)",
		"authorization: 1 rules, default deny",
		"rule 0: allow callers [spiffe://example.org/front] paths [/api.v1.Users/*]",
		"caller spiffe://example.org/front, POST /api.v1.Users/Get: ALLOWED, allowed by authorization rule 0",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("explain --caller: exit %d, no %q in\n%s%s", code, want, out, errs)
		}
	}
	code, out, errs = binary(t, nil, append(args, "--caller", "none", "--path", "/x", "-o", "json")...)
	if code != 0 || !strings.Contains(out, `"allowed": false`) || !strings.Contains(out, "denied by default") {
		t.Errorf("explain --caller none -o json: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = binary(t, nil, append(args, "--caller", "front")...)
	if code == 0 || !strings.Contains(errs, `--caller "front"`) {
		t.Errorf("explain --caller front: exit %d; want refused naming the flag\n%s%s", code, out, errs)
	}
}

// TestDiffShowsIdentityChanges: a change of a service's serverID or of its
// authorization in force is a change for traffic, shown by its place;
// the same authorization written differently is not.
func TestDiffShowsIdentityChanges(t *testing.T) {
	a := writeFile(t, "a.yaml", "apiVersion: lightmesh/v1\nservices:\n  api:\n    authorization: {default: deny, rules: [{action: allow, callers: [spiffe://example.org/front]}]}\n")
	b := writeFile(t, "b.yaml", "apiVersion: lightmesh/v1\nservices:\n  api:\n    serverID: spiffe://example.org/api\n    authorization: {default: deny, rules: [{action: allow, callers: [spiffe://example.org/front, spiffe://example.org/batch/*]}]}\n")
	c := writeFile(t, "c.yaml", "apiVersion: lightmesh/v1\nservices:\n  api:\n    authorization:\n      default: deny\n      rules:\n        - action: allow\n          callers: [spiffe://example.org/front]\n")
	code, out, errs := binary(t, nil, "diff", a, b)
	for _, want := range []string{
		`+ services.api.serverID: "spiffe://example.org/api"`,
		`+ services.api.authorization.rules[0].callers[1]: "spiffe://example.org/batch/*"`,
	} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("diff: exit %d, no %q in\n%s%s", code, want, out, errs)
		}
	}
	if code, out, errs := binary(t, nil, "diff", a, c); code != 0 {
		t.Errorf("diff of the same authorization written differently: exit %d\n%s%s", code, out, errs)
	}
	// The balancing settings were left out of diff the same way.
	d := writeFile(t, "d.yaml", "apiVersion: lightmesh/v1\nservices:\n  api: {}\n")
	e := writeFile(t, "e.yaml", "apiVersion: lightmesh/v1\nservices:\n  api:\n    loadBalancer: p2c-ewma\n    slowStart: {window: 30s}\n")
	code, out, errs = binary(t, nil, "diff", d, e)
	for _, want := range []string{`services.api.loadBalancer: "round-robin" → "p2c-ewma"`, `+ services.api.slowStart: {"window":"30s"`} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("diff of the balancing settings: exit %d, no %q in\n%s%s", code, want, out, errs)
		}
	}
}

// TestImportIstioSaysWhatItChanges: a service in two namespaces is
// refused rather than merged; retries: {attempts: 0} stays no retry even
// under a defaults document's retry; Istio's default retries are written
// out and its default ejection cap named; kubectl's List is read.
func TestImportIstioSaysWhatItChanges(t *testing.T) {
	dr := func(ns, subset string) string {
		return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: " + ns + "}\nspec:\n  host: reviews\n  subsets:\n  - {name: " + subset + ", labels: {version: " + subset + "}}\n"
	}
	prod, staging := writeFile(t, "prod.yaml", dr("prod", "v1")), writeFile(t, "staging.yaml", dr("staging", "v2"))
	code, out, errs := binary(t, nil, "import", "istio", prod, staging)
	if code == 0 || !strings.Contains(errs, "in namespace staging") || !strings.Contains(errs, "in namespace prod") || !strings.Contains(errs, "convert one namespace at a time") {
		t.Errorf("two namespaces: exit %d\n%s%s", code, out, errs)
	}

	list := writeFile(t, "list.yaml", `apiVersion: v1
kind: List
metadata: {resourceVersion: ""}
items:
- apiVersion: networking.istio.io/v1
  kind: VirtualService
  metadata: {name: reviews, namespace: prod}
  spec:
    hosts: [reviews]
    http:
    - name: once
      match: [{uri: {prefix: /once}}]
      route: [{destination: {host: reviews, subset: v1}}]
      retries: {attempts: 0}
    - name: default
      route: [{destination: {host: reviews, subset: v1}}]
- apiVersion: networking.istio.io/v1
  kind: DestinationRule
  metadata: {name: reviews, namespace: prod}
  spec:
    host: reviews
    subsets: [{name: v1, labels: {version: v1}}]
    trafficPolicy: {outlierDetection: {consecutive5xxErrors: 3}}
`)
	code, out, errs = binary(t, nil, "import", "istio", list)
	if code != 0 {
		t.Fatalf("a List: exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{
		"written out: " + list + ": VirtualService prod/reviews spec.http[1].retries: none set, so Istio's default is written out: attempts: 2",
		"written out: " + list + ": DestinationRule prod/reviews spec.trafficPolicy.outlierDetection.maxEjectionPercent: not set, so Istio's default is written out: 10",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	converted, err := router.LoadPart("reviews", []byte(out))
	if err != nil {
		t.Fatalf("the converted document: %v\n%s", err, out)
	}
	defaults, err := router.LoadPart("", []byte("apiVersion: lightmesh/v1\ndefaults: {retry: {attempts: 3}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	composed, err := router.Compose(defaults.Document(), converted.Document())
	if err != nil {
		t.Fatal(err)
	}
	in := composed.InForce("reviews")
	if r := in.Routes[0].Retry; r == nil || r.Attempts != 0 {
		t.Errorf("route once (Istio attempts: 0) retries %+v under a default retry, want no retry", r)
	}
	if r := in.Routes[1].Retry; r == nil || r.Attempts != 2 || !slices.Contains(r.OnHTTP, "503") {
		t.Errorf("route default (no Istio retries) retries %+v, want Istio's 2 attempts", r)
	}
}

// TestValidateOnePass: lightmesh validate reports every problem of every
// kind in one run, each with path, line and column.
func TestValidateOnePass(t *testing.T) {
	file := writeFile(t, "rules.yaml", `apiVersion: lightmesh/v1
services:
  user-api:
    subsets:
      base: {labels: {env: base}}
    timeout: 2
    routes:
      - destinations: [{subset: bse}]
        fallback: baes
        retry: {attempts: 2, on: [5xxx]}
        colour: red
    breaker: {failureRatio: "50%"}
`)
	code, out, errs := binary(t, nil, "validate", "-o", "json", file)
	var got []validation
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 1 || len(got) != 1 {
		t.Fatalf("validate: exit %d, %v\n%s%s", code, err, out, errs)
	}
	paths := []string{}
	for _, p := range got[0].Problems {
		paths = append(paths, p.Path)
		if p.Line == 0 || p.Column == 0 {
			t.Errorf("problem without its place: %+v", p)
		}
	}
	want := []string{
		"services.user-api.timeout",
		"services.user-api.routes[0].destinations[0].subset",
		"services.user-api.routes[0].fallback",
		"services.user-api.routes[0].retry.on[0]",
		"services.user-api.routes[0].colour",
		"services.user-api.breaker.failureRatio",
	}
	if !slices.Equal(paths, want) {
		t.Errorf("problems at %v, want %v\n%s", paths, want, out)
	}
}

// TestDiffSeesInboundLimits: an inbound limit lowered, its conditions
// changed or a new one added changes which requests a service turns away
// with 429: diff reports each one and exits 1; a burst written out with
// the value it takes anyway is no change.
func TestDiffSeesInboundLimits(t *testing.T) {
	const doc = `apiVersion: lightmesh/v1
services:
  user-api:
    subsets:
      base: {labels: {env: base}}
    routes:
      - destinations: [{subset: base}]
    inbound:
      - name: all
        rateLimit: {rps: 100}
`
	old := writeFile(t, "old.yaml", doc)
	for _, tc := range []struct {
		name, new string
		code      int
		want      string
	}{
		{"lowered", strings.Replace(doc, "rps: 100", "rps: 1", 1), 1, `~ services.user-api.inbound[0].rateLimit.rps: 100 → 1`},
		{"narrowed", strings.Replace(doc, "- name: all", "- name: all\n        match: {methods: [POST]}", 1), 1, `+ services.user-api.inbound[0].match.methods[0]: "POST"`},
		{"added", doc + "      - name: rest\n        rateLimit: {rps: 5}\n", 1, `+ services.user-api.inbound[1]`},
		{"burst written out", strings.Replace(doc, "rps: 100", "rps: 100, burst: 100", 1), 0, "no change for traffic"},
	} {
		code, out, errs := binary(t, nil, "diff", old, writeFile(t, "new.yaml", tc.new))
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, want %d with %q\n%s%s", tc.name, code, tc.code, tc.want, out, errs)
		}
	}
}

// pushOverADeletedDocument: a colleague deletes the document after it
// was read (to let the service take the defaults, say); a push of the
// file read before is refused as a conflict, says the document was
// deleted and does not bring it back.
func pushOverADeletedDocument(t *testing.T, location string, env map[string]string, remove func()) {
	v1 := writeFile(t, "v1.yaml", casV1)
	if code, out, errs := binary(t, env, "push", "-f", v1, location); code != 0 {
		t.Fatalf("push: exit %d\n%s%s", code, out, errs)
	}
	var read string
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, read, _ = binary(t, env, "get", location)
		if strings.Contains(read, casV1) || time.Now().After(deadline) {
			break
		}
	}
	edited := writeFile(t, "edited.yaml", strings.Replace(read, "timeout: 2s", "timeout: 3s", 1))
	remove()
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if code, _, _ := binary(t, env, "get", location); code != 0 || time.Now().After(deadline) {
			break
		}
	}
	code, out, errs := binary(t, env, "push", "-f", edited, location)
	if code != 1 || !strings.Contains(errs, "changed since it was read") || !strings.Contains(errs, "the document was deleted") {
		t.Errorf("push over a deleted document: exit %d, want 1 and a conflict\n%s%s", code, out, errs)
	}
	time.Sleep(500 * time.Millisecond) // Nacos: let a write reach the read cache
	if code, now, _ := binary(t, env, "get", location); code == 0 {
		t.Errorf("after the push the deleted document is back:\n%s", now)
	}
}

func TestPushOverADeletedDocumentEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	pushOverADeletedDocument(t, "etcd://"+srv.Endpoint()+"/lightmesh/rules", nil, func() {
		if _, err := cli.Delete(t.Context(), "/lightmesh/rules"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPushOverADeletedDocumentNacos(t *testing.T) {
	location, env := nacosLocation(t, "rules.yaml")
	pushOverADeletedDocument(t, location, env, func() { nacosDelete(t, location, env) })
}

// nacosDelete deletes the config item of a nacos:// location through the
// server's HTTP API, logging in with the credentials of env if any.
func nacosDelete(t *testing.T, location string, env map[string]string) {
	t.Helper()
	rest := strings.TrimPrefix(location, "nacos://")
	addr, path, _ := strings.Cut(rest, "/")
	group, dataID, _ := strings.Cut(path, "/")
	q := url.Values{"dataId": {dataID}, "group": {group}}
	if user := env["NACOS_USERNAME"]; user != "" {
		resp, err := http.PostForm("http://"+addr+"/nacos/v1/auth/login", url.Values{"username": {user}, "password": {env["NACOS_PASSWORD"]}})
		if err != nil {
			t.Fatal(err)
		}
		var login struct {
			AccessToken string `json:"accessToken"`
		}
		err = json.NewDecoder(resp.Body).Decode(&login)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("nacos login: %v", err)
		}
		q.Set("accessToken", login.AccessToken)
	}
	req, err := http.NewRequest(http.MethodDelete, "http://"+addr+"/nacos/v1/cs/configs?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "true" {
		t.Fatalf("nacos delete %s: %s %s", location, resp.Status, body)
	}
}

// TestPushReadsTheVersionThroughAWindowsEditor: a file from get saved by
// an editor that writes a byte-order mark and CRLF line ends (Notepad,
// "UTF-8 with BOM") is still the file read at that version: the push
// publishes the edit, without the version line, and is not told that
// the file was never read from the location (whose advice, --force,
// would publish over anyone's edit).
func TestPushReadsTheVersionThroughAWindowsEditor(t *testing.T) {
	srv := etcdtest.Start(t)
	location := "etcd://" + srv.Endpoint() + "/lightmesh/rules"
	if code, out, errs := binary(t, nil, "push", "-f", writeFile(t, "v1.yaml", casV1), location); code != 0 {
		t.Fatalf("push: exit %d\n%s%s", code, out, errs)
	}
	_, read, _ := binary(t, nil, "get", location)
	saved := "\ufeff" + strings.ReplaceAll(strings.Replace(read, "timeout: 2s", "timeout: 3s", 1), "\n", "\r\n")
	code, out, errs := binary(t, nil, "push", "-f", writeFile(t, "edited.yaml", saved), location)
	if code != 0 || strings.Contains(errs, "not read from") {
		t.Fatalf("push of the file saved with a BOM: exit %d\n%s%s", code, out, errs)
	}
	_, now, _ := binary(t, nil, "get", location)
	if !strings.Contains(now, "timeout: 3s") || strings.Count(now, "# lightmesh-version") != 1 || strings.Contains(now, "\ufeff") {
		t.Errorf("after the push the location holds:\n%q", now)
	}
}

// TestImportIstioKeepsTheDefaultRetryOn: Istio's retries without retryOn
// retry on connect-failure, refused-stream, unavailable, cancelled and
// 503; the converted route retries on those (refused-stream aside, and
// said so), not on lightmesh's own default list, which adds 502, 504, a
// reset and a per-try timeout (a request Istio would not send twice).
func TestImportIstioKeepsTheDefaultRetryOn(t *testing.T) {
	vs := writeFile(t, "vs.yaml", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: prod}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
    retries: {attempts: 3}
`)
	code, out, errs := binary(t, nil, "import", "istio", vs)
	if code != 0 {
		t.Fatalf("import: exit %d\n%s%s", code, out, errs)
	}
	converted, err := router.LoadPart("reviews", []byte(out))
	if err != nil {
		t.Fatalf("the converted document: %v\n%s", err, out)
	}
	r := converted.InForce("reviews").Routes[0].Retry
	if r == nil || r.Attempts != 3 || !slices.Equal(r.OnHTTP, []string{"connect-failure", "503"}) || !slices.Equal(r.OnGRPC, []string{"connect-failure", "cancelled", "unavailable"}) {
		t.Errorf("retry in force %+v, want 3 attempts on Istio's default conditions\n%s", r, out)
	}
	if want := "spec.http[0].retries.retryOn: none set, so Istio's default is written out"; !strings.Contains(errs, want) {
		t.Errorf("stderr lacks %q:\n%s", want, errs)
	}
}

// TestValidateSyntaxErrorHasItsLine: a document YAML cannot read at all
// (a tab in the indentation, the most common case) is reported as
// FILE:LINE: like every other problem, so editors and CI annotations
// point at it, with a word on the likely cause.
func TestValidateSyntaxErrorHasItsLine(t *testing.T) {
	file := writeFile(t, "tab.yaml", "apiVersion: lightmesh/v1\nservices:\n  user-api:\n\tretry: {attempts: 2}\n")
	code, out, errs := binary(t, nil, "validate", file)
	if code != 1 || !strings.HasPrefix(out, file+":4: ") || !strings.Contains(out, "tab") {
		t.Errorf("validate: exit %d, want 1 and %s:4: naming the tab\n%s%s", code, file, out, errs)
	}
	code, out, errs = binary(t, nil, "validate", "-o", "json", file)
	var got []validation
	if err := json.Unmarshal([]byte(out), &got); code != 1 || err != nil || len(got) != 1 || len(got[0].Problems) != 1 || got[0].Problems[0].Line != 4 {
		t.Errorf("validate -o json: exit %d %v\n%s%s", code, err, out, errs)
	}
}

// TestPushDryRunSaysThePushWouldBeRefused: a dry run of a file read before
// a colleague published shows the diff against the live document (their
// change undone among it) and says that the push would be refused, rather
// than presenting that diff as what the push will do.
func TestPushDryRunSaysThePushWouldBeRefused(t *testing.T) {
	srv := etcdtest.Start(t)
	location := "etcd://" + srv.Endpoint() + "/lightmesh/rules"
	if code, out, errs := binary(t, nil, "push", "-f", writeFile(t, "v1.yaml", casV1), location); code != 0 {
		t.Fatalf("push: exit %d\n%s%s", code, out, errs)
	}
	_, alice, _ := binary(t, nil, "get", location)
	aliceFile := writeFile(t, "alice.yaml", strings.Replace(alice, "attempts: 2", "attempts: 3", 1))
	_, bob, _ := binary(t, nil, "get", location)
	if code, out, errs := binary(t, nil, "push", "-f", writeFile(t, "bob.yaml", strings.Replace(bob, "timeout: 2s", "timeout: 5s", 1)), location); code != 0 {
		t.Fatalf("bob's push: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs := binary(t, nil, "push", "--dry-run", "-f", aliceFile, location)
	if code != 0 || !strings.Contains(out, `~ services.user-api.timeout: "5s" → "2s"`) || !strings.Contains(out, "changed since it was read") || !strings.Contains(out, "the push would be refused") {
		t.Errorf("dry run of a stale file: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = binary(t, nil, "push", "--dry-run", "-f", writeFile(t, "fresh.yaml", casV1), location)
	if code != 0 || !strings.Contains(out, "was not read from") || !strings.Contains(out, "the push would be refused") {
		t.Errorf("dry run of a file not read from the location: exit %d\n%s%s", code, out, errs)
	}
}

// TestDiffIgnoresWhatTheRouterReadsTheSame: a header name in other case,
// methods in other case or order, and an equal split written out (1:1)
// rather than left to the omitted weights change nothing for traffic:
// diff says so and exits 0, so a CI gate does not stop on them; a split
// that does change is still shown.
func TestDiffIgnoresWhatTheRouterReadsTheSame(t *testing.T) {
	const doc = `apiVersion: lightmesh/v1
services:
  user-api:
    subsets:
      base: {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - match: {headers: {x-env: {exact: staging}}, methods: [GET, POST]}
        destinations: [{subset: staging}, {subset: base}]
`
	old := writeFile(t, "old.yaml", doc)
	same := strings.NewReplacer("x-env", "X-Env", "[GET, POST]", "[post, get]", "{subset: staging}, {subset: base}", "{subset: staging, weight: 50}, {subset: base, weight: 50}").Replace(doc)
	code, out, errs := binary(t, nil, "diff", old, writeFile(t, "same.yaml", same))
	if code != 0 || strings.TrimSpace(out) != "no change for traffic" {
		t.Errorf("the same rules written differently: exit %d\n%s%s", code, out, errs)
	}
	split := strings.Replace(doc, "{subset: staging}, {subset: base}", "{subset: staging, weight: 1}, {subset: base, weight: 3}", 1)
	code, out, errs = binary(t, nil, "diff", old, writeFile(t, "split.yaml", split))
	if code != 1 || !strings.Contains(out, "+ services.user-api.routes[0].destinations[1].weight: 3") {
		t.Errorf("a split changed from 1:1 to 1:3: exit %d\n%s%s", code, out, errs)
	}
}

// TestPushReadsTheVersionBelowAnEditorsModeline: the README has editors
// name the schema in a comment at the top of the file; one added above
// get's version line leaves the file read at that version: the push
// publishes the edit, keeping the modeline and dropping the version line.
func TestPushReadsTheVersionBelowAnEditorsModeline(t *testing.T) {
	srv := etcdtest.Start(t)
	location := "etcd://" + srv.Endpoint() + "/lightmesh/rules"
	if code, out, errs := binary(t, nil, "push", "-f", writeFile(t, "v1.yaml", casV1), location); code != 0 {
		t.Fatalf("push: exit %d\n%s%s", code, out, errs)
	}
	_, read, _ := binary(t, nil, "get", location)
	const modeline = "# yaml-language-server: $schema=./lightmesh.schema.json\n"
	edited := modeline + strings.Replace(read, "timeout: 2s", "timeout: 3s", 1)
	code, out, errs := binary(t, nil, "push", "-f", writeFile(t, "edited.yaml", edited), location)
	if code != 0 || strings.Contains(errs, "not read from") {
		t.Fatalf("push of the file with a modeline above the version: exit %d\n%s%s", code, out, errs)
	}
	_, now, _ := binary(t, nil, "get", location)
	if !strings.Contains(now, "timeout: 3s") || strings.Count(now, "# lightmesh-version") != 1 || !strings.Contains(now, modeline) {
		t.Errorf("after the push the location holds:\n%s", now)
	}
}

// TestImportIstioOutlierDetectionDefaults: Istio ejects for 30s when
// baseEjectionTime is not set (lightmesh's own openBase default is 1s),
// and consecutive5xxErrors: 0 turns 5xx ejection off; the converted
// document says the same, and what it wrote out is listed.
func TestImportIstioOutlierDetectionDefaults(t *testing.T) {
	dr := func(od string) string {
		return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: prod}\nspec:\n  host: reviews\n  trafficPolicy:\n    outlierDetection: {" + od + ", maxEjectionPercent: 100}\n"
	}
	code, out, errs := binary(t, nil, "import", "istio", writeFile(t, "dr.yaml", dr("consecutive5xxErrors: 3")))
	if code != 0 {
		t.Fatalf("import: exit %d\n%s%s", code, out, errs)
	}
	converted, err := router.LoadPart("reviews", []byte(out))
	if err != nil {
		t.Fatalf("the converted document: %v\n%s", err, out)
	}
	if od := converted.InForce("reviews").OutlierDetection; od == nil || od.MinRequests != 3 || time.Duration(od.OpenBase) != 30*time.Second {
		t.Errorf("outlier detection in force %+v, want 3 errors ejecting for Istio's 30s\n%s", od, out)
	}
	if !strings.Contains(errs, "baseEjectionTime: none set, so Istio's default is written out: 30s") {
		t.Errorf("stderr does not say the 30s were written out:\n%s", errs)
	}

	code, out, errs = binary(t, nil, "import", "istio", writeFile(t, "off.yaml", dr("consecutive5xxErrors: 0")))
	if code != 0 {
		t.Fatalf("import: exit %d\n%s%s", code, out, errs)
	}
	if converted, err = router.LoadPart("reviews", []byte(out)); err != nil {
		t.Fatalf("the converted document: %v\n%s", err, out)
	}
	if od := converted.InForce("reviews").OutlierDetection; od != nil {
		t.Errorf("consecutive5xxErrors: 0 (ejection off in Istio) became outlier detection %+v\n%s", od, out)
	}
}

// TestPushServiceDiffTakesTheDefaults: in the per-service layout a
// service's document is composed with the _defaults document beside it;
// push --dry-run --service shows what is in force then: a service that
// drops its own timeout takes the default one (2s), not none.
func TestPushServiceDiffTakesTheDefaults(t *testing.T) {
	srv := etcdtest.Start(t)
	base := "etcd://" + srv.Endpoint() + "/lightmesh/rules/"
	for name, doc := range map[string]string{
		"_defaults": "apiVersion: lightmesh/v1\ndefaults: {timeout: 2s}\n",
		"user-api":  "apiVersion: lightmesh/v1\nservices:\n  user-api: {timeout: 5s, retry: {attempts: 1}}\n",
	} {
		if code, out, errs := binary(t, nil, "push", "--service", name, "-f", writeFile(t, name+".yaml", doc), base+name); code != 0 {
			t.Fatalf("push %s: exit %d\n%s%s", name, code, out, errs)
		}
	}
	next := writeFile(t, "next.yaml", "apiVersion: lightmesh/v1\nservices:\n  user-api: {retry: {attempts: 1}}\n")
	code, out, errs := binary(t, nil, "push", "--dry-run", "--service", "user-api", "-f", next, base+"user-api")
	if code != 0 || !strings.Contains(out, `~ services.user-api.timeout: "5s" → "2s"`) {
		t.Errorf("dry run of user-api without its own timeout: exit %d, want the default 2s in force\n%s%s", code, out, errs)
	}
}

// TestDiffServiceWithDefaults: diff --service S --defaults FILE composes
// both versions of S's document with the defaults document, as the meshes
// do: a service dropping its own timeout takes the default one.
func TestDiffServiceWithDefaults(t *testing.T) {
	defaults := writeFile(t, "_defaults.yaml", "apiVersion: lightmesh/v1\ndefaults: {timeout: 2s}\n")
	old := writeFile(t, "old.yaml", "apiVersion: lightmesh/v1\nservices:\n  user-api: {timeout: 5s}\n")
	next := writeFile(t, "next.yaml", "apiVersion: lightmesh/v1\nservices:\n  user-api: {}\n")
	code, out, errs := binary(t, nil, "diff", "--service", "user-api", "--defaults", defaults, old, next)
	if code != 1 || !strings.Contains(out, `~ services.user-api.timeout: "5s" → "2s"`) {
		t.Errorf("diff with the defaults: exit %d\n%s%s", code, out, errs)
	}
	bad := writeFile(t, "bad-defaults.yaml", "apiVersion: lightmesh/v1\nservices:\n  user-api: {}\n")
	if code, out, errs := binary(t, nil, "diff", "--service", "user-api", "--defaults", bad, old, next); code != 2 || !strings.Contains(errs, "the defaults document holds defaults only") {
		t.Errorf("diff with an invalid defaults document: exit %d\n%s%s", code, out, errs)
	}
}
