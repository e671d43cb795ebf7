package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

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

// durationPattern matches what time.ParseDuration reads: "250ms", "1m30s",
// "0".
const durationPattern = `^\s*(off|0|([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))*)\s*$`

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
				return &jsonschema.Schema{OneOf: []*jsonschema.Schema{{Type: "string", Pattern: durationPattern}, {Type: "null"}},
					Description: `a Go duration: "250ms", "2s", "1m30s"; "off" (or "0s") for none, where a default would apply`}
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
	return tree, nil
}

// field is what the schema says of one field beyond its type: what it
// means and its default (from the README's rule table), its bounds (the
// validator's), and for a list of names the names (enum).
type field struct {
	doc      string
	min, max *float64
	// exclusive makes max exclusive; positive makes the minimum
	// exclusive (rps > 0).
	exclusive, positive bool
	// names lists the values of a string, or of the strings of a list;
	// codes adds HTTP status codes to them.
	names []string
	codes bool
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

		"Service.subsets":          {doc: "groups of the service's instances, by name, selected by their labels"},
		"Service.routes":           {doc: "tried in order; the first whose match accepts the request wins. Default: every instance, round-robin"},
		"Service.timeout":          {doc: "bound on the whole call (unary for gRPC), retries included; a route's own timeout replaces it. Default: none, or the defaults' timeout." + timeoutOff},
		"Service.retry":            {doc: "retries of failed calls; a route's own retry replaces it. Default: no retries"},
		"Service.breaker":          {doc: "circuit breaker over all calls to the service. Default: none"},
		"Service.outlierDetection": {doc: "a breaker per instance: an open instance is skipped by the balancer (ejected). Default: no ejection"},
		"Service.rateLimit":        {doc: "token bucket on the calls this process sends to the service; over it, ErrRateLimited without sending. Default: no limit"},
		"Service.inbound":          {doc: "server-side limits on the requests the service receives (mesh.Handler, gRPC server interceptors)"},

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
		"Match.methods": {doc: "accepted HTTP methods (gRPC calls are POST)", names: []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}},

		"StringMatch.exact":   {doc: "the whole value; \"\" matches a header present with an empty value"},
		"StringMatch.prefix":  {doc: "values starting with it"},
		"StringMatch.regex":   {doc: "RE2 expression matching the whole value (anchored)"},
		"StringMatch.present": {doc: "true: the header is there, with any value; false: it is absent. Headers only"},

		"Retry.attempts":      {doc: "retries after the first try; a retry goes to another instance when there is one", min: bound(0), max: bound(router.MaxRetryAttempts)},
		"Retry.perTryTimeout": {doc: "bound on each try. Default (or off): the call's timeout"},
		"Retry.budget":        ratio("retries may add at most this fraction of calls (plus a reserve of 10). Default: 0.2"),
		"Retry.on": {doc: "conditions that trigger a retry: connect-failure, reset, per-try-timeout, 5xx, an HTTP status code (\"503\"), a gRPC code name. Default: connect-failure, reset, per-try-timeout, 502, 503, 504 and, for gRPC, unavailable. Quote the key (\"on\":) for YAML 1.1 tools, which read on as a boolean",
			names: append([]string{"connect-failure", "reset", "per-try-timeout", "5xx"}, grpcCodeSpellings(router.GRPCCodeNames())...), codes: true},
		"Retry.backoff":       {doc: "first wait between tries; doubles each time, ±50% jitter, at most 10×. Default: 25ms"},
		"Retry.nonIdempotent": {doc: "also retry POST and PATCH (bodies are replayed). Default: false"},

		"Breaker.window":            {doc: "the rolling window calls are counted over. Default: 10s"},
		"Breaker.buckets":           {doc: "buckets of the window; counts expire one bucket at a time. Default: 10", min: bound(0), max: bound(breaker.MaxBuckets)},
		"Breaker.minRequests":       {doc: "completed calls the window must hold before the breaker may trip. Default: 20", min: bound(0), max: bound(1 << 20)},
		"Breaker.failureRatio":      ratio("trips when failures/completed calls reaches it. Default: 0.5"),
		"Breaker.slowCallThreshold": {doc: "a call lasting this long is slow. Default: slow calls are not counted"},
		"Breaker.slowCallRatio":     ratio("trips when slow calls/completed calls reaches it. Default: 1"),
		"Breaker.openBase":          {doc: "open period after the first trip. Default: 1s"},
		"Breaker.openMax":           {doc: "cap of the open period. Default: 60s"},
		"Breaker.multiplier":        {doc: "growth of the open period on each consecutive trip (1 or more). Default: 2", min: bound(0)},
		"Breaker.jitter":            {doc: "spread of open periods, ± this fraction. Default: 0", min: bound(0), max: bound(1), exclusive: true},
		"Breaker.halfOpenProbes":    {doc: "calls admitted at once after an open period; that many successes close it. Default: 3", min: bound(0), max: bound(1000)},
		"Breaker.failureStatus":     {doc: "HTTP status codes that count as failures; transport errors and the mesh's timeouts always do. Default: every 5xx", min: bound(100), max: bound(599)},
		"Breaker.failureCodes":      {doc: "gRPC codes that count as failures. Default: unavailable, deadline-exceeded, resource-exhausted, internal, unknown", names: grpcCodeSpellings(router.GRPCCodeNames())},

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
		"AuthorizationRule.methods": {doc: "HTTP methods, any of which matches (gRPC calls are POST). Empty: every method", names: []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}},
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
		// Bounds and names go on the number or string itself, or on the
		// items of a list.
		target := prop
		if items, ok := prop["items"].(map[string]any); ok {
			target = items
		}
		if f.min != nil {
			if f.positive {
				target["exclusiveMinimum"] = *f.min
			} else {
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
			if f.codes {
				delete(target, "type")
				target["anyOf"] = []any{
					map[string]any{"type": "string", "enum": toAny(f.names)},
					map[string]any{"type": "string", "pattern": "^[1-5][0-9][0-9]$", "description": "an HTTP status code"},
				}
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
