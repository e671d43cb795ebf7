package router

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/discovery"
	"go.yaml.in/yaml/v3"
)

// validDoc is the document most bad documents below are edited from.
const validDoc = `apiVersion: lightmesh/v1
services:
  user-api:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - name: lane
        match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
        fallback: base
      - destinations: [{subset: base, weight: 90}, {subset: staging, weight: 10}]
`

// validJSON is validDoc written as JSON, with the escapes JSON has and
// YAML lacks or reads differently (\/ and a UTF-16 surrogate pair).
const validJSON = `{
	"apiVersion": "lightmesh\/v1",
	"services": {
		"user-api": {
			"subsets": {
				"base":    {"labels": {"env": "base"}},
				"staging": {"labels": {"env": "staging"}}
			},
			"routes": [
				{
					"name": "lane",
					"match": {"headers": {"x-env": {"exact": "staging"}}},
					"destinations": [{"subset": "staging"}],
					"fallback": "base"
				},
				{"destinations": [{"subset": "base", "weight": 90}, {"subset": "staging", "weight": 10}]}
			]
		}
	}
}`

// edit returns validDoc with old replaced by new, failing if old is absent.
func edit(old, new string) string {
	if !strings.Contains(validDoc, old) {
		panic("edit: " + old + " not in validDoc")
	}
	return strings.Replace(validDoc, old, new, 1)
}

// serviceDoc returns a document with one service user-api holding the
// subsets base and staging and the given routes (YAML lines, indented 6).
func serviceDoc(routes string) string {
	return "apiVersion: lightmesh/v1\nservices:\n  user-api:\n    subsets:\n      base: {labels: {env: base}}\n      staging: {labels: {env: staging}}\n    routes:\n" + routes
}

func repeatRoutes(n int, route string) string {
	var b strings.Builder
	for range n {
		b.WriteString("      - " + route + "\n")
	}
	return b.String()
}

// billionLaughs is the classic exponential alias bomb, with its anchors
// in methods lists: expanded, it would hold 9^9 methods.
func billionLaughs() string {
	var b strings.Builder
	b.WriteString("apiVersion: lightmesh/v1\nservices:\n  user-api:\n    subsets: {base: {labels: {}}}\n    routes:\n")
	b.WriteString("      - {match: {methods: &l0 [LOL, LOL, LOL, LOL, LOL, LOL, LOL, LOL, LOL]}, destinations: [{subset: base}]}\n")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&b, "      - {match: {methods: &l%d [%s]}, destinations: [{subset: base}]}\n", i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 9), ", "))
	}
	return b.String()
}

// aliasBomb shares one heavy service through aliases under thousands of
// names: each alias makes the decoder build the whole service again.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("apiVersion: lightmesh/v1\nservices:\n  s0: &svc\n    subsets:\n      a0: &sub {labels: {")
	for i := range 64 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "k%d: v", i)
	}
	b.WriteString("}}\n")
	for i := 1; i < 256; i++ {
		fmt.Fprintf(&b, "      a%d: *sub\n", i)
	}
	b.WriteString("    routes:\n      - &r {match: {headers: {")
	for i := range 32 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "h%d: {exact: x}", i)
	}
	b.WriteString("}}, destinations: [")
	for i := range 64 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "{subset: a%d}", i)
	}
	b.WriteString("]}\n")
	for range 999 {
		b.WriteString("      - *r\n")
	}
	for i := 1; i < 10000; i++ {
		fmt.Fprintf(&b, "  s%d: *svc\n", i)
	}
	return b.String()
}

type badDoc struct {
	name string
	doc  string
	want []string // substrings the error must hold; "!x": must not hold x
}

// badDocs is the corpus of documents Load must reject, each with the
// precise place and reason it must report. FuzzLoad seeds from it.
func badDocs() []badDoc {
	return []badDoc{
		// Syntax.
		{"yaml/unclosed flow sequence", "apiVersion: lightmesh/v1\nservices: [\n", []string{"router: decode: yaml: line 2: did not find expected node content"}},
		{"yaml/tab indentation", "apiVersion: lightmesh/v1\nservices:\n\tuser-api: {}\n", []string{"router: decode: yaml: line 3: found character that cannot start any token"}},
		{"yaml/bad indentation", "apiVersion: lightmesh/v1\nservices:\n  a: {}\n b: {}\n", []string{"router: decode: yaml: line 3: did not find expected key"}},
		{"yaml/unterminated quote", "apiVersion: \"lightmesh/v1\nservices: {}\n", []string{"router: decode: yaml: line 3: found unexpected end of stream"}},
		{"yaml/invalid UTF-8", "apiVersion: lightmesh/v1\nservices: {\xff\xfe: {}}\n", []string{"router: document is not UTF-8: byte 0xff at line 2, column 12"}},
		{"yaml/control character", "apiVersion: lightmesh/v1\x00\n", []string{"router: decode: yaml: control characters are not allowed"}},
		{"json/unclosed object", `{"apiVersion": "lightmesh/v1", "services": {`, []string{"router: decode: yaml: line 1: did not find expected node content"}},
		{"json/missing colon", `{"apiVersion" "lightmesh/v1"}`, []string{"router: decode: yaml: did not find expected ',' or '}'"}},
		{"json/missing comma", "{\"apiVersion\": \"lightmesh/v1\"\n \"services\": {}}", []string{"router: decode: yaml: line 1: did not find expected ',' or '}'"}},
		{"json/bad escape", `{"apiVersion": "lightmesh\q1"}`, []string{"router: decode: yaml: found unknown escape character"}},

		// Unknown fields, at every depth.
		{"unknown/top level", validDoc + "kind: VirtualService\n", []string{"kind: unknown field (known fields: apiVersion, defaults, services) (line 13, column 1)"}},
		{"unknown/service", edit("    routes:\n", "    timeouts: 2s\n    routes:\n"), []string{`services.user-api.timeouts: unknown field; did you mean "timeout"? (line 7, column 5)`}},
		{"unknown/subset", edit("{labels: {env: base}}", "{labels: {env: base}, weight: 3}"), []string{"services.user-api.subsets.base.weight: unknown field (known fields: labels) (line 5, column 38)"}},
		{"unknown/route", edit("fallback: base", "fallback: base\n        priority: 1"), []string{"services.user-api.routes[0].priority: unknown field (known fields: name, match, destinations, fallback, timeout, retry, rateLimit) (line 12"}},
		{"unknown/match", edit("match: {headers:", "match: {query: {a: {exact: b}}, headers:"), []string{"services.user-api.routes[0].match.query: unknown field (known fields: headers, path, methods) (line 9, column 17)"}},
		{"unknown/string match", edit("{exact: staging}", "{suffix: staging}"), []string{"services.user-api.routes[0].match.headers.x-env.suffix: unknown field (known fields: exact, prefix, regex, present) (line 9", "!set exactly one"}},
		{"unknown/destination", edit("[{subset: staging}]", "[{subset: staging, port: 8080}]"), []string{"services.user-api.routes[0].destinations[0].port: unknown field (known fields: subset, weight) (line 10"}},
		{"unknown/json", `{"apiVersion": "lightmesh/v1", "services": {"a": {"routes": [{"destinations": [{"subset": "b", "weigth": 1}]}]}}}`, []string{`services.a.routes[0].destinations[0].weigth: unknown field; did you mean "weight"? (line 1, column 96)`}},

		{"unknown/misspelled destinations", edit("        destinations: [{subset: staging}]\n", "        destinatons: [{subset: staging}]\n"), []string{
			`services.user-api.routes[0].destinatons: unknown field; did you mean "destinations"? (line 10, column 9)`,
			"!at least one destination"}},
		{"unknown/misspelled subset of a destination", edit("[{subset: staging}]", "[{subest: staging}]"), []string{
			`services.user-api.routes[0].destinations[0].subest: unknown field; did you mean "subset"?`, "!required"}},
		{"unknown/with a content problem elsewhere", edit("fallback: base", "fallback: prod\n        timeuot: 1s"), []string{
			`services.user-api.routes[0].fallback: unknown subset "prod" (line 11, column 9)`,
			`services.user-api.routes[0].timeuot: unknown field; did you mean "timeout"? (line 12, column 9)`}},

		// Protection sections: validated by Load, exactly as a mesh does.
		{"policy/retry attempts", edit("    routes:\n", "    retry: {attempts: 20}\n    routes:\n"), []string{"services.user-api.retry.attempts: must be 0..10 (line 7, column 13)"}},
		{"policy/negative timeout", edit("    routes:\n", "    timeout: -1s\n    routes:\n"), []string{"services.user-api.timeout: must be >= 0 (line 7, column 5)"}},
		{"policy/route timeout", edit("fallback: base", "fallback: base\n        timeout: -5ms"), []string{"services.user-api.routes[0].timeout: must be >= 0"}},
		{"policy/failure ratio", edit("    routes:\n", "    breaker: {failureRatio: 2}\n    routes:\n"), []string{"services.user-api.breaker.failureRatio: must be in (0, 1], got 2"}},
		{"policy/failure ratio NaN", edit("    routes:\n", "    breaker: {failureRatio: .nan}\n    routes:\n"), []string{"services.user-api.breaker.failureRatio"}},
		{"policy/open max below base", edit("    routes:\n", "    breaker: {openBase: 10s, openMax: 1s}\n    routes:\n"), []string{"services.user-api.breaker.openMax"}},
		{"policy/min requests", edit("    routes:\n", "    breaker: {minRequests: -1}\n    routes:\n"), []string{"services.user-api.breaker.minRequests: must be 0.."}},
		{"policy/failure status", edit("    routes:\n", "    breaker: {failureStatus: [200, 999]}\n    routes:\n"), []string{"services.user-api.breaker.failureStatus[1]: 999 is not an HTTP status code"}},
		{"policy/failure codes", edit("    routes:\n", "    breaker: {failureCodes: [unavailable, OK, teapot]}\n    routes:\n"), []string{
			`services.user-api.breaker.failureCodes[1]: "OK" is not a gRPC error code name`, `services.user-api.breaker.failureCodes[2]: "teapot" is not a gRPC error code name`}},
		{"policy/outlier multiplier", edit("    routes:\n", "    outlierDetection: {multiplier: 0.5}\n    routes:\n"), []string{"services.user-api.outlierDetection.multiplier"}},
		{"policy/outlier failure status", edit("    routes:\n", "    outlierDetection: {failureStatus: [42]}\n    routes:\n"), []string{"services.user-api.outlierDetection.failureStatus[0]: 42 is not an HTTP status code"}},
		{"policy/retry budget", edit("    routes:\n", "    retry: {attempts: 1, budget: 2}\n    routes:\n"), []string{"services.user-api.retry.budget: must be within 0..1"}},
		{"policy/retry budget NaN", edit("    routes:\n", "    retry: {attempts: 1, budget: .nan}\n    routes:\n"), []string{"services.user-api.retry.budget: must be within 0..1"}},
		{"policy/retry condition", edit("    routes:\n", "    retry: {attempts: 1, on: [teapot]}\n    routes:\n"), []string{`services.user-api.retry.on[0]: unknown condition "teapot"`}},
		{"policy/retry OK code", edit("    routes:\n", "    retry: {attempts: 1, on: [ok]}\n    routes:\n"), []string{`services.user-api.retry.on[0]: unknown condition "ok"`}},
		{"policy/per-try timeout", edit("    routes:\n", "    retry: {attempts: 1, perTryTimeout: -1s}\n    routes:\n"), []string{"services.user-api.retry.perTryTimeout: must be >= 0"}},
		{"policy/backoff", edit("    routes:\n", "    retry: {attempts: 1, backoff: -1s}\n    routes:\n"), []string{"services.user-api.retry.backoff: must be >= 0"}},
		{"policy/route retry", edit("fallback: base", "fallback: base\n        retry: {attempts: 11}"), []string{"services.user-api.routes[0].retry.attempts: must be 0..10"}},
		{"policy/negative rps", edit("    routes:\n", "    rateLimit: {rps: -1}\n    routes:\n"), []string{"services.user-api.rateLimit.rps: must be a finite number > 0"}},
		{"policy/NaN rps", edit("    routes:\n", "    rateLimit: {rps: .nan}\n    routes:\n"), []string{"services.user-api.rateLimit.rps"}},
		{"policy/infinite rps", edit("    routes:\n", "    rateLimit: {rps: .inf}\n    routes:\n"), []string{"services.user-api.rateLimit.rps"}},
		{"policy/negative burst", edit("    routes:\n", "    rateLimit: {rps: 10, burst: -2}\n    routes:\n"), []string{"services.user-api.rateLimit.burst: must be >= 0"}},
		{"policy/route rate limit", edit("fallback: base", "fallback: base\n        rateLimit: {rps: 0}"), []string{"services.user-api.routes[0].rateLimit.rps"}},
		{"policy/inbound without limit", edit("    routes:\n", "    inbound: [{match: {path: {prefix: /}}}]\n    routes:\n"), []string{"services.user-api.inbound[0].rateLimit: required"}},
		{"policy/inbound zero rps", edit("    routes:\n", "    inbound: [{rateLimit: {rps: 0}}]\n    routes:\n"), []string{"services.user-api.inbound[0].rateLimit.rps"}},
		{"policy/inbound duplicate names", edit("    routes:\n", "    inbound: [{name: api, rateLimit: {rps: 1}}, {name: api, rateLimit: {rps: 2}}]\n    routes:\n"), []string{
			`services.user-api.inbound[1].name: duplicate inbound route name "api" (also inbound[0])`}},
		{"policy/rate limit and retry at once", edit("    routes:\n", "    rateLimit: {rps: 0.001}\n    retry: {attempts: 20}\n    routes:\n"), []string{"services.user-api.retry.attempts: must be 0..10"}},

		// Wrong types.
		{"type/document is a scalar", "lightmesh", []string{`router: invalid document: must be a mapping with the fields of apiVersion, defaults, services, not the string "lightmesh" (line 1, column 1)`, "!apiVersion: required"}},
		{"type/document is a list", "[apiVersion, services]", []string{"router: invalid document: must be a mapping with the fields of apiVersion, defaults, services, not a list (line 1, column 1)"}},
		{"type/services is a list", "apiVersion: lightmesh/v1\nservices: [user-api]\n", []string{"services: must be a mapping of names to values, not a list (line 2, column 11)"}},
		{"type/routes is a map", edit("    routes:\n", "    routes: {a: b}\n    xroutes:\n"), []string{"services.user-api.routes: must be a list, not a mapping (line 7, column 13)", `services.user-api.xroutes: unknown field; did you mean "routes"? (line 8, column 5)`}},
		{"type/weight is a string", edit("weight: 90", "weight: ninety"), []string{`services.user-api.routes[1].destinations[0].weight: must be an integer, not the string "ninety" (line 12, column 47)`}},
		{"type/weight is a quoted number", edit("weight: 90", `weight: "90"`), []string{`services.user-api.routes[1].destinations[0].weight: must be an integer, not the string "90"`}},
		{"type/weight is a float", edit("weight: 90", "weight: 90.5"), []string{`services.user-api.routes[1].destinations[0].weight: must be an integer, not "90.5"`}},
		{"type/weight is a float in JSON", strings.Replace(validJSON, `"weight": 10`, `"weight": 10.0`, 1), []string{`services.user-api.routes[1].destinations[1].weight: must be an integer, not "10.0"`}},
		{"type/weight is a float alias", edit("weight: 90}, {subset: staging, weight: 10}", "weight: &w 9.5}, {subset: staging, weight: *w}"), []string{`services.user-api.routes[1].destinations[0].weight: must be an integer, not "9.5"`}},
		{"type/weight is a float via a merge key", edit("{subset: base, weight: 90}", "{<<: {weight: 0.9e2}, subset: base}"), []string{`services.user-api.routes[1].destinations[0].weight: must be an integer, not "0.9e2"`}},
		{"type/burst is a float", edit("    routes:\n", "    rateLimit: {rps: 10, burst: 2.5}\n    routes:\n"), []string{`services.user-api.rateLimit.burst: must be an integer, not "2.5"`}},
		{"null/status list item", edit("    routes:\n", "    breaker: {failureStatus: [503, null]}\n    routes:\n"), []string{"services.user-api.breaker.failureStatus[1]: must not be null"}},
		{"type/weight overflows", edit("weight: 90", "weight: 99999999999999999999"), []string{`services.user-api.routes[1].destinations[0].weight: must be an integer, not "99999999999999999999"`}},
		{"type/present is not a bool", edit("{exact: staging}", "{present: maybe}"), []string{`services.user-api.routes[0].match.headers.x-env.present: must be true or false, not the string "maybe" (line 9, column 44)`}},
		{"type/methods is a string", edit("match: {headers:", "match: {methods: GET, headers:"), []string{`services.user-api.routes[0].match.methods: must be a list, not the string "GET"`}},
		{"type/labels is a list", edit("{labels: {env: base}}", "{labels: [env, base]}"), []string{"services.user-api.subsets.base.labels: must be a mapping of names to values, not a list"}},
		{"type/label value is a map", edit("{labels: {env: base}}", "{labels: {env: {a: b}}}"), []string{"services.user-api.subsets.base.labels.env: must be a string, not a mapping"}},
		{"type/apiVersion is a map", "apiVersion: {v: 1}\n", []string{"apiVersion: must be a string, not a mapping (line 1, column 13)", "!required"}},

		// Weights.
		{"weight/negative", edit("weight: 90", "weight: -1"), []string{"services.user-api.routes[1].destinations[0].weight: must be >= 0"}},
		{"weight/too large", edit("weight: 90", "weight: 1000001"), []string{"services.user-api.routes[1].destinations[0].weight: must be <= 1000000"}},
		{"weight/sum to zero", edit("weight: 90}, {subset: staging, weight: 10", "weight: 0}, {subset: staging, weight: 0"), []string{"services.user-api.routes[1].destinations: weights sum to 0: at least one destination needs a positive weight"}},
		{"weight/set on some only", edit("weight: 90}, {subset: staging, weight: 10", "weight: 90}, {subset: staging"), []string{"services.user-api.routes[1].destinations: set weight on every destination or on none"}},
		{"weight/huge values", edit("weight: 90}, {subset: staging, weight: 10", "weight: 9223372036854775807}, {subset: staging, weight: 1"), []string{"services.user-api.routes[1].destinations[0].weight: must be <= 1000000"}},

		// References and names.
		{"ref/unknown destination subset", edit("[{subset: staging}]", "[{subset: canary}]"), []string{`services.user-api.routes[0].destinations[0].subset: unknown subset "canary"`}},
		{"ref/unknown fallback subset", edit("fallback: base", "fallback: prod"), []string{`services.user-api.routes[0].fallback: unknown subset "prod"`}},
		{"ref/missing destination subset", edit("[{subset: staging}]", "[{weight: 1}]"), []string{"services.user-api.routes[0].destinations[0].subset: required"}},
		{"ref/subset used twice", edit("{subset: staging, weight: 10}", "{subset: base, weight: 10}"), []string{`services.user-api.routes[1].destinations[1].subset: subset "base" already used by destinations[0]`}},
		{"ref/no subsets at all", "apiVersion: lightmesh/v1\nservices:\n  user-api:\n    routes: [{destinations: [{subset: base}]}]\n", []string{`services.user-api.routes[0].destinations[0].subset: unknown subset "base"`}},
		{"name/duplicate route names", edit("      - destinations:", "      - name: lane\n        destinations:"), []string{`services.user-api.routes[1].name: duplicate route name "lane" (also routes[0])`}},
		{"name/invalid route name", edit("name: lane", "name: lane one"), []string{"services.user-api.routes[0].name: route name must be 1..253 characters of letters, digits, '-', '_' and '.'"}},
		{"name/invalid service name", strings.Replace(validDoc, "  user-api:", "  user api:", 1), []string{"services.user api: service name must be 1..253 characters of letters, digits, '-', '_' and '.'"}},
		{"name/service name too long", strings.Replace(validDoc, "  user-api:", "  "+strings.Repeat("s", 254)+":", 1), []string{"services." + strings.Repeat("s", 254) + ": service name must be 1..253 characters"}},
		{"name/empty service name", strings.Replace(validDoc, "  user-api:", `  "":`, 1), []string{"services.: service name must be 1..253 characters"}},
		{"name/invalid subset name", edit("      staging: {labels", "      stag/ing: {labels"), []string{"services.user-api.subsets.stag/ing: subset name must be 1..253 characters of letters, digits, '-', '_' and '.'"}},
		{"name/empty label key", edit("{labels: {env: base}}", `{labels: {"": base}}`), []string{"services.user-api.subsets.base.labels: empty label key"}},
		{"name/label key too long", edit("{labels: {env: base}}", "{labels: {"+strings.Repeat("k", 129)+": base}}"), []string{"services.user-api.subsets.base.labels: label key \"kkkk", "...: over 128 bytes"}},
		{"name/label value too long", edit("{labels: {env: base}}", "{labels: {env: "+strings.Repeat("v", 257)+"}}"), []string{"services.user-api.subsets.base.labels.env: value over 256 bytes"}},

		// Duplicate keys.
		{"dup/yaml service", validDoc + "  user-api: {}\n", []string{"services.user-api: duplicate key (first at line 3) (line 13, column 3)"}},
		{"dup/yaml top level", validDoc + "apiVersion: lightmesh/v1\n", []string{"apiVersion: duplicate key (first at line 1) (line 13, column 1)", "!required"}},
		{"dup/yaml flow mapping", edit("{exact: staging}", "{exact: staging, exact: base}"), []string{"services.user-api.routes[0].match.headers.x-env.exact: duplicate key (first at line 9) (line 9, column 51)"}},
		{"dup/json", `{"apiVersion": "lightmesh/v1", "services": {}, "services": {}}`, []string{"services: duplicate key (first at line 1) (line 1, column 48)", "!apiVersion"}},

		// String conditions.
		{"cond/invalid regex", edit("{exact: staging}", "{regex: 'stag[ing'}"), []string{"services.user-api.routes[0].match.headers.x-env.regex: invalid RE2 expression: error parsing regexp: missing closing ]: `[ing`"}},
		{"cond/regex escaping its anchors", edit("{exact: staging}", "{regex: 'a)|(b'}"), []string{"services.user-api.routes[0].match.headers.x-env.regex: invalid RE2 expression: error parsing regexp: unexpected ): `a)|(b`"}},
		{"cond/perl-only regex", edit("{exact: staging}", "{regex: '(?=stag)'}"), []string{"services.user-api.routes[0].match.headers.x-env.regex: invalid RE2 expression: error parsing regexp: invalid or unsupported Perl syntax"}},
		{"cond/regex too long", edit("{exact: staging}", "{regex: '"+strings.Repeat("a", MaxRegexLen+1)+"'}"), []string{"services.user-api.routes[0].match.headers.x-env.regex: 1025 bytes, over the limit of 1024"}},
		{"cond/regex repeat too large", edit("{exact: staging}", "{regex: 'a{1001}'}"), []string{"services.user-api.routes[0].match.headers.x-env.regex: invalid RE2 expression: error parsing regexp: invalid repeat count: `{1001}`"}},
		{"cond/path regex invalid", edit("match: {headers:", "match: {path: {regex: '('}, headers:"), []string{"services.user-api.routes[0].match.path.regex: invalid RE2 expression"}},
		{"cond/two conditions", edit("{exact: staging}", "{exact: staging, prefix: stag}"), []string{"services.user-api.routes[0].match.headers.x-env: set exactly one of exact, prefix, regex, present"}},
		{"cond/exact and present", edit("{exact: staging}", "{exact: staging, present: true}"), []string{"services.user-api.routes[0].match.headers.x-env: set exactly one of exact, prefix, regex, present"}},
		{"cond/no condition", edit("{exact: staging}", "{}"), []string{"services.user-api.routes[0].match.headers.x-env: set exactly one of exact, prefix, regex, present"}},
		{"cond/null condition", edit("{exact: staging}", "null"), []string{"services.user-api.routes[0].match.headers.x-env: set exactly one of exact, prefix, regex, present"}},
		{"cond/two path conditions", edit("match: {headers:", "match: {path: {exact: /a, regex: /a}, headers:"), []string{"services.user-api.routes[0].match.path: set exactly one of exact, prefix, regex", "!present"}},
		{"cond/present on a path", edit("match: {headers:", "match: {path: {present: true}, headers:"), []string{"services.user-api.routes[0].match.path.present: only valid for headers"}},
		{"cond/invalid header name", edit("{headers: {x-env:", `{headers: {"x env":`), []string{"services.user-api.routes[0].match.headers.x env: invalid header name"}},
		{"cond/header name with colon", edit("{headers: {x-env:", `{headers: {"x-env:":`), []string{"services.user-api.routes[0].match.headers.x-env:: invalid header name"}},
		{"cond/empty header name", edit("{headers: {x-env:", `{headers: {"":`), []string{"services.user-api.routes[0].match.headers.: invalid header name"}},
		{"cond/header name with newline", edit("{headers: {x-env:", `{headers: {"x-env\nx-inject":`), []string{"services.user-api.routes[0].match.headers.x-env\nx-inject: invalid header name"}},
		{"cond/same header twice", edit("{headers: {x-env: {exact: staging}}}", "{headers: {x-env: {exact: staging}, X-Env: {exact: base}}}"), []string{`services.user-api.routes[0].match.headers.x-env: same header as "X-Env" (names are case-insensitive)`}},
		{"cond/invalid method", edit("match: {headers:", `match: {methods: [GET, "PO ST"], headers:`), []string{`services.user-api.routes[0].match.methods[1]: invalid method "PO ST"`}},

		// Routes and destinations.
		{"routes/too many", serviceDoc(repeatRoutes(MaxRoutes+1, "{destinations: [{subset: base}]}")), []string{"services.user-api.routes: 1001 routes, over the limit of 1000"}},
		{"routes/empty destinations", edit("[{subset: staging}]", "[]"), []string{"services.user-api.routes[0].destinations: at least one destination is required"}},
		{"routes/no destinations", edit("        destinations: [{subset: staging}]\n", ""), []string{"services.user-api.routes[0].destinations: at least one destination is required"}},
		{"routes/too many destinations", serviceDoc("      - destinations: [" + strings.Repeat("{subset: base}, ", MaxDestinations) + "{subset: base}]\n"), []string{"services.user-api.routes[0].destinations: 65 destinations, over the limit of 64"}},
		{"routes/too many header conditions", serviceDoc("      - match: {headers: {" + func() string {
			var b strings.Builder
			for i := range MaxHeaderConditions + 1 {
				fmt.Fprintf(&b, "h%d: {present: true}, ", i)
			}
			return b.String()
		}() + "}}\n        destinations: [{subset: base}]\n"), []string{"services.user-api.routes[0].match.headers: 33 conditions, over the limit of 32"}},
		{"routes/too many methods", serviceDoc("      - match: {methods: [" + strings.Repeat("GET, ", MaxMethods) + "GET]}\n        destinations: [{subset: base}]\n"), []string{"services.user-api.routes[0].match.methods: 17 methods, over the limit of 16"}},
		{"null/route", edit("      - destinations:", "      - null\n      - destinations:"), []string{"router: invalid document: services.user-api.routes[1]: must not be null"}},
		{"null/empty route item", edit("      - destinations:", "      -\n      - destinations:"), []string{"services.user-api.routes[1]: must not be null"}},
		{"null/route alias", edit("      - destinations:", "      - &n null\n      - *n\n      - destinations:"), []string{"services.user-api.routes[1]: must not be null"}},
		{"null/destination", edit("[{subset: staging}]", "[null, {subset: staging}]"), []string{"services.user-api.routes[0].destinations[0]: must not be null"}},
		{"null/method", edit("match: {headers:", "match: {methods: [GET, ~], headers:"), []string{"services.user-api.routes[0].match.methods[1]: must not be null"}},
		{"null/only method", edit("match: {headers:", "match: {methods: [null], headers:"), []string{"services.user-api.routes[0].match.methods[0]: must not be null"}},
		{"null/json route", `{"apiVersion": "lightmesh/v1", "services": {"a": {"routes": [null]}}}`, []string{"services.a.routes[0]: must not be null"}},

		// Versions and document shape.
		{"version/missing", strings.Replace(validDoc, "apiVersion: lightmesh/v1\n", "", 1), []string{"router: invalid document: apiVersion: required (lightmesh/v1)"}},
		{"version/unsupported", strings.Replace(validDoc, "lightmesh/v1", "lightmesh/v2", 1), []string{`router: invalid document: apiVersion: unsupported "lightmesh/v2", want lightmesh/v1`}},
		{"version/istio", "apiVersion: networking.istio.io/v1\nservices: {}\n", []string{`apiVersion: unsupported "networking.istio.io/v1", want lightmesh/v1`}},
		{"version/null document", "null\n", []string{"router: invalid document: apiVersion: required (lightmesh/v1)"}},
		{"empty/no bytes", "", []string{"router: document is empty"}},
		{"empty/whitespace", " \n\t\r\n", []string{"router: document is empty"}},
		{"empty/comments only", "# rules go here\n# later\n", []string{"router: document is empty"}},
		{"empty/document marker only", "---\n", []string{"router: invalid document: apiVersion: required (lightmesh/v1)"}},
		{"multi/two documents", validDoc + "---\n" + validDoc, []string{"router: decode: more than one document in the input"}},
		{"multi/trailing document marker", validDoc + "---\n", []string{"router: decode: more than one document in the input"}},
		{"multi/second document broken", validDoc + "---\n[\n", []string{"router: decode: more than one document in the input"}},
		{"multi/two JSON documents", `{"apiVersion": "lightmesh/v1"}` + "\n---\n" + `{"apiVersion": "lightmesh/v1"}`, []string{"router: decode: more than one document in the input"}},

		// Hostile input.
		{"hostile/oversized", validDoc + "#" + strings.Repeat("x", MaxDocumentSize-len(validDoc)-1) + "\n", []string{"router: document is 1048577 bytes, over the 1048576 byte limit"}},
		{"hostile/deep sequences", strings.Repeat("[", 100_000), []string{"router: decode: yaml: exceeded max depth of 10000"}},
		{"hostile/deep mappings", strings.Repeat("{a: ", 100_000), []string{"router: decode: yaml: exceeded max depth of 10000"}},
		{"hostile/deep block sequences", "apiVersion: lightmesh/v1\nservices:\n  " + strings.Repeat("- ", 20_000) + "x\n", []string{"router: decode: yaml: line 2: exceeded max depth of 10000"}},
		{"hostile/billion laughs", billionLaughs(), []string{"services.user-api.routes[1].match.methods[0]: must be a string, not a list (line 6, column 27)"}},
		{"hostile/alias bomb", aliasBomb(), []string{"router: decode: yaml: document contains excessive aliasing"}},
		{"hostile/self-referencing alias", "apiVersion: lightmesh/v1\nservices: &s {a: *s}\n", []string{"services.a.a: unknown field (known fields: subsets, routes, timeout, retry, breaker, outlierDetection, rateLimit, loadBalancer, slowStart, inbound, inboundShedding, lanes, authorization, serverID) (line 2, column 15)"}},
		{"hostile/many problems", serviceDoc(repeatRoutes(60, "{destinations: [{subset: nope}]}")), []string{
			`services.user-api.routes[0].destinations[0].subset: unknown subset "nope"`,
			`services.user-api.routes[49].destinations[0].subset: unknown subset "nope"`,
			"... and 10 more problems",
		}},
	}
}

func TestLoadRejectsBadDocuments(t *testing.T) {
	corpus := badDocs()
	if len(corpus) < 25 {
		t.Fatalf("corpus has %d cases", len(corpus))
	}
	seen := map[string]bool{}
	for _, tt := range corpus {
		if seen[tt.name] {
			t.Fatalf("duplicate case %q", tt.name)
		}
		seen[tt.name] = true
		t.Run(tt.name, func(t *testing.T) {
			var rules *Rules
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("Load panicked: %v", p)
					}
				}()
				rules, err = Load([]byte(tt.doc))
			}()
			if err == nil {
				t.Fatalf("Load accepted the document: services %v", rules.Services())
			}
			if rules != nil {
				t.Fatal("Load returned rules with its error")
			}
			for _, want := range tt.want {
				if not, ok := strings.CutPrefix(want, "!"); ok {
					if strings.Contains(err.Error(), not) {
						t.Errorf("error holds %q:\n%v", not, firstBytes(err.Error(), 2000))
					}
				} else if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not hold %q:\n%v", want, firstBytes(err.Error(), 2000))
				}
			}
		})
	}
}

func firstBytes(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// TestCompileErrorsAreFieldErrors checks the content errors: each problem
// is a *FieldError reachable with errors.As, all problems are reported and
// nothing is compiled.
func TestCompileErrorsAreFieldErrors(t *testing.T) {
	doc := edit("weight: 90", "weight: -1")
	doc = strings.Replace(doc, "fallback: base", "fallback: prod", 1)
	parsed, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := Compile(parsed)
	if rules != nil || err == nil {
		t.Fatalf("Compile = %v, %v", rules, err)
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("no *FieldError in %v", err)
	}
	var got []string
	var walk func(error)
	walk = func(err error) {
		if fe, ok := err.(*FieldError); ok {
			got = append(got, fe.Path+" | "+fe.Reason)
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	want := []string{
		`services.user-api.routes[0].fallback | unknown subset "prod"`,
		"services.user-api.routes[1].destinations[0].weight | must be >= 0",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("field errors = %q, want %q", got, want)
	}
	if _, err := Compile(nil); err == nil {
		t.Fatal("Compile(nil) succeeded")
	}
}

// TestLoadJSONLikeYAML checks that the JSON spelling of a document loads to
// the same Document and routes the same way as its YAML spelling.
func TestLoadJSONLikeYAML(t *testing.T) {
	fromYAML := mustLoad(t, validDoc)
	fromJSON := mustLoad(t, validJSON)
	if !reflect.DeepEqual(fromYAML.Document(), fromJSON.Document()) {
		y, _ := json.Marshal(fromYAML.Document())
		j, _ := json.Marshal(fromJSON.Document())
		t.Fatalf("documents differ:\nYAML %s\nJSON %s", y, j)
	}
	// Compact JSON, as a program would write it, with its escapes.
	compact, err := json.Marshal(fromYAML.Document())
	if err != nil {
		t.Fatal(err)
	}
	fromCompact := mustLoad(t, string(compact))
	if !reflect.DeepEqual(fromYAML.Document(), fromCompact.Document()) {
		t.Fatalf("compact JSON %s loads differently", compact)
	}

	instances := map[string][]discovery.Instance{"user-api": {inst("10.0.0.1:80", "env=base"), inst("10.0.0.2:80", "env=staging")}}
	ty, tj := NewTable(fromYAML, instances), NewTable(fromJSON, instances)
	for _, req := range []*Request{{Header: header("X-Env", "staging")}, {Header: header("X-Env", "base")}, nil} {
		for range 20 {
			ry, ey := ty.Route("user-api", req, nil)
			rj, ej := tj.Route("user-api", req, nil)
			if ey != nil || ej != nil || ry.Instance.Address != rj.Instance.Address {
				t.Fatalf("YAML routes to %+v (%v), JSON to %+v (%v)", ry, ey, rj, ej)
			}
			ry.Instance, rj.Instance = nil, nil
			if ry != rj {
				t.Fatalf("YAML routes to %+v (%v), JSON to %+v (%v)", ry, ey, rj, ej)
			}
		}
	}
}

// TestLoadJSONEscapes checks JSON strings with escapes: \/, surrogate
// pairs, control characters and quotes survive as JSON means them.
func TestLoadJSONEscapes(t *testing.T) {
	doc := `{"apiVersion": "lightmesh\/v1", "services": {"svc": {
		"subsets": {"a": {"labels": {"emoji": "\ud83d\ude00", "path": "\/x\\y\"z", "ctl": "a\tb\u0001", "plain": "k\u00e9"}}},
		"routes": [{"match": {"headers": {"x-q": {"exact": "\"quoted\" \/ \\"}}}, "destinations": [{"subset": "a"}]}]}}}`
	rules := mustLoad(t, doc)
	labels := rules.Document().Services["svc"].Subsets["a"].Labels
	want := map[string]string{"emoji": "\U0001F600", "path": `/x\y"z`, "ctl": "a\tb\x01", "plain": "ké"}
	if !reflect.DeepEqual(labels, want) {
		t.Fatalf("labels = %q, want %q", labels, want)
	}
	if got := *rules.Document().Services["svc"].Routes[0].Match.Headers["x-q"].Exact; got != `"quoted" / \` {
		t.Fatalf("exact = %q", got)
	}
	// \/ in a YAML (not JSON) document stays a YAML error.
	if _, err := Load([]byte("apiVersion: \"lightmesh\\/v1\"\n")); err == nil {
		t.Fatal(`YAML with \/ loaded`)
	}
}

func TestLoadMinimalDocuments(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: lightmesh/v1\n",
		"apiVersion: lightmesh/v1\nservices: {}\n",
		`{"apiVersion": "lightmesh/v1"}`,
		"---\napiVersion: lightmesh/v1\n...\n",
		"# comment\napiVersion: lightmesh/v1 # trailing\n",
		"apiVersion: lightmesh/v1\nservices:\n  user-api:\n", // a service with nothing: discovery only
		"apiVersion: lightmesh/v1\nservices:\n  user-api:\n    subsets: {all: {}}\n    routes: [{destinations: [{subset: all, weight: 1}]}]\n",
		// Anchors, aliases and merge keys are fine when the result is.
		"apiVersion: lightmesh/v1\nservices:\n  a:\n    subsets: {s: &sub {labels: {env: s}}, t: *sub}\n    routes: [{destinations: [{<<: &w {weight: 3}, subset: s}, {<<: *w, subset: t}]}]\n",
	} {
		rules, err := Load([]byte(doc))
		if err != nil {
			t.Errorf("Load(%q): %v", doc, err)
			continue
		}
		if rules.Document().APIVersion != APIVersion {
			t.Errorf("Load(%q): apiVersion %q", doc, rules.Document().APIVersion)
		}
	}
	// A document exactly at the size limit loads.
	doc := validDoc + "#" + strings.Repeat("x", MaxDocumentSize-len(validDoc)-2) + "\n"
	if len(doc) != MaxDocumentSize {
		t.Fatalf("doc is %d bytes", len(doc))
	}
	if _, err := Load([]byte(doc)); err != nil {
		t.Fatalf("document of MaxDocumentSize bytes: %v", err)
	}
}

func TestDuration(t *testing.T) {
	var v struct {
		D Duration `yaml:"d"`
	}
	for _, tt := range []struct {
		in   string
		want Duration
		err  string
	}{
		{"d: 2s", Duration(2e9), ""},
		{"d: ' 250ms '", Duration(250e6), ""},
		{"d: 1h2m", Duration(3720e9), ""},
		{"d: 2", 0, `line 1: invalid duration "2"`},
		{"d: soon", 0, `line 1: invalid duration "soon"`},
		{"d: [1s]", 0, `line 1: duration must be a string such as "2s"`},
	} {
		v.D = 0
		err := decodeStrict(tt.in, &v)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || v.D != tt.want || v.D.Std() != tt.want.Std() {
			t.Errorf("%q: %v, %v; want %v", tt.in, v.D.Std(), err, tt.want.Std())
		}
	}
	text, _ := Duration(1500e6).MarshalText()
	if string(text) != "1.5s" {
		t.Fatalf("MarshalText = %q", text)
	}
}

func decodeStrict(s string, v any) error {
	dec := yaml.NewDecoder(strings.NewReader(s))
	dec.KnownFields(true)
	return dec.Decode(v)
}
