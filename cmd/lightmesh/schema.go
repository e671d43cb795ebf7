package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/invopop/jsonschema"

	"github.com/lightmesh/lightmesh/breaker"
	"github.com/lightmesh/lightmesh/router"
)

// schemaID names the schema. It is not a location to fetch: editors
// read the file `lightmesh schema` writes (or cmd/lightmesh/lightmesh.schema.json
// in a clone), named in the document's first line.
const schemaID = "urn:lightmesh:rule-document:" + router.APIVersion

func runSchema(_ context.Context, c *cli, args []string) error {
	fs := newFlags(c, "schema")
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, err := documentSchema()
	if err != nil {
		return err
	}
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(s)
}

// The duration patterns match what the validator reads, which is what
// time.ParseDuration reads ("250ms", "1m30s", "+2s"): a number with a
// unit, repeated. durationPattern is every field's but the timeouts': a
// zero duration ("0s", "0h0m") is refused there, as the validator
// refuses it (a zero means none, which only timeout and perTryTimeout
// take). durationOrNonePattern, the timeouts', also reads off, "0" and a
// zero duration, signed or not, all meaning none. What a pattern does
// not check: a duration below 1ns ("0.1ns", read as zero) or above about
// 290 years, which the validator refuses.
const (
	durationUnit          = `(ns|us|µs|μs|ms|s|m|h)`
	durationNumber        = `([0-9]+(\.[0-9]*)?|\.[0-9]+)`
	zeroNumber            = `(0+(\.0*)?|\.0+)`
	nonZeroNumber         = `([0-9]*[1-9][0-9]*(\.[0-9]*)?|[0-9]+\.[0-9]*[1-9][0-9]*|\.[0-9]*[1-9][0-9]*)`
	durationPattern       = `^\s*\+?(` + zeroNumber + durationUnit + `)*` + nonZeroNumber + durationUnit + `(` + durationNumber + durationUnit + `)*\s*$`
	durationOrNonePattern = `^\s*(off|[-+]?0|[-+]?(` + zeroNumber + durationUnit + `)+|\+?(` + durationNumber + durationUnit + `)+)\s*$`
)

// documentSchema returns the JSON Schema (draft 2020-12) of the rule
// document, reflected from router.Document's Go types and their JSON
// field names (github.com/invopop/jsonschema): objects accept only their
// fields, durations are Go duration strings, and a section may be empty
// (null), as in YAML's "user-api:". It describes the document's shape;
// router.Load (lightmesh validate) also checks what a shape cannot say:
// references between sections, ranges, regular expressions.
func documentSchema() (map[string]any, error) {
	r := &jsonschema.Reflector{
		// Nothing is required by the types' tags: the validator decides
		// what a section needs.
		RequiredFromJSONSchemaTags: true,
		ExpandedStruct:             true,
		Mapper: func(t reflect.Type) *jsonschema.Schema {
			if t == reflect.TypeFor[router.Duration]() {
				// Null: the decoder takes an empty value as an absent one.
				// The timeouts' pattern is set by annotate (router.TakesNone).
				return &jsonschema.Schema{OneOf: []*jsonschema.Schema{{Type: "string", Pattern: durationPattern}, {Type: "null"}},
					Description: `a Go duration above zero: "250ms", "2s", "1m30s"`}
			}
			return nil
		},
	}
	s := r.Reflect(&router.Document{})
	s.ID = schemaID
	s.Title = "lightmesh rule document (" + router.APIVersion + ")"
	s.Description = "Rules for lightmesh: per service, subsets of its instances by label, routes, and the protection of calls (timeout, retry, breaker, outlierDetection, rateLimit). A document holds services, fleet-wide defaults, or both; lightmesh validate checks what a schema cannot (references between sections, regular expressions)."
	s.Properties.Set("apiVersion", &jsonschema.Schema{Const: router.APIVersion, Description: "the schema version of the document"})
	// services is not required: a defaults document holds only defaults.
	s.Required = []string{"apiVersion"}
	data, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var tree map[string]any
	if err := json.Unmarshal(data, &tree); err != nil {
		return nil, err
	}
	// The decoder takes an empty section (null) as an absent one.
	allowNull(tree)
	if err := annotate(tree); err != nil {
		return nil, err
	}
	scalarStrings(tree)
	// slowStart.window has no default: the validator requires it.
	slowStart := tree["$defs"].(map[string]any)["SlowStart"].(map[string]any)
	slowStart["required"] = []any{"window"}
	window := slowStart["properties"].(map[string]any)["window"].(map[string]any)
	window["oneOf"] = window["oneOf"].([]any)[:1] // not null
	return tree, nil
}

// field is what the schema says of one field beyond its type: what it
// means and its default (from the README's rule table), its bounds (the
// validator's), and for a list of names the names (enum).
type field struct {
	doc      string
	min, max *float64
	// exclusive makes max exclusive; positive makes the minimum
	// exclusive (rps > 0); orZero allows 0 (the default) below the
	// minimum.
	exclusive, positive, orZero bool
	// names lists the values of a string, or of the strings of a list,
	// for editors to offer; others, when set, are schemas of the other
	// values the validator reads too (other spellings, HTTP status
	// codes, other methods).
	names  []string
	others []any
}

// stringPattern is a schema of the strings matching pattern.
func stringPattern(pattern, doc string) map[string]any {
	return map[string]any{"type": "string", "pattern": pattern, "description": doc}
}

// httpStatus is an HTTP status code, as a string ("503") or a number.
var httpStatus = []any{
	stringPattern("^[1-5][0-9][0-9]$", "an HTTP status code"),
	map[string]any{"type": "integer", "minimum": 100, "maximum": 599, "description": "an HTTP status code"},
}

// anyCase returns a pattern of names in any case, each - in them
// standing for dash.
func anyCase(names []string, dash string) string {
	var alts []string
	for _, n := range names {
		var b strings.Builder
		for _, r := range n {
			switch {
			case r == '-':
				b.WriteString(dash)
			case unicode.IsLetter(r):
				fmt.Fprintf(&b, "[%c%c]", unicode.ToLower(r), unicode.ToUpper(r))
			default:
				b.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
		alts = append(alts, b.String())
	}
	return "^(" + strings.Join(alts, "|") + ")$"
}

// codeSpellings are the gRPC code names in any case, with -, _ or
// nothing between words, as the validator reads them.
func codeSpellings() any {
	return stringPattern(anyCase(router.GRPCCodeNames(), "[-_]?"), "a gRPC code name, in any case, words joined by -, _ or nothing")
}

func bound(v float64) *float64 { return &v }

// grpcCodeSpellings returns the gRPC code names the validator reads, in
// the spellings people write: deadline-exceeded, deadline_exceeded,
// DEADLINE_EXCEEDED, DeadlineExceeded.
func grpcCodeSpellings(names []string) []string {
	var out []string
	for _, n := range names {
		snake := strings.ReplaceAll(n, "-", "_")
		camel := ""
		for _, part := range strings.Split(n, "-") {
			camel += strings.ToUpper(part[:1]) + part[1:]
		}
		out = append(out, n)
		if snake != n {
			out = append(out, snake)
		}
		out = append(out, strings.ToUpper(snake), camel)
	}
	return out
}

// fields describes the fields of the document, by definition and JSON
// name. Every field of the schema must be here (TestSchemaDescribesEveryField).
func fields() map[string]field {
	ratio := func(doc string) field { return field{doc: doc, min: bound(0), max: bound(1)} }
	timeoutOff := ` Write off (or 0s) for none: it then overrides a default.`
	return map[string]field{
		"#.defaults": {doc: "fleet-wide settings that every service without a setting of its own takes, setting by setting, including services no rule names"},
		"#.services": {doc: "the rules of each service, by the logical name clients call (http://user-api/..., lightmesh:///user-api)"},

		"Defaults.timeout":          {doc: "bound on the whole call (unary for gRPC), retries included, for services that set none." + timeoutOff},
		"Defaults.retry":            {doc: "retries for services that set none; a service opts out with retry: {attempts: 0}"},
		"Defaults.breaker":          {doc: "circuit breaker for services that set none"},
		"Defaults.outlierDetection": {doc: "breaker per instance for services that set none"},
		"Defaults.rateLimit":        {doc: "client-side token bucket for services that set none"},
		"Defaults.lanes":            {doc: "dynamic lanes for services that set none: every value of one instance label is a lane, no rule edit when one appears"},
		"Defaults.loadBalancer":     {doc: "load balancer for services that set none (round-robin, p2c-ewma, least-request)", names: []string{"round-robin", "p2c-ewma", "least-request"}},
		"Defaults.slowStart":        {doc: "slow start for services that set none"},
		"Defaults.inboundShedding":  {doc: "inbound shedding for every local service that sets none"},

		"Service.subsets":              {doc: "groups of the service's instances, by name, selected by their labels"},
		"Service.routes":               {doc: "tried in order; the first whose match accepts the request wins. Default: every instance, round-robin"},
		"Service.timeout":              {doc: "bound on the whole call (unary for gRPC), retries included; a route's own timeout replaces it. Default: none, or the defaults' timeout." + timeoutOff},
		"Service.retry":                {doc: "retries of failed calls; a route's own retry replaces it. Default: no retries"},
		"Service.breaker":              {doc: "circuit breaker over all calls to the service. Default: none"},
		"Service.outlierDetection":     {doc: "a breaker per instance: an open instance is skipped by the balancer (ejected). Default: no ejection"},
		"Service.rateLimit":            {doc: "token bucket on the calls this process sends to the service; over it, ErrRateLimited without sending. Default: no limit"},
		"Service.slowStart":            {doc: "ramps the share of calls an instance gets after it joins the service's instances (not those found at start) or its outlierDetection breaker closes again, as Envoy's slow_start_config: its weight grows linearly from minPercent to 100% over window. Default: none, full share at once"},
		"Service.loadBalancer":         {doc: "how a call's instance is chosen within its subset, always by discovery weight: round-robin; p2c-ewma, the better of two random instances by latency EWMA (time-weighted, 600ms time constant) × (in-flight calls + 1), an instance not picked for 1s taken once to learn it recovered; least-request, the better of two by in-flight calls. Default: round-robin", names: []string{"round-robin", "p2c-ewma", "least-request"}},
		"SlowStart.window":             {doc: "how long the ramp lasts (required)"},
		"SlowStart.minPercent":         {doc: "share of its weight an instance starts with. Default: 10", min: bound(1), max: bound(100)},
		"Service.inbound":              {doc: "server-side limits on the requests the service receives (mesh.Handler, gRPC server interceptors)"},
		"Service.inboundShedding":      {doc: "sheds the requests the service receives as a mesh's local service (mesh.Handler, gRPC server interceptors) beyond a concurrency limit that follows its measured latency: 429 with Retry-After, or RESOURCE_EXHAUSTED with grpc-retry-pushback-ms. Never shed: health checks (/healthz, /readyz, /livez, /health, /ready, /live, grpc.health.v1.Health), /metrics, paths under /debug/pprof/ and /lightmesh/. Default: off"},
		"InboundShedding.mode":         {doc: "adaptive: a concurrency limit recomputed every window from the latency of the requests served; off: no shedding", names: []string{"adaptive", "off"}},
		"InboundShedding.tolerance":    {doc: "how many times its no-load latency the average latency may reach before the limit comes down (to limit × tolerance × no-load / average). Default: 1.5", min: bound(1.1), max: bound(10)},
		"InboundShedding.initialLimit": {doc: "the limit before any latency is measured. Default: 100", min: bound(1), max: bound(1000000)},
		"InboundShedding.minLimit":     {doc: "the limit never goes below it. Default: 4", min: bound(1), max: bound(1000000)},
		"InboundShedding.maxLimit":     {doc: "the limit never goes above it. Default: 10000", min: bound(1), max: bound(1000000)},
		"InboundShedding.window":       {doc: "how often the limit is recomputed (with at least 10 requests finished). Default: 100ms (10ms..1m)"},
		"Service.lanes":                {doc: "dynamic lanes: a call carrying lane V goes to the instances labelled V, else where the routes send it (base); lane instances get no other traffic. Default: none, or the defaults' lanes"},

		"Lanes.label":  {doc: "the instance label whose value names an instance's lane (env: env=feat-123 serves lane feat-123)"},
		"Lanes.header": {doc: "the request header, gRPC metadata key and lane key carrying the call's lane value. Default: x-env"},
		"Lanes.entry":  {doc: "rules that put calls entering this service (the edge) into a lane, tried in order; a call already carrying a lane keeps it. They apply with WithoutInboundLanes too"},

		"LaneEntry.header":  {doc: "request header (or gRPC metadata key) to read"},
		"LaneEntry.cookie":  {doc: "HTTP cookie to read"},
		"LaneEntry.query":   {doc: "URL query parameter to read"},
		"LaneEntry.percent": {doc: "makes the value read a key (a user id): this share of keys, by a stable hash, goes into lane, the same key always on the same side", min: bound(0), max: bound(100), positive: true},
		"LaneEntry.lane":    {doc: "the lane a percent entry puts its share into; only with percent (without it, the value read is the lane)"},
		"Lanes.base":        {doc: "the base instances, serving calls without a lane or whose lane has no instance here. Default: the instances without the label"},

		"Subset.labels": {doc: "instances whose labels include all of these; empty: every instance"},

		"Route.name":         {doc: "names the route in metrics, traces and errors; unique within the service. Default: routes[i]"},
		"Route.match":        {doc: "the conditions a request must all meet; none: every request"},
		"Route.destinations": {doc: "the subsets the route sends to, split by weight"},
		"Route.fallback":     {doc: "subset used when the chosen one has no available instance (none healthy, all ejected, or for gRPC no connection that can be made). Default: none, the call fails with ErrNoInstance"},
		"Route.timeout":      {doc: "replaces the service's timeout for this route." + timeoutOff},
		"Route.retry":        {doc: "replaces the service's retry for this route"},
		"Route.rateLimit":    {doc: "replaces the service's rate limit for this route"},

		"Destination.subset": {doc: "the subset's name"},
		"Destination.weight": {doc: "share of the route's traffic; set on every destination or on none. Default: equal split", min: bound(0), max: bound(router.MaxWeight)},

		"Match.headers": {doc: "header name (case-insensitive) → condition on its first value"},
		"Match.path":    {doc: "condition on the URL path; for gRPC the full method, /pkg.Service/Method"},
		"Match.methods": {doc: "accepted HTTP methods (gRPC calls are POST)", names: []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"},
			// The validator reads any method HTTP can carry (PURGE,
			// PROPFIND), in any case: it upper-cases them.
			others: []any{stringPattern("^[-!#$%&'*+.^_`|~0-9A-Za-z]{1,256}$", "another method, as HTTP writes it (upper-cased when compiled)")}},

		"StringMatch.exact":   {doc: "the whole value; \"\" matches a header present with an empty value"},
		"StringMatch.prefix":  {doc: "values starting with it"},
		"StringMatch.regex":   {doc: "RE2 expression matching the whole value (anchored)"},
		"StringMatch.present": {doc: "true: the header is there, with any value; false: it is absent. Headers only"},

		"Retry.attempts":      {doc: "retries after the first try; a retry goes to another instance when there is one", min: bound(0), max: bound(router.MaxRetryAttempts)},
		"Retry.perTryTimeout": {doc: "bound on each try. Default (or off): the call's timeout"},
		"Retry.budget":        ratio("retries may add at most this fraction of calls (plus a reserve of 10). Default: 0.2"),
		"Retry.on": {doc: "conditions that trigger a retry: connect-failure, reset, per-try-timeout, 5xx, an HTTP status code (\"503\"), a gRPC code name. Default: connect-failure, reset, per-try-timeout, 502, 503, 504 and, for gRPC, unavailable. Quote the key (\"on\":) for YAML 1.1 tools, which read on as a boolean",
			names:  append([]string{"connect-failure", "reset", "per-try-timeout", "5xx"}, grpcCodeSpellings(router.GRPCCodeNames())...),
			others: append([]any{codeSpellings(), stringPattern(anyCase([]string{"connect-failure", "reset", "per-try-timeout", "5xx"}, "-"), "a condition, in any case")}, httpStatus...)},
		"Retry.backoff":       {doc: "first wait between tries; doubles each time, ±50% jitter, at most 10×. Default: 25ms"},
		"Retry.nonIdempotent": {doc: "also retry POST and PATCH (bodies are replayed). Default: false"},

		"Breaker.mode":               {doc: "off: no breaker (turns off one the defaults or the built-in defaults give). window: trip when the failure (or slow-call) ratio of the window reaches a threshold, stay open, then probe. adaptive: Google SRE client-side throttling, no thresholds: refuse each call with probability max(0, (requests − k·accepts) / (requests + 1)) over the window; refused calls count as neither. adaptive uses window, buckets, slowCallThreshold and k only, and applies to breaker, not outlierDetection. Default: window (for a service no rule names: adaptive, the built-in default)", names: []string{"window", "adaptive", "off"}},
		"Breaker.k":                  {doc: "mode adaptive: the multiplier of accepts in the SRE formula; refusing starts when more than 1 − 1/k of the calls fail. Default: 1.5", min: bound(1)},
		"Breaker.window":             {doc: "the rolling window calls are counted over. Default: 10s"},
		"Breaker.buckets":            {doc: "buckets of the window; counts expire one bucket at a time. Default: 10", min: bound(0), max: bound(breaker.MaxBuckets)},
		"Breaker.minRequests":        {doc: "completed calls the window must hold before the breaker may trip. Default: 20", min: bound(0), max: bound(1 << 20)},
		"Breaker.failureRatio":       ratio("trips when failures/completed calls reaches it. Default: 0.5"),
		"Breaker.slowCallThreshold":  {doc: "a call lasting this long is slow. Default: slow calls are not counted"},
		"Breaker.slowCallRatio":      ratio("trips when slow calls/completed calls reaches it. Default: 1"),
		"Breaker.openBase":           {doc: "open period after the first trip. Default: 1s"},
		"Breaker.openMax":            {doc: "cap of the open period. Default: 60s"},
		"Breaker.multiplier":         {doc: "growth of the open period on each consecutive trip (1 or more). Default: 2", min: bound(1), orZero: true},
		"Breaker.jitter":             {doc: "spread of open periods, ± this fraction. Default: 0", min: bound(0), max: bound(1), exclusive: true},
		"Breaker.halfOpenProbes":     {doc: "calls admitted at once after an open period; that many successes close it. Default: 3", min: bound(0), max: bound(1000)},
		"Breaker.maxEjectionPercent": {doc: "outlierDetection only: at most this share of the service's instances is ejected at once (at least one); the instances whose breakers opened beyond it keep taking calls, so a route is never left without instances by its own ejections. Default: 50", min: bound(1), max: bound(100)},
		"Breaker.failureStatus":      {doc: "HTTP status codes that count as failures; transport errors and the mesh's timeouts always do. Default: every 5xx", min: bound(100), max: bound(599)},
		"Breaker.failureCodes":       {doc: "gRPC codes that count as failures. Default: unavailable, deadline-exceeded, internal, unknown (not resource-exhausted: a shedding or rate-limited server's answer, as HTTP 429 is no 5xx)", names: grpcCodeSpellings(router.GRPCCodeNames()), others: []any{codeSpellings()}},

		"RateLimit.rps":   {doc: "tokens a second", min: bound(0), positive: true},
		"RateLimit.burst": {doc: "tokens at once. Default: rps (at least 1)", min: bound(0)},

		"InboundRoute.name":      {doc: "names the inbound route in metrics and errors. Default: inbound[i]"},
		"InboundRoute.match":     {doc: "the requests the limit applies to; none: every request"},
		"InboundRoute.rateLimit": {doc: "token bucket; over it: 429 with Retry-After, or ResourceExhausted"},

		"Service.authorization":     {doc: "which callers, by SPIFFE ID, may call what on the service (enforced by package identity: 403 or PermissionDenied with the reason). Default: every caller may"},
		"Service.serverID":          {doc: "the SPIFFE ID the service's servers present (spiffe://domain/path); set, calls to it use mutual TLS with the mesh's identity (mesh.WithIdentity) and fail before any request byte when a server presents another ID. Default: calls as the URL says"},
		"Authorization.default":     {doc: "what happens to a call no rule matches: allow, or deny (default-deny). Default: allow", names: []string{"allow", "deny"}},
		"Authorization.rules":       {doc: "tried in order; the first rule matching the call decides"},
		"AuthorizationRule.action":  {doc: "allow or deny the calls the rule matches", names: []string{"allow", "deny"}},
		"AuthorizationRule.callers": {doc: "caller SPIFFE IDs, any of which matches: spiffe://domain/path exactly, spiffe://domain/prefix/* by prefix, spiffe://domain the whole trust domain, none a caller without a certificate (plaintext in permissive mode). Empty: every caller"},
		"AuthorizationRule.paths":   {doc: "URL paths or full gRPC methods (/pkg.Service/Method), any of which matches; a trailing * matches by prefix. Empty: every path"},
		"AuthorizationRule.methods": {doc: "HTTP methods, any of which matches (gRPC calls are POST; GET also matches HEAD). Empty: every method", names: []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}},
	}
}

// annotate adds to the reflected schema what fields says: descriptions,
// bounds and names. It fails on a field fields does not describe, so a
// field added to the document cannot go undocumented.
func annotate(tree map[string]any) error {
	info := fields()
	apply := func(key string, prop map[string]any) error {
		f, ok := info[key]
		if !ok {
			return fmt.Errorf("schema: field %s is not described (cmd/lightmesh/schema.go fields)", key)
		}
		delete(info, key)
		if f.doc != "" {
			prop["description"] = f.doc
		}
		// A duration the validator lets be none (router.TakesNone: the
		// timeouts) takes the pattern with off and zero.
		if alts, _ := prop["oneOf"].([]any); len(alts) > 0 && alts[0].(map[string]any)["pattern"] == durationPattern && router.TakesNone(key) {
			alts[0].(map[string]any)["pattern"] = durationOrNonePattern
		}
		// Bounds and names go on the number or string itself, or on the
		// items of a list.
		target := prop
		if items, ok := prop["items"].(map[string]any); ok {
			target = items
		}
		if f.min != nil {
			switch {
			case f.positive:
				target["exclusiveMinimum"] = *f.min
			case f.orZero:
				target["anyOf"] = []any{map[string]any{"const": 0}, map[string]any{"minimum": *f.min}}
			default:
				target["minimum"] = *f.min
			}
		}
		if f.max != nil {
			if f.exclusive {
				target["exclusiveMaximum"] = *f.max
			} else {
				target["maximum"] = *f.max
			}
		}
		if len(f.names) > 0 {
			enum := map[string]any{"enum": toAny(f.names)}
			if len(f.others) > 0 {
				delete(target, "type")
				target["anyOf"] = append([]any{map[string]any{"type": "string", "enum": toAny(f.names)}}, f.others...)
			} else {
				maps.Copy(target, enum)
			}
		}
		return nil
	}
	for _, name := range []string{"defaults", "services"} {
		if err := apply("#."+name, tree["properties"].(map[string]any)[name].(map[string]any)); err != nil {
			return err
		}
	}
	defs := tree["$defs"].(map[string]any)
	for _, def := range slices.Sorted(maps.Keys(defs)) {
		props, _ := defs[def].(map[string]any)["properties"].(map[string]any)
		for _, name := range slices.Sorted(maps.Keys(props)) {
			if err := apply(def+"."+name, props[name].(map[string]any)); err != nil {
				return err
			}
		}
	}
	if len(info) > 0 {
		return fmt.Errorf("schema: described fields the document does not have: %v", slices.Sorted(maps.Keys(info)))
	}
	return nil
}

func toAny(names []string) []any {
	out := make([]any, len(names))
	for i, n := range names {
		out[i] = n
	}
	return out
}

// scalarStrings lets every plain string of schema s (a name, a label
// value, a header value; not one with an enum or a pattern) also be
// written as a number or a boolean: the decoder reads such a scalar as
// its text (labels: {gen: 2} is "2").
func scalarStrings(s any) {
	switch s := s.(type) {
	case map[string]any:
		_, enum := s["enum"]
		_, pattern := s["pattern"]
		if s["type"] == "string" && !enum && !pattern {
			s["type"] = []any{"string", "number", "boolean"}
		}
		for _, v := range s {
			scalarStrings(v)
		}
	case []any:
		for _, v := range s {
			scalarStrings(v)
		}
	}
}

// allowNull lets every object and array in schema s also be null.
func allowNull(s any) {
	switch s := s.(type) {
	case map[string]any:
		if t, ok := s["type"].(string); ok && (t == "object" || t == "array") {
			s["type"] = []any{t, "null"}
		}
		for _, v := range s {
			allowNull(v)
		}
	case []any:
		for _, v := range s {
			allowNull(v)
		}
	}
}
