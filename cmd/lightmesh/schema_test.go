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
		if strings.Contains(m[1], "apiVersion: lightmesh/v1") {
			docs["README.md yaml block "+strconv.Itoa(i)] = m[1]
		}
	}
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs[f] = string(data)
	}
	var goFiles []string
	for _, dir := range []string{"../../examples/*/*.go", "../../router/*_test.go", "../../mesh/*_test.go", "../../meshgrpc/*_test.go", "../../internal/engine/*_test.go"} {
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
			if err == nil && strings.HasPrefix(s, "apiVersion: lightmesh/v1\nservices:") {
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
	var schemaJSON bytes.Buffer
	if code := run(t.Context(), []string{"schema"}, &schemaJSON, os.Stderr, func(string) string { return "" }); code != 0 {
		t.Fatal("schema failed")
	}
	doc, err := jsonschema.UnmarshalJSON(&schemaJSON)
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
	accepted, rejected := 0, 0
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
		case unknownField:
			rejected++
		}
	}
	if accepted < 20 || rejected < 2 {
		t.Errorf("checked %d accepted and %d unknown-field documents; want at least 20 and 2", accepted, rejected)
	}
	t.Logf("the schema agrees with router.Load on %d valid documents and %d with unknown fields", accepted, rejected)
}
