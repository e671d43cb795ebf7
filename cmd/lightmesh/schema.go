package main

import (
	"context"
	"encoding/json"
	"reflect"

	"github.com/invopop/jsonschema"

	"github.com/lightmesh/lightmesh/router"
)

// schemaID is where editors find the schema once it is published;
// `lightmesh schema > lightmesh.schema.json` works offline.
const schemaID = "https://github.com/lightmesh/lightmesh/raw/main/cmd/lightmesh/lightmesh.schema.json"

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
	s.Properties.Set("apiVersion", &jsonschema.Schema{Const: router.APIVersion})
	s.Required = []string{"apiVersion", "services"}
	// The decoder takes an empty section (null) as an absent one.
	data, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var tree map[string]any
	if err := json.Unmarshal(data, &tree); err != nil {
		return nil, err
	}
	allowNull(tree)
	return tree, nil
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
