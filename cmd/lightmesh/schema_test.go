package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/lightmesh/lightmesh/router"
)

// ruleDocuments returns every rule document written in the repository:
// the README's, the files in testdata, and the string literals of the
// examples' and the tests' Go files that start one — name → text.
func ruleDocuments(t *testing.T) map[string]string {
	t.Helper()
	docs := map[string]string{}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		for j, part := range strings.Split(m[1], "\n---\n") {
			if strings.Contains(part, "apiVersion: lightmesh/v1") {
				docs["README.md yaml block "+strconv.Itoa(i)+" document "+strconv.Itoa(j)] = part
			}
		}
	}
	files, _ := filepath.Glob("testdata/*.yaml")
	perService, _ := filepath.Glob("testdata/per-service/*.yaml")
	files = append(files, perService...)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs[f] = string(data)
	}
	var goFiles []string
	for _, dir := range []string{"../../examples/*/*.go", "../../router/*_test.go", "../../mesh/*_test.go", "../../meshgrpc/*_test.go",
		"../../internal/*/*.go", "../../discovery/*/*_test.go", "../../bench/*.go", "*_test.go"} {
		m, _ := filepath.Glob(dir)
		goFiles = append(goFiles, m...)
	}
	fset := token.NewFileSet()
	for _, f := range goFiles {
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err == nil && strings.HasPrefix(s, "apiVersion: lightmesh/v1\n") {
				docs[fset.Position(lit.Pos()).String()] = s
			}
			return true
		})
	}
	if len(docs) < 30 {
		t.Fatalf("found only %d rule documents", len(docs))
	}
	return docs
}

// TestSchemaAgreesWithValidation: the generated schema accepts every
// document in the repository that router.Load accepts, and rejects every
// one that router.Load rejects for an unknown field.
func TestSchemaAgreesWithValidation(t *testing.T) {
	schema := compiledSchema(t)
	accepted, rejected, defaults := 0, 0, 0
	for name, text := range ruleDocuments(t) {
		var tree any
		if err := yaml.Unmarshal([]byte(text), &tree); err != nil {
			continue // not YAML at all: nothing for a schema to say
		}
		js, err := json.Marshal(tree)
		if err != nil {
			continue
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
		if err != nil {
			t.Fatal(err)
		}
		verr := schema.Validate(inst)
		_, lerr := router.Load([]byte(text))
		var ve *router.ValidationError
		unknownField := errors.As(lerr, &ve) && strings.Contains(lerr.Error(), "unknown field")
		switch {
		case lerr == nil && verr != nil:
			t.Errorf("%s: router.Load accepts it, the schema rejects it: %v\n%s", name, verr, text)
		case unknownField && verr == nil:
			t.Errorf("%s: router.Load rejects an unknown field, the schema accepts it:\n%s", name, text)
		case lerr == nil:
			accepted++
			if strings.Contains(text, "\ndefaults:") {
				defaults++
			}
		case unknownField:
			rejected++
		}
	}
	if defaults < 3 {
		t.Errorf("checked %d documents with defaults, want at least 3", defaults)
	}
	if accepted < 20 || rejected < 2 {
		t.Errorf("checked %d accepted and %d unknown-field documents; want at least 20 and 2", accepted, rejected)
	}
	t.Logf("the schema agrees with router.Load on %d valid documents and %d with unknown fields", accepted, rejected)
}

// compiledSchema compiles what the built lightmesh schema prints, with a
// Go JSON Schema validator.
func compiledSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	code, out, errs := binary(t, nil, "schema")
	if code != 0 {
		t.Fatalf("schema: exit %d %s", code, errs)
	}
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("lightmesh.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile("lightmesh.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return schema
}

// schemaValidates reports the schema's verdict on a YAML document.
func schemaValidates(t *testing.T, schema *jsonschema.Schema, text string) error {
	t.Helper()
	var tree any
	if err := yaml.Unmarshal([]byte(text), &tree); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(tree)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	return schema.Validate(inst)
}

// TestSchemaRejectsWhatValidationRejects: documents the validator
// rejects for a bound, a name or a unit fail the schema too, so an editor
// marks them as they are typed; a defaults document alone is valid.
func TestSchemaRejectsWhatValidationRejects(t *testing.T) {
	schema := compiledSchema(t)
	const head = "apiVersion: lightmesh/v1\nservices:\n  user-api:\n"
	for _, doc := range []string{
		head + "    breaker: {failureRatio: 1.5}\n",
		head + "    outlierDetection: {jitter: 1}\n",
		head + "    retry: {attempts: 50}\n",
		head + "    retry: {attempts: 1, budget: 2}\n",
		head + "    retry: {attempts: 1, \"on\": [5xxx]}\n",
		head + "    retry: {attempts: 1, \"on\": [\"700\"]}\n",
		head + "    timeout: 2\n",
		head + "    timeout: 2 s\n",
		head + "    rateLimit: {rps: 0}\n",
		head + "    breaker: {failureStatus: [99]}\n",
		head + "    breaker: {failureCodes: [ok]}\n",
		head + "    breaker: {failureRatio: \"50%\"}\n",
		head + "    subsets: {a: {labels: {}}}\n    routes: [{destinations: [{subset: a, weight: -1}]}]\n",
		head + "    colour: red\n",
		head + "    breaker: {multiplier: 0.5}\n",
		// A zero duration means none, which only the timeouts take.
		head + "    breaker: {openBase: 0s}\n",
		head + "    breaker: {openMax: off}\n",
		head + "    outlierDetection: {window: 0h0m0.000s}\n",
		head + "    retry: {attempts: 1, backoff: 0}\n",
		head + "    slowStart: {window: .0ms}\n",
		head + "    breaker: {openBase: \"0\"}\n",
		head + "    timeout: -1s\n",
		head + "    slowStart: {}\n",
		head + "    slowStart: {minPercent: 20}\n",
		head + "    slowStart: {window: }\n",
		head + "    retry: {attempts: 1, \"on\": [700]}\n",
		head + "    retry: {attempts: 1, \"on\": [unavailabel]}\n",
		head + "    breaker: {failureCodes: [unavailabel]}\n",
		head + "    subsets: {a: {labels: {}}}\n    routes: [{match: {methods: [\"GE T\"]}, destinations: [{subset: a}]}]\n",
		"apiVersion: lightmesh/v2\n",
		"services: {}\n",
	} {
		if _, err := router.Load([]byte(doc)); err == nil {
			t.Errorf("router.Load accepts a fixture meant to be invalid:\n%s", doc)
		}
		if err := schemaValidates(t, schema, doc); err == nil {
			t.Errorf("the validator rejects it, the schema accepts it:\n%s", doc)
		}
	}
	for _, doc := range []string{
		"apiVersion: lightmesh/v1\ndefaults: {timeout: 2s, retry: {attempts: 2}}\n",
		head + "    breaker: {multiplier: 0}\n    outlierDetection: {multiplier: 1.5}\n",
		head + "    subsets: {v2: {labels: {gen: 2, canary: true}}}\n    routes: [{match: {headers: {x-gen: {exact: 2}}}, destinations: [{subset: v2}]}]\n",
		head + "    retry: {attempts: 1, \"on\": [503, 5XX, Reset, DEADLINE-EXCEEDED, deadlineexceeded]}\n    breaker: {failureCodes: [Deadline-Exceeded, UNAVAILABLE]}\n",
		head + "    subsets: {a: {labels: {}}}\n    routes: [{match: {methods: [get, PURGE, POST]}, destinations: [{subset: a}]}]\n",
		head + "    timeout: off\n    retry: {attempts: 1, perTryTimeout: 0s, \"on\": [\"503\", unavailable, DEADLINE_EXCEEDED, ResourceExhausted, 5xx]}\n",
		"apiVersion: lightmesh/v1\ndefaults: {timeout: 0ms, retry: {attempts: 1, perTryTimeout: off}}\n",
		head + "    subsets: {a: {labels: {}}}\n    routes: [{timeout: \"0\", retry: {attempts: 1, perTryTimeout: 0.0s}, destinations: [{subset: a}]}]\n",
		head + "    breaker: {openBase: 0.5s, openMax: 0h1m30s, window: 00.010s, slowCallThreshold: .5s}\n    retry: {attempts: 1, backoff: 0s5ms}\n    slowStart: {window: 1m}\n",
		head + "    timeout: -0s\n    breaker: {openBase: +1s}\n    retry: {attempts: 1, perTryTimeout: \"-0\"}\n",
		head + "    subsets: {a: {labels: {}}}\n    routes: [{timeout: +0s, retry: {attempts: 1, perTryTimeout: +2s}, destinations: [{subset: a}]}]\n",
	} {
		if _, err := router.Load([]byte(doc)); err != nil {
			t.Fatalf("router.Load rejects a fixture meant to be valid: %v\n%s", err, doc)
		}
		if err := schemaValidates(t, schema, doc); err != nil {
			t.Errorf("the validator accepts it, the schema rejects it: %v\n%s", err, doc)
		}
	}
}

// TestSchemaDescribesEveryField: every field has a description, the
// named values of retry.on are offered to editors, and the bounds are
// the validator's.
func TestSchemaDescribesEveryField(t *testing.T) {
	code, out, _ := binary(t, nil, "schema")
	if code != 0 {
		t.Fatal("schema failed")
	}
	var tree map[string]any
	if err := json.Unmarshal([]byte(out), &tree); err != nil {
		t.Fatal(err)
	}
	if id := tree["$id"]; id != "urn:lightmesh:rule-document:lightmesh/v1" {
		t.Errorf("$id %v", id)
	}
	defs := tree["$defs"].(map[string]any)
	n := 0
	for def, d := range defs {
		for name, p := range d.(map[string]any)["properties"].(map[string]any) {
			n++
			if desc, _ := p.(map[string]any)["description"].(string); desc == "" {
				t.Errorf("%s.%s has no description", def, name)
			}
		}
	}
	if n < 40 {
		t.Errorf("only %d fields", n)
	}
	attempts := defs["Retry"].(map[string]any)["properties"].(map[string]any)["attempts"].(map[string]any)
	if attempts["maximum"] != float64(router.MaxRetryAttempts) {
		t.Errorf("retry.attempts: %v", attempts)
	}
	if !strings.Contains(out, `"per-try-timeout"`) || !strings.Contains(out, `"resource-exhausted"`) {
		t.Error("retry.on names are not offered")
	}
}
