package router_test

import (
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/router"
)

// Hostile rule documents: each is rejected with the place and reason, or
// accepted, and loading it costs a bounded amount of memory whatever it
// holds. corpus_test.go covers the syntax-level bombs (alias bombs,
// 100,000-deep nesting, a document one byte over the limit); these are
// the documents that are valid YAML and expensive to compile.

const mib = 1 << 20

// loadMeasured loads doc and returns what Load returned with the bytes
// allocated while it ran (freed or not: the peak cannot be higher).
func loadMeasured(doc string) (*router.Rules, error, uint64) {
	data := []byte(doc)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rules, err := router.Load(data)
	runtime.ReadMemStats(&after)
	return rules, err, after.TotalAlloc - before.TotalAlloc
}

// hostileDoc describes one document and what Load must do with it.
type hostileDoc struct {
	name string
	doc  string
	// want lists substrings of the error ("!x": x must not be in it);
	// empty means Load must accept the document.
	want []string
	// maxAlloc bounds what Load may allocate, in MiB.
	maxAlloc uint64
}

func checkHostile(t *testing.T, tc hostileDoc) *router.Rules {
	t.Helper()
	if len(tc.doc) > router.MaxDocumentSize && !strings.Contains(tc.name, "over") {
		t.Fatalf("the test document is %d bytes, over the limit: it would test nothing else", len(tc.doc))
	}
	rules, err, alloc := loadMeasured(tc.doc)
	if len(tc.want) == 0 {
		if err != nil {
			t.Fatalf("rejected: %.2000v", err)
		}
	} else {
		if err == nil {
			t.Fatal("accepted")
		}
		for _, w := range tc.want {
			if not, ok := strings.CutPrefix(w, "!"); ok {
				if strings.Contains(err.Error(), not) {
					t.Errorf("error holds %q:\n%.2000s", not, err)
				}
			} else if !strings.Contains(err.Error(), w) {
				t.Errorf("error does not hold %q:\n%.2000s", w, err)
			}
		}
		// The error is read by people and kept in the status: short,
		// whatever the document holds.
		if n := len(err.Error()); n > 16<<10 {
			t.Errorf("error is %d bytes: %.300s", n, err)
		}
	}
	if alloc > tc.maxAlloc*mib {
		t.Errorf("Load allocated %d MiB for a %d KiB document, want at most %d MiB", alloc/mib, len(tc.doc)>>10, tc.maxAlloc)
	}
	t.Logf("%d KiB document: Load allocated %.1f MiB", len(tc.doc)>>10, float64(alloc)/mib)
	return rules
}

// docOfServices writes services s0, s1, ... each with the subsets a and b
// and routes made by route(service, i), routesPer to a service, until n
// routes are written or the next route would take the document over
// size bytes (0: no byte limit).
func docOfServices(n, routesPer, size int, route func(s, i int) string) string {
	var b strings.Builder
	b.WriteString("apiVersion: lightmesh/v1\nservices:\n")
	written := 0
	for s := 0; written < n; s++ {
		head := fmt.Sprintf("  s%d:\n    subsets: {a: {labels: {env: a}}, b: {labels: {env: b}}}\n    routes:\n", s)
		if size > 0 && b.Len()+len(head)+len(route(s, 0)) > size {
			break
		}
		b.WriteString(head)
		for i := 0; i < routesPer && written < n; i++ {
			r := route(s, i)
			if size > 0 && b.Len()+len(r) > size {
				return b.String()
			}
			b.WriteString(r)
			written++
		}
	}
	return b.String()
}

func TestHostileDocumentSize(t *testing.T) {
	valid := "apiVersion: lightmesh/v1\nservices:\n  a:\n    subsets: {base: {labels: {env: base}}}\n    routes: [{destinations: [{subset: base}]}]\n"
	pad := func(n int) string { return valid + "#" + strings.Repeat("x", n-len(valid)-2) + "\n" }
	// A document of real content up to the limit: thousands of services
	// with lane routes, each a header condition and a fallback.
	dense := docOfServices(1<<30, 8, router.MaxDocumentSize, func(s, i int) string {
		return fmt.Sprintf("    - {match: {headers: {x-env: {exact: e%d}}}, destinations: [{subset: a}], fallback: b}\n", i)
	})
	for _, tc := range []hostileDoc{
		{name: "exactly 1 MiB", doc: pad(router.MaxDocumentSize), maxAlloc: 8},
		{name: "one byte over 1 MiB", doc: pad(router.MaxDocumentSize + 1), want: []string{"router: document is 1048577 bytes, over the 1048576 byte limit"}, maxAlloc: 1},
		{name: "1 MiB of routes", doc: dense, maxAlloc: 512},
	} {
		t.Run(tc.name, func(t *testing.T) { checkHostile(t, tc) })
	}
	if len(dense) < router.MaxDocumentSize-200 || strings.Count(dense, "- {match") < 10_000 {
		t.Fatalf("dense document: %d bytes, %d routes", len(dense), strings.Count(dense, "- {match"))
	}
}

func TestHostileRouteCounts(t *testing.T) {
	route := func(s, i int) string {
		return fmt.Sprintf("    - {match: {headers: {x-id: {exact: r%d}}}, destinations: [{subset: b}]}\n", i)
	}
	// 10,000 routes in one service: over the per-service limit.
	checkHostile(t, hostileDoc{doc: docOfServices(10_000, 10_000, 0, route),
		want: []string{"services.s0.routes: 10000 routes, over the limit of 1000"}, maxAlloc: 256})

	// 10,000 routes spread over ten services: accepted, and the last
	// route of the last service routes.
	rules := checkHostile(t, hostileDoc{doc: docOfServices(10_000, router.MaxRoutes, 0, route), maxAlloc: 256})
	table := router.NewTable(rules, map[string][]discovery.Instance{"s9": {
		{Address: "10.0.0.1:80", Labels: map[string]string{"env": "a"}},
		{Address: "10.0.0.2:80", Labels: map[string]string{"env": "b"}},
	}})
	res, err := table.Route("s9", &router.Request{Header: http.Header{"X-Id": {"r999"}}}, nil)
	if err != nil || res.Instance.Address != "10.0.0.2:80" || res.RouteIndex != 999 {
		t.Fatalf("Route = %+v, %v; want routes[999] to 10.0.0.2:80", res, err)
	}
}

// regexDoc returns a document with one service x whose routes test the
// header x-user with each of exprs in turn (quoted for YAML).
func regexDoc(exprs ...string) string {
	var b strings.Builder
	b.WriteString("apiVersion: lightmesh/v1\nservices:\n  x:\n    subsets: {a: {labels: {env: a}}}\n    routes:\n")
	for _, e := range exprs {
		fmt.Fprintf(&b, "    - {match: {headers: {x-user: {regex: '%s'}}}, destinations: [{subset: a}]}\n", strings.ReplaceAll(e, "'", "''"))
	}
	return b.String()
}

func TestHostileRegexes(t *testing.T) {
	ok := []string{"ok", "ok", "ok"}
	at := func(i int, reason string) []string {
		return []string{fmt.Sprintf("services.x.routes[%d].match.headers.x-user.regex: %s", i, reason)}
	}
	// (x|\pL){300}: 12 bytes that compile to 5 MB. A document of nothing
	// else holds 12,000 of them and would need 60 GB.
	flood := docOfServices(1<<30, router.MaxRoutes, router.MaxDocumentSize, func(s, i int) string {
		return "    - {match: {headers: {h: {regex: '(x|\\pL){300}'}}}, destinations: [{subset: a}]}\n"
	})
	// (x|\pL){60} is within the limit for one expression (size 79201),
	// not for 12,000.
	flood60 := strings.ReplaceAll(flood, "{300}", "{60}")
	// [a-z0-9-]{1,63} is small (size 442), but thousands add up.
	small := func(n int) string {
		return docOfServices(n, router.MaxRoutes, 0, func(s, i int) string {
			return "    - {match: {headers: {x-user: {regex: '[a-z0-9-]{1,63}'}}}, destinations: [{subset: a}]}\n"
		})
	}
	for _, tc := range []hostileDoc{
		{name: "nested counted repetition", doc: regexDoc(append(ok, "(a{1000}){1000}")...),
			want: at(3, "invalid RE2 expression: error parsing regexp: invalid repeat count: `{1000}`"), maxAlloc: 1},
		{name: "counted repetition of a large class", doc: regexDoc(append(ok, `\pL{1000}`)...),
			want: at(3, "expression too large: size 1319001 with its counted repetitions unrolled, over the limit of 100000"), maxAlloc: 1},
		{name: "counted repetition of an alternation of classes", doc: regexDoc(append(ok, `(x|\pL){300}`)...),
			want: at(3, "expression too large"), maxAlloc: 1},
		{name: "optional classes", doc: regexDoc(append(ok, `(?:(?:\pN?){30}){30}`)...),
			want: at(3, "expression too large"), maxAlloc: 1},
		{name: "deep nesting over the length limit", doc: regexDoc(append(ok, strings.Repeat("(", 600)+"a"+strings.Repeat(")", 600))...),
			want: at(3, "1201 bytes, over the limit of 1024"), maxAlloc: 1},
		{name: "deep nesting within the length limit", doc: regexDoc(append(ok, strings.Repeat("(?:", 250)+"a"+strings.Repeat(")", 250))...), maxAlloc: 4},
		{name: "a flood of large expressions", doc: flood, want: []string{
			"services.s0.routes[0].match.headers.h.regex: expression too large: size 396001", "services.s0.routes[49].match.headers.h.regex: expression too large", "more problems"}, maxAlloc: 512},
		{name: "a flood of expressions each within the limit", doc: flood60, want: []string{
			"services.s0.routes[12].match.headers.h.regex: too much regex in the document: this expression (size 79201) takes the sum of their sizes over the limit of 1000000", "!routes[11]", "more problems"}, maxAlloc: 512},
		{name: "thousands of small expressions", doc: small(3000),
			want: []string{"services.s2.routes[262].match.headers.x-user.regex: too much regex in the document", "!routes[261]"}, maxAlloc: 512},
		{name: "thousands of small expressions within the limits", doc: small(2000), maxAlloc: 512},
	} {
		t.Run(tc.name, func(t *testing.T) { checkHostile(t, tc) })
	}
	if n := strings.Count(flood60, "regex"); n < 10_000 {
		t.Fatalf("the flood holds %d expressions", n)
	}

	// What is accepted matches as written.
	rules, err := router.Load([]byte(regexDoc(`[a-z0-9-]{1,63}`, strings.Repeat("(?:", 250)+"B"+strings.Repeat(")", 250))))
	if err != nil {
		t.Fatal(err)
	}
	table := router.NewTable(rules, map[string][]discovery.Instance{"x": {{Address: "10.0.0.1:80", Labels: map[string]string{"env": "a"}}}})
	for user, route := range map[string]int{"alice-1": 0, strings.Repeat("a", 63): 0, "B": 1} {
		if res, err := table.Route("x", &router.Request{Header: http.Header{"X-User": {user}}}, nil); err != nil || res.RouteIndex != route {
			t.Errorf("x-user %.20q: %+v, %v; want routes[%d]", user, res, err, route)
		}
	}
	if _, err := table.Route("x", &router.Request{Header: http.Header{"X-User": {strings.Repeat("a", 64)}}}, nil); !errors.Is(err, router.ErrNoRoute) {
		t.Errorf("64 letters: %v, want ErrNoRoute", err)
	}
}

func TestHostileWeights(t *testing.T) {
	split := func(weights ...string) string {
		var b strings.Builder
		b.WriteString("apiVersion: lightmesh/v1\nservices:\n  x:\n    subsets:\n")
		for i := range weights {
			fmt.Fprintf(&b, "      s%d: {labels: {env: s%d}}\n", i, i)
		}
		b.WriteString("    routes:\n    - destinations:\n")
		for i, w := range weights {
			fmt.Fprintf(&b, "      - {subset: s%d, weight: %s}\n", i, w)
		}
		return b.String()
	}
	quarter := "4611686018427387904" // 2^62: four of them sum to 2^64, 0 in an int
	max64 := make([]string, router.MaxDestinations)
	for i := range max64 {
		max64[i] = fmt.Sprint(router.MaxWeight)
	}
	max64[0] = "1"
	// Distinct skewed splits: each needs a 65,536-step schedule (256 KiB).
	skewed := docOfServices(1<<30, router.MaxRoutes, router.MaxDocumentSize, func(s, i int) string {
		return fmt.Sprintf("    - {destinations: [{subset: a, weight: 1}, {subset: b, weight: %d}]}\n", router.MaxWeight-i)
	})
	// The same skewed split everywhere: one schedule, shared.
	same := docOfServices(1<<30, router.MaxRoutes, router.MaxDocumentSize, func(s, i int) string {
		return "    - {destinations: [{subset: a, weight: 1}, {subset: b, weight: 999999}]}\n"
	})
	for _, tc := range []hostileDoc{
		{name: "2^63", doc: split("1", "9223372036854775808"),
			want: []string{`services.x.routes[0].destinations[1].weight: integer "9223372036854775808" out of range`}, maxAlloc: 1},
		{name: "1e30", doc: split("1", "1e30"),
			want: []string{`services.x.routes[0].destinations[1].weight: must be an integer, not "1e30"`}, maxAlloc: 1},
		{name: "-2^63", doc: split("1", "-9223372036854775808"),
			want: []string{"services.x.routes[0].destinations[1].weight: must be >= 0"}, maxAlloc: 1},
		{name: "sum overflows", doc: split(quarter, quarter, quarter, quarter),
			want: []string{"services.x.routes[0].destinations[3].weight: must be <= 1000000", "!sum"}, maxAlloc: 1},
		{name: "largest weights", doc: split(max64...), maxAlloc: 8},
		{name: "distinct skewed splits", doc: skewed,
			want: []string{"services.s0.routes[64].destinations: weights 1:999936 need a schedule of 65536 steps, over the limit of 4194304", "more problems"}, maxAlloc: 512},
		{name: "one skewed split repeated", doc: same, maxAlloc: 512},
	} {
		t.Run(tc.name, func(t *testing.T) { checkHostile(t, tc) })
	}
	if n := strings.Count(skewed, "weight: 1}"); n < 10_000 {
		t.Fatalf("the skewed document holds %d splits", n)
	}
}

func TestHostileNesting(t *testing.T) {
	const depth = 9_990 // the YAML decoder stops at 10,000
	seq := strings.Repeat("[", depth) + strings.Repeat("]", depth)
	jsonMap := strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth)
	block := func(indent string) string { // block mappings, one level a line
		var b strings.Builder
		for i := range 1000 {
			fmt.Fprintf(&b, "\n%s%sk:", indent, strings.Repeat(" ", i))
		}
		return b.String() + " v"
	}
	head := "apiVersion: lightmesh/v1\nservices:\n  x:\n"
	for _, tc := range []hostileDoc{
		{name: "lists in a label value", doc: head + "    subsets: {a: {labels: {env: " + seq + "}}}\n",
			want: []string{"services.x.subsets.a.labels.env: must be a string, not a list (line 4, column 33)"}, maxAlloc: 64},
		{name: "lists as a route", doc: head + "    routes: [" + seq + "]\n",
			want: []string{"services.x.routes[0]: must be a mapping with the fields of name, match, destinations"}, maxAlloc: 64},
		{name: "JSON objects in an unknown field", doc: `{"apiVersion": "lightmesh/v1", "services": {"x": {"junk": ` + jsonMap + "}}}",
			want: []string{"services.x.junk: unknown field"}, maxAlloc: 64},
		{name: "JSON objects as subsets", doc: `{"apiVersion": "lightmesh/v1", "services": {"x": {"subsets": ` + jsonMap + "}}}",
			want: []string{"services.x.subsets.a.a: unknown field (known fields: labels)"}, maxAlloc: 64},
		{name: "block mappings in a header condition", doc: head + "    routes:\n    - destinations: [{subset: a}]\n      match:\n        headers:\n          h:" + block("            "),
			want: []string{"services.x.routes[0].match.headers.h.k: unknown field"}, maxAlloc: 256},
	} {
		t.Run(tc.name, func(t *testing.T) { checkHostile(t, tc) })
	}
}

func TestHostileUTF8AndLongKeys(t *testing.T) {
	head := "apiVersion: lightmesh/v1\nservices:\n  x:\n"
	routes := "    routes: [{destinations: [{subset: a}]}]\n"
	longKey := strings.Repeat("k", 400_000)
	// A key of 400,000 bytes over 40,000 values: each value's path would
	// repeat the key (16 GB of paths).
	var wide strings.Builder
	wide.WriteString(head + "    subsets:\n      a: {labels: {}}\n      ? " + longKey + "\n      : {labels: {")
	for i := 0; wide.Len() < router.MaxDocumentSize-100; i++ {
		fmt.Fprintf(&wide, "l%d: v, ", i)
	}
	wide.WriteString("}}\n" + routes)
	// A 900,000-byte subset name, referenced by 60 routes through an alias.
	var aliased strings.Builder
	aliased.WriteString(head + "    subsets: {a: {labels: {}}}\n    routes:\n    - {destinations: [{subset: &big " + strings.Repeat("z", 900_000) + "}]}\n")
	for range 60 {
		aliased.WriteString("    - {destinations: [{subset: *big}]}\n")
	}
	for _, tc := range []hostileDoc{
		{name: "invalid UTF-8 in a label key", doc: head + "    subsets: {a: {labels: {e\xffnv: base}}}\n" + routes,
			want: []string{"router: document is not UTF-8: byte 0xff at line 4, column 29"}, maxAlloc: 1},
		{name: "invalid UTF-8 in a header value", doc: head + "    subsets: {a: {labels: {}}}\n    routes: [{match: {headers: {x: {exact: \"st\xc3\"}}}, destinations: [{subset: a}]}]\n",
			want: []string{"router: document is not UTF-8: byte 0xc3 at line 5, column 47"}, maxAlloc: 1},
		{name: "invalid UTF-8 in JSON", doc: "{\"apiVersion\": \"lightmesh/v1\",\n \"services\": {\"x\": {\"subsets\": {\"\xed\xa0\x80\": {}}}}}",
			want: []string{"router: document is not UTF-8: byte 0xed at line 2, column 34"}, maxAlloc: 1},
		{name: "binary label key and value", doc: head + "    subsets: {a: {labels: {env: !!binary /w==, !!binary /v4=: x}}}\n" + routes,
			want: []string{"services.x.subsets.a.labels.env: must be a string, not binary data (line 4, column 33)",
				"services.x.subsets.a.labels./v4=: keys must be strings, not binary data"}, maxAlloc: 1},
		{name: "binary header value", doc: head + "    subsets: {a: {labels: {}}}\n    routes: [{match: {headers: {x: {exact: !!binary //79}}}, destinations: [{subset: a}]}]\n",
			want: []string{"services.x.routes[0].match.headers.x.exact: must be a string, not binary data"}, maxAlloc: 1},
		{name: "escapes decode to valid UTF-8", doc: head + "    subsets: {a: {labels: {\"\\xff\": \"\\u00e9\\x00\"}}}\n" + routes, maxAlloc: 1},
		{name: "a long key over thousands of values", doc: wide.String(),
			want: []string{"services.x.subsets.kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...(400000 bytes): key is 400000 bytes, over the limit of 256 (line 6, column 9)", "!unknown subset"}, maxAlloc: 96},
		{name: "a long value named in 61 errors", doc: aliased.String(),
			want: []string{`services.x.routes[49].destinations[0].subset: unknown subset "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"...(900000 bytes)`, "and 11 more problems"}, maxAlloc: 256},
	} {
		t.Run(tc.name, func(t *testing.T) { checkHostile(t, tc) })
	}
}

func TestHostileMappings(t *testing.T) {
	keys := func(n int, format string) string {
		var b strings.Builder
		for i := range n {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, format, i)
		}
		return b.String()
	}
	head := "apiVersion: lightmesh/v1\nservices:\n  x:\n"
	routes := "    routes: [{destinations: [{subset: a}]}]\n"
	// The YAML decoder compares every key of a mapping with every other:
	// 80,000 keys took 10 seconds.
	for _, tc := range []hostileDoc{
		{name: "80,000 labels", doc: head + "    subsets: {a: {labels: {" + keys(80_000, "k%d: v") + "}}}\n" + routes,
			want: []string{"services.x.subsets.a.labels: mapping of 80000 keys, over the limit of 1000 (line 4, column 27)"}, maxAlloc: 128},
		{name: "80,000 keys in a label value", doc: head + "    subsets: {a: {labels: {env: {" + keys(80_000, "k%d: v") + "}}}}\n" + routes,
			want: []string{"services.x.subsets.a.labels.env: mapping of 80000 keys, over the limit of 1000"}, maxAlloc: 128},
		{name: "80,000 unknown fields", doc: head + "    routes: [{destinations: [{subset: a}], " + keys(80_000, "f%d: 1") + "}]\n",
			want: []string{"services.x.routes[0]: mapping of 80001 keys, over the limit of 1000"}, maxAlloc: 128},
		{name: "80,000 keys merged in", doc: head + "    subsets: {a: {labels: {<<: {" + keys(80_000, "k%d: v") + "}}}}\n" + routes,
			want: []string{"services.x.subsets.a.labels: mapping of 80000 keys, over the limit of 1000"}, maxAlloc: 128},
		{name: "10,001 services", doc: "apiVersion: lightmesh/v1\nservices: {" + keys(10_001, "s%d: {}") + "}\n",
			want: []string{"services: mapping of 10001 keys, over the limit of 10000"}, maxAlloc: 128},
		{name: "10,000 services", doc: "apiVersion: lightmesh/v1\nservices: {" + keys(10_000, "s%d: {}") + "}\n", maxAlloc: 128},
	} {
		t.Run(tc.name, func(t *testing.T) { checkHostile(t, tc) })
	}
}

func TestHostileManyProblems(t *testing.T) {
	// 23,000 routes, each with a misspelled field and an unknown subset:
	// every problem of the content is checked against every problem of
	// the shape, which took 13 seconds when that was a scan.
	doc := docOfServices(1<<30, router.MaxRoutes, router.MaxDocumentSize, func(s, i int) string {
		return "    - {destinations: [{subset: nope, wieght: 1}], fallbak: a}\n"
	})
	checkHostile(t, hostileDoc{doc: doc, want: []string{
		`services.s0.routes[0].destinations[0].subset: unknown subset "nope" (line 6, column 24)`,
		`services.s0.routes[0].destinations[0].wieght: unknown field; did you mean "weight"? (line 6, column 38)`,
		`services.s0.routes[0].fallbak: unknown field; did you mean "fallback"? (line 6, column 51)`,
		"!destinations: at least one", "more problems"}, maxAlloc: 256})
	if n := strings.Count(doc, "nope"); n < 10_000 {
		t.Fatalf("the document has %d routes", n)
	}
}

// TestHostileMergesAndBranches: two documents found by a second reader
// after the first limits. Nested merges of aliased mappings cost N to
// the power of their depth when each merge was followed anew (4 levels
// of 40: 0.6 s and 380 MB for 1 KB); and a document of alternations,
// each small, made the one-pass compiler keep quadratic tables (961
// regexes of 200 branches held 662 MB).
func TestHostileMergesAndBranches(t *testing.T) {
	merges := "{x: '1'}"
	for d := 3; d >= 0; d-- {
		merges = fmt.Sprintf("{<<: [&a%d %s%s]}", d, merges, strings.Repeat(fmt.Sprintf(", *a%d", d), 40))
	}
	var branches []string
	for i := range 200 {
		branches = append(branches, fmt.Sprintf("%cx", rune(0x100+i)))
	}
	alternation := strings.Join(branches, "|")
	flood := docOfServices(1<<30, router.MaxRoutes, router.MaxDocumentSize, func(s, i int) string {
		return "    - {match: {headers: {h: {regex: '" + alternation + "'}}}, destinations: [{subset: a}]}\n"
	})
	optional := "(?:a?b?c?d?e?){100}"
	for _, tc := range []hostileDoc{
		{name: "nested merges of aliases", doc: "apiVersion: lightmesh/v1\nservices:\n  x:\n    subsets:\n      a: {labels: " + merges + "}\n    routes: [{destinations: [{subset: a}]}]\n",
			want: []string{"excessive aliasing"}, maxAlloc: 8},
		{name: "a flood of alternations", doc: flood, want: []string{
			"services.s0.routes[49].match.headers.h.regex: too much regex in the document: this expression's branches (about 20099 table entries) take the sum over the limit of 1000000", "!routes[48]"}, maxAlloc: 512},
		{name: "a long key of dots", doc: longKeyDoc(strings.Repeat("a.", 200_000)), want: []string{"key is 400000 bytes"}, maxAlloc: 64},
		{name: "a long key of brackets", doc: longKeyDoc(strings.Repeat("[", 200_000)), want: []string{"key is 200000 bytes"}, maxAlloc: 64},
		{name: "a long run of optional characters", doc: regexDoc("ok", optional),
			want: []string{"services.x.routes[1].match.headers.x-user.regex: expression too large: its branches need about 125250 table entries, over the limit of 100000"}, maxAlloc: 16},
	} {
		t.Run(tc.name, func(t *testing.T) { checkHostile(t, tc) })
	}
	// Up to the limit, the document's tables stay small: 49 alternations.
	rules, err := router.Load([]byte(docOfServices(49, router.MaxRoutes, 0, func(s, i int) string {
		return "    - {match: {headers: {h: {regex: '" + alternation + "'}}}, destinations: [{subset: a}]}\n"
	})))
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	runtime.KeepAlive(rules)
	rules = nil
	runtime.GC()
	runtime.ReadMemStats(&after)
	if held := int64(before.HeapAlloc) - int64(after.HeapAlloc); held > 64*mib {
		t.Errorf("49 alternations of 200 branches hold %d MiB", held/mib)
	}
}

// longKeyDoc is a document with key as a label key, in block syntax.
func longKeyDoc(key string) string {
	return "apiVersion: lightmesh/v1\nservices:\n  x:\n    subsets:\n      a:\n        labels:\n          ? '" + key + "'\n          : v\n    routes: [{destinations: [{subset: a}]}]\n"
}
