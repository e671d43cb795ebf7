package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/router"
)

// TestImportIstioRoutesTheSame: the document converted from Istio's
// bookinfo reviews VirtualService and DestinationRule sends each request
// to the subset Istio would (checked with explain on reviews' v1, v2 and
// v3 instances), keeps the split, retries, timeout and outlier detection,
// and reports each field it left out with its place.
func TestImportIstioRoutesTheSame(t *testing.T) {
	code, doc, stderr := lightmesh(t, nil, "import", "istio", "testdata/istio/reviews-virtualservice.yaml", "testdata/istio/reviews-destinationrule.yaml")
	if code != 0 {
		t.Fatalf("import: %d\n%s", code, stderr)
	}
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesFile, []byte(doc), 0o644)
	if code, out, _ := lightmesh(t, nil, "validate", rulesFile); code != 0 {
		t.Fatalf("the converted document does not validate:\n%s", out)
	}
	instances := filepath.Join(dir, "instances.yaml")
	os.WriteFile(instances, []byte("reviews:\n  - {address: 10.1.0.1:9080, labels: {version: v1}}\n  - {address: 10.1.0.2:9080, labels: {version: v2}}\n  - {address: 10.1.0.3:9080, labels: {version: v3}}\n"), 0o644)

	type explained struct {
		Route  string
		Chosen struct{ Name string }
		Split  []struct {
			Subset string
			Share  float64
		}
		Instance string
		Policy   struct {
			Timeout string
			Retry   struct {
				Attempts      int
				PerTryTimeout string
				OnHTTP        []string
			}
			OutlierDetection struct {
				MinRequests        int
				FailureRatio       float64
				OpenBase, Window   string
				MaxEjectionPercent int
			}
		}
	}
	explain := func(args ...string) explained {
		t.Helper()
		code, out, stderr := lightmesh(t, nil, append([]string{"explain", "-o", "json", "-f", rulesFile, "--instances", instances, "--service", "reviews"}, args...)...)
		if code != 0 {
			t.Fatalf("explain %v: %d %s", args, code, stderr)
		}
		var e explained
		if err := json.Unmarshal([]byte(out), &e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	// Istio: end-user: jason → v2, whatever the path.
	if e := explain("--header", "end-user=jason", "--path", "/v1/ratings"); e.Chosen.Name != "v2" || e.Instance != "10.1.0.2:9080" {
		t.Errorf("end-user: jason went to %s (%s), want v2", e.Chosen.Name, e.Instance)
	}
	// GET /v1/ratings → 90% v1, 10% v3, with the route's timeout and retries.
	e := explain("--path", "/v1/ratings/7")
	if e.Route != "ratings-canary" || len(e.Split) != 2 || e.Split[0].Subset != "v1" || e.Split[0].Share != 0.9 || e.Split[1].Subset != "v3" {
		t.Errorf("GET /v1/ratings: %+v, want the 90/10 split v1/v3", e)
	}
	if e.Policy.Timeout != "3s" || e.Policy.Retry.Attempts != 2 || e.Policy.Retry.PerTryTimeout != "1s" || strings.Join(e.Policy.Retry.OnHTTP, ",") != "connect-failure,5xx" {
		t.Errorf("GET /v1/ratings policy: %+v", e.Policy)
	}
	if od := e.Policy.OutlierDetection; od.MinRequests != 5 || od.FailureRatio != 1 || od.OpenBase != "30s" || od.Window != "10s" || od.MaxEjectionPercent != 50 {
		t.Errorf("outlier detection: %+v, want 5 of 5 within 10s ejecting for 30s, at most 50%% of the instances", od)
	}
	// Istio matches method exactly: POST /v1/ratings falls to the default.
	if e := explain("--path", "/v1/ratings", "--method", "POST"); e.Route != "default" || e.Chosen.Name != "v1" {
		t.Errorf("POST /v1/ratings: route %s subset %s, want default v1", e.Route, e.Chosen.Name)
	}
	if e := explain("--path", "/"); e.Route != "default" || e.Chosen.Name != "v1" {
		t.Errorf("GET /: route %s subset %s, want default v1", e.Route, e.Chosen.Name)
	}
	for _, want := range []string{
		`reviews-virtualservice.yaml: VirtualService bookinfo/reviews spec.http[2].fault: no lightmesh equivalent`,
		`spec.http[1].retries.retryOn: condition "refused-stream"`,
		`DestinationRule bookinfo/reviews spec.trafficPolicy.connectionPool:`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the left-out fields do not mention %q:\n%s", want, stderr)
		}
	}
}

// TestImportIstioLeavesOutWhatWouldWidenARoute: a match with a condition
// lightmesh cannot express (a query parameter) is left out with its
// route's other matches kept, rather than converted without the condition
// (which would send more requests there than Istio does).
func TestImportIstioLeavesOutWhatWouldWidenARoute(t *testing.T) {
	dir := t.TempDir()
	vs := filepath.Join(dir, "vs.yaml")
	os.WriteFile(vs, []byte(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: beta
    match:
    - queryParams: {beta: {exact: "1"}}
    - headers: {x-beta: {exact: "1"}}
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`), 0o644)
	code, doc, stderr := lightmesh(t, nil, "import", "istio", "--strict", vs)
	if code != 1 {
		t.Fatalf("--strict with a field left out: exit %d, want 1", code)
	}
	if !strings.Contains(stderr, "spec.http[0].match[0].queryParams") || !strings.Contains(stderr, "spec.http[0].match[0]: a condition could not be converted") {
		t.Errorf("stderr does not name the query parameter match:\n%s", stderr)
	}
	if strings.Count(doc, "name: beta") != 1 || !strings.Contains(doc, "x-beta") || strings.Contains(doc, "queryParams") {
		t.Errorf("want one beta route, on the header only:\n%s", doc)
	}
}

// TestImportIstioEjectionDurationsBelowItsMinimum: Istio requires an
// outlierDetection's interval and baseEjectionTime to be at least 1ms. A
// zero (or a value that is no duration) is left out and named, and the
// document written is one lightmesh validate accepts, with Istio's
// default ejection time. Envoy's cap of an ejection (300s, or the
// ejection time when longer) is written out as openMax.
func TestImportIstioEjectionDurations(t *testing.T) {
	dr := writeFile(t, "dr.yaml", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3, interval: 0s, baseEjectionTime: 0ms}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3, interval: soon, baseEjectionTime: 2m}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: details}
spec:
  host: details
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3, baseEjectionTime: 10m}
`)
	code, doc, stderr := lightmesh(t, nil, "import", "istio", dr)
	if code != 0 {
		t.Fatalf("import: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{
		`outlierDetection.interval: "0s" is below Istio's minimum of 1ms`,
		`outlierDetection.baseEjectionTime: "0ms" is below Istio's minimum of 1ms`,
		`outlierDetection.interval: `,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}
	if strings.Count(stderr, "outlierDetection.interval: ") != 2 {
		t.Errorf("want both intervals named as left out:\n%s", stderr)
	}
	if _, err := router.Load([]byte(doc)); err != nil {
		t.Fatalf("the converted document is refused: %v\n%s", err, doc)
	}
	d, err := router.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for svc, want := range map[string]struct{ openBase, openMax time.Duration }{
		"reviews": {30 * time.Second, 5 * time.Minute},
		"ratings": {2 * time.Minute, 5 * time.Minute},
		"details": {10 * time.Minute, 10 * time.Minute},
	} {
		od := d.Services[svc].OutlierDetection
		if od == nil {
			t.Fatalf("%s: no outlierDetection written:\n%s", svc, doc)
		}
		if time.Duration(od.OpenBase) != want.openBase || time.Duration(od.OpenMax) != want.openMax || od.Window != 0 || od.MinRequests != 3 {
			t.Errorf("%s: openBase %v, openMax %v, window %v, minRequests %d; want %v, %v, unset (the 10s default), 3:\n%s",
				svc, time.Duration(od.OpenBase), time.Duration(od.OpenMax), time.Duration(od.Window), od.MinRequests, want.openBase, want.openMax, doc)
		}
	}
}

// TestImportIstioOutlierDetectionAsEnvoy: outlier detection converts to
// what Envoy runs for Istio, or names what it cannot carry: the detector
// each field sets (consecutiveErrors, deprecated, is ignored as Istio
// ignores it), the ejection cap, a maxEjectionPercent of 0 (Envoy's 10%),
// a count or a duration that is none.
func TestImportIstioOutlierDetectionAsEnvoy(t *testing.T) {
	// importOutlier imports a DestinationRule of reviews with outlierDetection {od}.
	importOutlier := func(od string) (code int, out, errs string) {
		dr := "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews\n  trafficPolicy:\n    outlierDetection: {" + od + "}\n"
		return binary(t, nil, "import", "istio", writeFile(t, "dr.yaml", dr))
	}
	for _, tc := range []struct {
		od         string
		minReq     int
		status     []string // failure statuses in force
		openMax    time.Duration
		maxPercent int
		stderr     []string
	}{
		{od: "consecutive5xxErrors: 3", minReq: 3, status: []string{"5xx"}, openMax: 300 * time.Second, maxPercent: 10,
			stderr: []string{"outlierDetection: Envoy's cap of an ejection is written out as openMax: 5m0s"}},
		{od: "consecutive5xxErrors: 3, baseEjectionTime: 1m, maxEjectionPercent: 0", minReq: 3, status: []string{"5xx"}, openMax: 300 * time.Second, maxPercent: 10,
			stderr: []string{"maxEjectionPercent: 0 means Envoy's default in Istio, so it is written out: 10"}},
		{od: "consecutive5xxErrors: 7, consecutiveGatewayErrors: 2, maxEjectionPercent: 30", minReq: 7, status: []string{"5xx"}, openMax: 300 * time.Second, maxPercent: 30,
			stderr: []string{"left out: ", "outlierDetection.consecutiveGatewayErrors: Envoy also ejects after 2 consecutive gateway errors"}},
		{od: "consecutiveGatewayErrors: 2", minReq: 2, status: []string{"502", "503", "504"}, openMax: 300 * time.Second, maxPercent: 10,
			stderr: []string{"outlierDetection.consecutive5xxErrors: not set, so Envoy also ejects after 5 consecutive 5xx"}},
		{od: "consecutive5xxErrors: 0, consecutiveGatewayErrors: 4", minReq: 4, status: []string{"502", "503", "504"}, openMax: 300 * time.Second, maxPercent: 10},
		// consecutiveErrors is ignored by Istio since 1.7: Envoy's default
		// 5xx detector runs.
		{od: "consecutiveErrors: 2", minReq: 5, status: []string{"5xx"}, openMax: 300 * time.Second, maxPercent: 10,
			stderr: []string{"outlierDetection.consecutiveErrors: deprecated, and ignored by Istio since 1.7"}},
		{od: "consecutiveErrors: 0", minReq: 5, status: []string{"5xx"}, openMax: 300 * time.Second, maxPercent: 10},
		{od: "consecutiveErrors: 3, consecutive5xxErrors: 7", minReq: 7, status: []string{"5xx"}, openMax: 300 * time.Second, maxPercent: 10},
		// A quoted count is read as protojson reads it; another is named.
		{od: `consecutive5xxErrors: "3", maxEjectionPercent: "50"`, minReq: 3, status: []string{"5xx"}, openMax: 300 * time.Second, maxPercent: 50},
		{od: "consecutive5xxErrors: 3, maxEjectionPercent: -5", minReq: 3, status: []string{"5xx"}, openMax: 300 * time.Second, maxPercent: 10,
			stderr: []string{"outlierDetection.maxEjectionPercent: -5 is not a count"}},
		{od: "consecutive5xxErrors: many", minReq: 5, status: []string{"5xx"}, openMax: 300 * time.Second, maxPercent: 10,
			stderr: []string{"outlierDetection.consecutive5xxErrors: many is not a count"}},
		{od: "consecutive5xxErrors: 3, interval: 30, baseEjectionTime: 300", minReq: 3, status: []string{"5xx"}, openMax: 300 * time.Second, maxPercent: 10,
			stderr: []string{"outlierDetection.interval: 30 is not a duration", "outlierDetection.baseEjectionTime: 300 is not a duration"}},
	} {
		code, out, errs := importOutlier(tc.od)
		if code != 0 {
			t.Errorf("{%s}: exit %d\n%s%s", tc.od, code, out, errs)
			continue
		}
		rules, err := router.LoadPart("reviews", []byte(out))
		if err != nil {
			t.Errorf("{%s}: the converted document is refused: %v\n%s", tc.od, err, out)
			continue
		}
		in := rules.InForce("reviews").OutlierDetection
		if in == nil {
			t.Errorf("{%s}: no outlier detection in force:\n%s", tc.od, out)
			continue
		}
		if in.MinRequests != tc.minReq || !slices.Equal(in.FailureStatus, tc.status) || time.Duration(in.OpenMax) != tc.openMax || in.MaxEjectionPercent != tc.maxPercent {
			t.Errorf("{%s}: in force minRequests %d, failure status %v, openMax %v, maxEjectionPercent %d; want %d, %v, %v, %d\n%s",
				tc.od, in.MinRequests, in.FailureStatus, time.Duration(in.OpenMax), in.MaxEjectionPercent, tc.minReq, tc.status, tc.openMax, tc.maxPercent, out)
		}
		for _, want := range tc.stderr {
			if !strings.Contains(errs, want) {
				t.Errorf("{%s}: stderr does not say %q:\n%s", tc.od, want, errs)
			}
		}
	}
	// Istio ejects nothing when its detectors are set to 0.
	for _, od := range []string{"consecutive5xxErrors: 0", "consecutive5xxErrors: 0, consecutiveErrors: 2", "consecutive5xxErrors: 0, consecutiveGatewayErrors: 0"} {
		code, out, errs := importOutlier(od + ", interval: 5s")
		if code != 0 || strings.Contains(out, "outlierDetection") || !strings.Contains(errs, "consecutive5xxErrors: 0 turns ejection off in Istio") {
			t.Errorf("{%s}: exit %d, want no outlierDetection, said so, nothing left out:\n%s%s", od, code, out, errs)
		}
	}
}

// TestImportIstioNegativeTimeoutLeftOut: a negative timeout (Istio
// refuses it too) is left out and named, and the rest converts.
func TestImportIstioNegativeTimeoutLeftOut(t *testing.T) {
	vs := writeFile(t, "vs.yaml", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - timeout: -1s
    retries: {attempts: 2, perTryTimeout: "-2s"}
    route:
    - destination: {host: reviews}
`)
	code, out, errs := binary(t, nil, "import", "istio", vs)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{`spec.http[0].timeout: "-1s" is negative`, `spec.http[0].retries.perTryTimeout: "-2s" is negative`} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr does not say %q:\n%s", want, errs)
		}
	}
	if _, err := router.Load([]byte(out)); err != nil || strings.Contains(out, "-1s") || strings.Contains(out, "-2s") {
		t.Errorf("converted: %v\n%s", err, out)
	}
}
