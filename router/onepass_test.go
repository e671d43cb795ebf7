package router_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/router"
)

// problemsOf returns the problems of a rejected document as
// "path: reason (line L, column C)" lines.
func problemsOf(t *testing.T, doc string) []string {
	t.Helper()
	_, err := router.Load([]byte(doc))
	var ve *router.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Load: %v, want a *ValidationError", err)
	}
	var out []string
	for _, p := range ve.Problems {
		out = append(out, p.Error())
	}
	return out
}

// TestOnePassReportsEveryKindOfProblem: shape problems (an unknown field,
// a bare-number duration, a string where a number goes) do not hide the
// content problems of the same document: every one of them is reported
// at once, each with its path, line and column, with a hint where the fix
// is known.
func TestOnePassReportsEveryKindOfProblem(t *testing.T) {
	doc := `apiVersion: lightmesh/v1
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
`
	got := problemsOf(t, doc)
	want := []string{
		`services.user-api.timeout: a duration needs a unit: write 2s or 2000ms (line 6, column 14)`,
		`services.user-api.routes[0].destinations[0].subset: unknown subset "bse"; did you mean "base"?`,
		`services.user-api.routes[0].fallback: unknown subset "baes"; did you mean "base"? (line 9, column 9)`,
		`services.user-api.routes[0].retry.on[0]: unknown condition "5xxx"`,
		`services.user-api.routes[0].colour: unknown field`,
		`services.user-api.breaker.failureRatio: must be a number, not the string "50%": write 0.5 (line 12, column 29)`,
	}
	if len(got) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || strings.HasPrefix(g, w) || strings.Contains(g, w)
		}
		if !found {
			t.Errorf("no problem %q among:\n%s", w, strings.Join(got, "\n"))
		}
	}
	for _, g := range got {
		if !strings.Contains(g, "(line ") {
			t.Errorf("problem without its line and column: %s", g)
		}
	}
}

// TestDurationHints: a duration written without a unit says how to
// write it, whatever the unit meant.
func TestDurationHints(t *testing.T) {
	for _, tc := range []struct{ value, hint string }{
		{"2", "write 2s or 2000ms"},
		{"2000", "write 2000ms or 2s"},
		{"1.5", "write 1.5s or 1500ms"},
		{"2 s", `invalid duration "2 s"`},
	} {
		doc := "apiVersion: lightmesh/v1\nservices:\n  a:\n    timeout: " + tc.value + "\n"
		got := problemsOf(t, doc)
		if len(got) != 1 || !strings.Contains(got[0], tc.hint) || !strings.Contains(got[0], "services.a.timeout") {
			t.Errorf("timeout: %s: %q, want one problem with %q", tc.value, got, tc.hint)
		}
	}
}

// TestRetryOnKeyFromYAML11Tools: a YAML 1.1 tool reads the key on: as
// the boolean true and writes it back as true:; the document then says
// how to write it so that every tool reads it, and the quoted form is
// read as on.
func TestRetryOnKeyFromYAML11Tools(t *testing.T) {
	got := problemsOf(t, "apiVersion: lightmesh/v1\nservices:\n  a:\n    retry: {attempts: 1, true: [503]}\n")
	if len(got) != 1 || !strings.Contains(got[0], `quote the key: "on":`) {
		t.Errorf("true: in retry: %q, want a hint to quote on", got)
	}
	// The same tool's document written out as JSON (yq -o json,
	// json.dumps) has the key "true".
	got = problemsOf(t, `{"apiVersion": "lightmesh/v1", "services": {"a": {"retry": {"attempts": 1, "true": ["503"]}}}}`)
	if len(got) != 1 || !strings.Contains(got[0], `quote the key: "on":`) {
		t.Errorf(`"true": in retry (JSON): %q, want a hint to quote on`, got)
	}
	r, err := router.Load([]byte("apiVersion: lightmesh/v1\nservices:\n  a:\n    retry:\n      attempts: 1\n      \"on\": [\"503\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if on := r.Policy("a").Default.Retry.On; !on.Status.Has(503) || on.Status.Has(502) || on.ConnectFailure {
		t.Errorf(`"on": ["503"] compiled to %+v, want 503 only`, on)
	}
}

// TestOnePassNoFollowOnProblems: a value left out for its shape problem
// does not cause problems of its own elsewhere (a weight written as a
// string is still a weight written).
func TestOnePassNoFollowOnProblems(t *testing.T) {
	got := problemsOf(t, `apiVersion: lightmesh/v1
services:
  a:
    subsets: {x: {labels: {}}, y: {labels: {}}}
    routes:
      - destinations: [{subset: x, weight: "10"}, {subset: y, weight: 90}]
      - destinations: x
    rateLimit: {rps: "100"}
`)
	want := []string{
		`services.a.routes[0].destinations[0].weight: must be an integer, not the string "10": write 10 without quotes (line 6, column 44)`,
		`services.a.routes[1].destinations: must be a list, not the string "x" (line 7, column 23)`,
		`services.a.rateLimit.rps: must be a number, not the string "100": write 100 without quotes (line 8, column 22)`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestUnknownSubsetSuggestsTheClosest: a mistyped destination or fallback
// subset is answered with the subset meant, as a mistyped field is; one
// that is not close to any gets no guess.
func TestUnknownSubsetSuggestsTheClosest(t *testing.T) {
	_, err := router.Load([]byte(`apiVersion: lightmesh/v1
services:
  user-api:
    subsets:
      base: {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - destinations: [{subset: stagin}]
        fallback: Base
      - destinations: [{subset: canary}]
`))
	for _, want := range []string{
		`services.user-api.routes[0].destinations[0].subset: unknown subset "stagin"; did you mean "staging"? (line 8, column 25)`,
		`services.user-api.routes[0].fallback: unknown subset "Base"; did you mean "base"? (line 9, column 9)`,
		`services.user-api.routes[1].destinations[0].subset: unknown subset "canary" (line 10, column 25)`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
