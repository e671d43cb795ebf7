package router

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxDocumentSize is the largest rule document Parse accepts (1 MiB).
const MaxDocumentSize = 1 << 20

// Parse decodes a rule document written in YAML or JSON (JSON is read as
// YAML). Decoding is strict: unknown fields, duplicate keys, several
// documents in one input and documents over MaxDocumentSize are errors.
// Integer fields written with a fraction or exponent (10.5, 1e3) and null
// list items are errors too, and JSON's \/ and surrogate-pair escapes,
// which YAML lacks, are read as JSON means them. Parse checks syntax and
// field types only; Compile validates the content.
func Parse(data []byte) (*Document, error) {
	if len(data) > MaxDocumentSize {
		return nil, fmt.Errorf("router: document is %d bytes, over the %d byte limit", len(data), MaxDocumentSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("router: document is empty")
	}
	data = yamlSafeJSON(data)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var doc Document
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // only comments or directives
			return nil, errors.New("router: document is empty")
		}
		return nil, fmt.Errorf("router: decode: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("router: decode: more than one document in the input")
	}
	if err := checkShape(data); err != nil {
		return nil, err
	}
	return &doc, nil
}

// checkShape rejects what the strict decoder lets through without a word:
// a number with a fraction or exponent in an integer field (10.5 would be
// stored as 10) and null items in lists (they would be dropped, shifting
// the indexes later errors name; an emptied methods list would match every
// method). It walks the document's nodes beside the Go types they decode
// into, so new fields are covered as they are added.
func checkShape(data []byte) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return fmt.Errorf("router: decode: %w", err)
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 {
		return nil
	}
	w := shapeWalker{seen: make(map[shapeKey]bool)}
	if fe := w.walk(root.Content[0], reflect.TypeFor[Document](), ""); fe != nil {
		return fmt.Errorf("router: invalid document: %w", fe)
	}
	return nil
}

type shapeKey struct {
	n *yaml.Node
	t reflect.Type
}

type shapeWalker struct {
	seen map[shapeKey]bool // aliased nodes are walked once per type
}

func (w *shapeWalker) walk(n *yaml.Node, t reflect.Type, path string) *FieldError {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if isNull(n) {
		return nil
	}
	k := shapeKey{n, t}
	if w.seen[k] {
		return nil
	}
	w.seen[k] = true
	if reflect.PointerTo(t).Implements(reflect.TypeFor[yaml.Unmarshaler]()) {
		return nil // the type checks its own node
	}
	join := func(key string) string {
		if path == "" {
			return key
		}
		return path + "." + key
	}
	switch t.Kind() {
	case reflect.Pointer:
		return w.walk(n, t.Elem(), path)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			return &FieldError{Path: path, Reason: fmt.Sprintf("must be an integer, not %.20q", n.Value)}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return nil
		}
		for i, item := range n.Content {
			ip := fmt.Sprintf("%s[%d]", path, i)
			if isNull(resolveAlias(item)) {
				return &FieldError{Path: ip, Reason: "must not be null"}
			}
			if fe := w.walk(item, t.Elem(), ip); fe != nil {
				return fe
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if fe := w.walk(n.Content[i+1], t.Elem(), join(n.Content[i].Value)); fe != nil {
				return fe
			}
		}
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, value := n.Content[i], n.Content[i+1]
			if key.Value == "<<" && key.ShortTag() == "!!merge" {
				// A merge key: its mapping (or list of mappings) adds
				// fields to this one.
				v := resolveAlias(value)
				items := []*yaml.Node{v}
				if v.Kind == yaml.SequenceNode {
					items = v.Content
				}
				for _, m := range items {
					if fe := w.walk(m, t, path); fe != nil {
						return fe
					}
				}
				continue
			}
			if f, ok := yamlField(t, key.Value); ok {
				if fe := w.walk(value, f.Type, join(key.Value)); fe != nil {
					return fe
				}
			}
		}
	}
	return nil
}

// yamlField returns the field of struct type t that YAML key names.
func yamlField(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if name == key && f.IsExported() {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// yamlSafeJSON returns data unchanged unless it is JSON with string escapes
// that YAML lacks or reads differently (\/ and UTF-16 surrogate pairs); it
// then rewrites every string holding a backslash with Go escapes, all of
// which YAML shares.
func yamlSafeJSON(data []byte) []byte {
	if !bytes.Contains(data, []byte{'\\'}) || !json.Valid(data) {
		return data
	}
	out := make([]byte, 0, len(data))
	for i := 0; i < len(data); i++ {
		if data[i] != '"' {
			out = append(out, data[i])
			continue
		}
		// A string token: find its closing quote (data is valid JSON, so
		// every backslash is followed by the escaped byte).
		end, escaped := i+1, false
		for data[end] != '"' {
			if data[end] == '\\' {
				end++
				escaped = true
			}
			end++
		}
		tok := data[i : end+1]
		var s string
		if escaped && json.Unmarshal(tok, &s) == nil {
			out = strconv.AppendQuote(out, s)
		} else {
			out = append(out, tok...)
		}
		i = end
	}
	return out
}

// Load parses and compiles a rule document in one step.
func Load(data []byte) (*Rules, error) {
	doc, err := Parse(data)
	if err != nil {
		return nil, err
	}
	return Compile(doc)
}
