package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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
