package router

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"
)

// MaxDocumentSize is the largest rule document Parse accepts (1 MiB).
const MaxDocumentSize = 1 << 20

// Parse decodes a rule document written in YAML or JSON (JSON is read as
// YAML). Decoding is strict: unknown fields, duplicate keys, several
// documents in one input and documents over MaxDocumentSize are errors.
// Parse checks syntax and field types only; Compile validates the content.
func Parse(data []byte) (*Document, error) {
	if len(data) > MaxDocumentSize {
		return nil, fmt.Errorf("router: document is %d bytes, over the %d byte limit", len(data), MaxDocumentSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("router: document is empty")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var doc Document
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("router: decode: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("router: decode: more than one document in the input")
	}
	return &doc, nil
}

// Load parses and compiles a rule document in one step.
func Load(data []byte) (*Rules, error) {
	doc, err := Parse(data)
	if err != nil {
		return nil, err
	}
	return Compile(doc)
}
