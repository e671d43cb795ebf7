package router_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/breaker"
	"github.com/lightmesh/lightmesh/router"
)

const defaultsDoc = `apiVersion: lightmesh/v1
defaults:
  timeout: 2s
  retry: {attempts: 2}
  breaker: {minRequests: 5}
  rateLimit: {rps: 100}
services:
  own-timeout:
    timeout: 1s
    routes:
      - name: pinned
        retry: {attempts: 1}
        destinations: [{subset: all}]
      - destinations: [{subset: all}]
    subsets: {all: {labels: {}}}
  opt-out:
    retry: {attempts: 0}
`

func TestDefaultsFillOnlyMissingSettings(t *testing.T) {
	r, err := router.Load([]byte(defaultsDoc))
	if err != nil {
		t.Fatal(err)
	}
	own := r.Policy("own-timeout")
	if own.Default.Timeout != time.Second {
		t.Errorf("own timeout = %v, want the service's 1s", own.Default.Timeout)
	}
	if own.Default.Retry == nil || own.Default.Retry.Attempts != 2 {
		t.Errorf("own-timeout retry = %+v, want the default's 2 attempts", own.Default.Retry)
	}
	if own.Breaker == nil || own.Breaker.Settings.MinRequests != 5 {
		t.Errorf("own-timeout breaker = %+v, want the default's", own.Breaker)
	}
	if got := own.Routes[0].Retry.Attempts; got != 1 {
		t.Errorf("route pinned retry attempts = %d, want its own 1", got)
	}
	if got := own.Routes[1].Retry.Attempts; got != 2 {
		t.Errorf("route without retry: attempts = %d, want the defaulted service's 2", got)
	}
	out := r.Policy("opt-out")
	if out.Default.Retry == nil || out.Default.Retry.Attempts != 0 {
		t.Errorf("opt-out retry = %+v, want its own 0 attempts", out.Default.Retry)
	}
	if out.Default.Timeout != 2*time.Second || out.Default.RateLimit == nil || out.Default.RateLimit.RPS != 100 {
		t.Errorf("opt-out = %+v, want the default timeout and limit", out.Default)
	}
	def := r.DefaultPolicy()
	if def == nil || def.Default.Timeout != 2*time.Second || def.Default.Retry.Attempts != 2 || def.Breaker == nil {
		t.Fatalf("DefaultPolicy = %+v, want the defaults", def)
	}
	for svc, want := range map[string][]string{
		"own-timeout": {"retry", "breaker", "rateLimit"},
		"opt-out":     {"timeout", "breaker", "rateLimit"},
		"unnamed":     {"timeout", "retry", "breaker", "rateLimit"},
	} {
		if got := r.InForce(svc).FromDefaults; !slices.Equal(got, want) {
			t.Errorf("InForce(%s).FromDefaults = %v, want %v", svc, got, want)
		}
	}
}

// Without a defaults document a service no rule names takes the
// built-in defaults (adaptive breaker, p2c-ewma, adaptive inbound
// shedding) and nothing else; a named service takes none of them.
func TestNoDefaultsBuiltinDefaultPolicy(t *testing.T) {
	r, err := router.Load([]byte("apiVersion: lightmesh/v1\nservices:\n  a: {timeout: 1s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r.InForce("a").FromDefaults != nil || r.InForce("b").FromDefaults != nil {
		t.Fatalf("a document without defaults gave defaults: %v", r.InForce("b").FromDefaults)
	}
	d := r.DefaultPolicy()
	if d == nil || d.Breaker == nil || d.Breaker.Settings.Mode != breaker.ModeAdaptive || d.LoadBalancer != router.P2CEWMA || d.Shed == nil || d.Default.Retry != nil || d.Default.Timeout != 0 {
		t.Fatalf("built-in defaults: %+v", d)
	}
	if b := r.InForce("b").Builtin; !slices.Equal(b, []string{"breaker", "loadBalancer", "inboundShedding"}) {
		t.Errorf("InForce(b).Builtin = %v", b)
	}
	if a := r.Policy("a"); a.Breaker != nil || a.LoadBalancer != router.RoundRobin || a.Shed != nil || r.InForce("a").Builtin != nil {
		t.Errorf("a named service took built-in defaults: %+v", a)
	}
	off, err := router.Load([]byte("apiVersion: lightmesh/v1\ndefaults:\n  breaker: {mode: off}\n  loadBalancer: round-robin\n  inboundShedding: {mode: off}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d := off.DefaultPolicy(); d.Breaker != nil || d.LoadBalancer != router.RoundRobin || d.Shed != nil || off.InForce("b").Builtin != nil {
		t.Errorf("defaults turning the built-in defaults off: %+v", d)
	}
	if r.Policy("a").Default.Retry != nil {
		t.Fatal("retry without defaults")
	}
}

func TestInvalidDefaultsReportedOnceAtTheirPath(t *testing.T) {
	doc := "apiVersion: lightmesh/v1\ndefaults:\n  retry: {attempts: 99}\n  timeout: -1s\nservices:\n  a: {}\n  b: {}\n"
	_, err := router.Load([]byte(doc))
	if err == nil {
		t.Fatal("invalid defaults accepted")
	}
	msg := err.Error()
	for _, want := range []string{"defaults.retry.attempts: must be 0..10 (line 3", "defaults.timeout: must be >= 0"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "services.") {
		t.Errorf("the defaults' problem was repeated at the services that take them: %q", msg)
	}
}

func TestLoadPartHoldsItsOwnServiceOnly(t *testing.T) {
	own := "apiVersion: lightmesh/v1\nservices:\n  user-api: {timeout: 1s}\n"
	if _, err := router.LoadPart("user-api", []byte(own)); err != nil {
		t.Fatalf("the document of user-api rejected: %v", err)
	}
	defaults := "apiVersion: lightmesh/v1\ndefaults: {timeout: 2s}\n"
	if _, err := router.LoadPart("", []byte(defaults)); err != nil {
		t.Fatalf("the defaults document rejected: %v", err)
	}
	for _, tc := range []struct{ service, doc, want string }{
		{"user-api", "apiVersion: lightmesh/v1\nservices:\n  user-api: {}\n  order-api: {}\n",
			`services.order-api: the document of "user-api" may describe only "user-api"; put the rules of "order-api" in its own document (line 4, column 3)`},
		{"user-api", "apiVersion: lightmesh/v1\nservices:\n  order-api: {}\n", `services: must describe "user-api", the service this document is for`},
		{"user-api", "apiVersion: lightmesh/v1\n", `services: must describe "user-api"`},
		{"user-api", own + "defaults: {timeout: 2s}\n", `defaults: the document of "user-api" holds its rules only`},
		{"", defaults + "services:\n  user-api: {}\n", `services.user-api: the defaults document holds defaults only; put the rules of "user-api" in its own document (line 4, column 3)`},
		{"user-api", "apiVersion: lightmesh/v1\nservices:\n  user-api: {timeout: nope}\n", `services.user-api.timeout: invalid duration "nope" (write it as "250ms", "2s" or "1m30s", or off for none) (line 3, column 23)`},
	} {
		_, err := router.LoadPart(tc.service, []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadPart(%q, %q) = %v, want an error holding %q", tc.service, tc.doc, err, tc.want)
		}
	}
}

// TestTimeoutOffOverridesDefaults: timeout: off (or 0s written out) is
// a setting, none, that keeps the default timeout away from a service,
// and a route's off runs it without the service's timeout; off is
// refused where it means nothing.
func TestTimeoutOffOverridesDefaults(t *testing.T) {
	doc := `apiVersion: lightmesh/v1
defaults: {timeout: 2s, retry: {attempts: 1, perTryTimeout: 300ms}}
services:
  streaming: {timeout: off}
  zero: {timeout: 0s}
  plain: {}
  mixed:
    timeout: 1s
    retry: {attempts: 1, perTryTimeout: off}
    subsets: {all: {labels: {}}}
    routes:
      - name: watch
        timeout: off
        destinations: [{subset: all}]
      - destinations: [{subset: all}]
`
	r, err := router.Load([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		service string
		route   int // -1: the service's default call policy
		want    time.Duration
	}{
		{"streaming", -1, 0}, {"zero", -1, 0}, {"plain", -1, 2 * time.Second},
		{"mixed", 0, 0}, {"mixed", 1, time.Second},
	} {
		p := r.Policy(tc.service)
		cp := p.Default
		if tc.route >= 0 {
			cp = p.Routes[tc.route]
		}
		if cp.Timeout != tc.want {
			t.Errorf("%s route %d: timeout %v, want %v", tc.service, tc.route, cp.Timeout, tc.want)
		}
	}
	if got := r.Policy("mixed").Default.Retry.PerTryTimeout; got != 0 {
		t.Errorf("perTryTimeout: off compiled to %v, want 0 (the call's timeout)", got)
	}
	if d := r.InForce("streaming").FromDefaults; slices.Contains(d, "timeout") {
		t.Errorf("streaming takes %v from the defaults, want its own timeout (off)", d)
	}
	_, err = router.Load([]byte("apiVersion: lightmesh/v1\nservices:\n  a: {breaker: {window: off}}\n"))
	if err == nil || !strings.Contains(err.Error(), "services.a.breaker.window: off is for timeout and perTryTimeout") {
		t.Errorf("window: off: %v", err)
	}
	// Zero reads as off: refused where off is, with its place, instead of
	// taken silently for the default (the document's JSON form writes it
	// "off", which was then refused: found by FuzzLoad).
	for _, zero := range []string{"0s", "0ms", "0h0m0s"} {
		doc := "apiVersion: lightmesh/v1\nservices:\n  a:\n    breaker: {openBase: " + zero + "}\n"
		_, err = router.Load([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), "services.a.breaker.openBase: a zero duration means none, which only timeout and perTryTimeout take") || !strings.Contains(err.Error(), "line 4") {
			t.Errorf("openBase: %s: %v", zero, err)
		}
	}
	b, _ := router.Off.MarshalText()
	var back router.Duration
	if err := back.UnmarshalText(b); err != nil || back != router.Off || string(b) != "off" {
		t.Errorf("off written as %q reads back as %v, %v", b, back, err)
	}
}

// TestNoneOnlyWhereNoneIsAllowed: a duration of none (off, or zero in any
// spelling) is refused on a field that takes none only for timeout and
// perTryTimeout, wherever it comes from (an alias of one a timeout took
// included), with advice that leads to a document Load accepts, and
// every document accepted reads back from its JSON form.
func TestNoneOnlyWhereNoneIsAllowed(t *testing.T) {
	const head = "apiVersion: lightmesh/v1\nservices:\n  a:\n"
	for _, tc := range []struct{ doc, want string }{
		{head + "    timeout: &z 0s\n    breaker: {openBase: *z}\n", "services.a.breaker.openBase: a zero duration means none"},
		{head + "    timeout: &z off\n    breaker: {openBase: *z}\n", "services.a.breaker.openBase: off is for timeout and perTryTimeout"},
		{head + "    breaker: {openBase: 0}\n", "services.a.breaker.openBase: a duration needs a unit, and a zero one means none, which only timeout and perTryTimeout take; leave this field out for its default"},
		{head + "    slowStart: {window: 0s}\n", "services.a.slowStart.window: a zero duration means none, which only timeout and perTryTimeout take; the window must be more than 0"},
		{head + "    slowStart: {window: off}\n", "services.a.slowStart.window: off is for timeout and perTryTimeout; the window must be more than 0"},
		{head + "    timeout: -2562047h47m16.854775808s\n", "services.a.timeout: invalid duration"},
	} {
		r, err := router.Load([]byte(tc.doc))
		if err == nil {
			js, _ := json.Marshal(r.Document())
			_, jerr := router.Load(js)
			t.Errorf("accepted:\n%s\nits JSON form %s: %v", tc.doc, js, jerr)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s\nerror %v, want it to contain %q", tc.doc, err, tc.want)
		}
	}
	// The timeouts still take none, and their JSON form reads back.
	r, err := router.Load([]byte(head + "    timeout: &z 0s\n    retry: {attempts: 2, perTryTimeout: *z}\n"))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(r.Document())
	if _, err := router.Load(js); err != nil {
		t.Errorf("JSON form %s: %v", js, err)
	}
}
