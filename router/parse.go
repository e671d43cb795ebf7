package router

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/lightmesh/lightmesh/internal/textdist"
)

// MaxDocumentSize is the largest rule document Parse accepts (1 MiB).
const MaxDocumentSize = 1 << 20

// Load parses, validates and compiles a rule document in one step: the
// entry point that accepts exactly the documents a mesh accepts. On error
// nothing is compiled and the error is a *ValidationError listing every
// problem found, each with its document path and line, or a syntax error
// naming its line.
func Load(data []byte) (*Rules, error) { return load(data, nil) }

// load is Load with check, when not nil, run on the decoded document
// before it is compiled, adding its problems to the compiler's.
func load(data []byte, check func(doc *Document, c *compiler)) (*Rules, error) {
	doc, pos, err := parse(data)
	if err != nil {
		return nil, err
	}
	c := newCompiler(pos)
	c.shape(pos.problems)
	if pos.incomplete {
		return nil, c.err()
	}
	if check != nil {
		check(doc, c)
	}
	rules := c.compile(doc)
	if err := c.err(); err != nil {
		return nil, err
	}
	return rules, nil
}

// LoadPart is Load for one document of a per-service layout, where each
// service's rules live in a document of their own: the document for
// service must describe that service only and hold no defaults, and the
// defaults document (service "") must hold defaults only. A document that
// names another service, or none, is an error naming the place.
func LoadPart(service string, data []byte) (*Rules, error) {
	return load(data, func(doc *Document, c *compiler) {
		if service == "" {
			for _, name := range slices.Sorted(maps.Keys(doc.Services)) {
				c.fail("services."+name, "the defaults document holds defaults only; put the rules of %s in its own document", quote(name))
			}
			return
		}
		if doc.Defaults != nil {
			c.fail("defaults", "the document of %s holds its rules only; fleet-wide defaults go in the defaults document", quote(service))
		}
		if _, ok := doc.Services[service]; !ok {
			c.fail("services", "must describe %s, the service this document is for", quote(service))
		}
		for _, name := range slices.Sorted(maps.Keys(doc.Services)) {
			if name != service {
				c.fail("services."+name, "the document of %s may describe only %s; put the rules of %s in its own document", quote(service), quote(service), quote(name))
			}
		}
	})
}

// Parse decodes a rule document written in YAML or JSON (JSON is read as
// YAML) and checks its shape: unknown fields (with a suggestion when one is
// close), duplicate keys, values of the wrong kind, integers written with a
// fraction or exponent, null list items and malformed durations are
// reported with their document path and line, all in one *ValidationError.
// Several documents in one input and documents over MaxDocumentSize are
// errors too, and JSON's \/ and surrogate-pair escapes, which YAML lacks,
// are read as JSON means them. Parse does not validate the content; Compile
// (or Load, which does both) does.
func Parse(data []byte) (*Document, error) {
	doc, pos, err := parse(data)
	if err != nil {
		return nil, err
	}
	if len(pos.problems) > 0 {
		c := newCompiler(pos)
		c.shape(pos.problems)
		return nil, c.err()
	}
	return doc, nil
}

// parse decodes data into a Document and a map of the positions of its
// parts, with the shape problems found on the way. err is a syntax error:
// then nothing else is returned.
func parse(data []byte) (*Document, *positions, error) {
	if len(data) > MaxDocumentSize {
		return nil, nil, fmt.Errorf("router: document is %d bytes, over the %d byte limit", len(data), MaxDocumentSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil, errors.New("router: document is empty")
	}
	if err := checkUTF8(data); err != nil {
		return nil, nil, err
	}
	data = yamlSafeJSON(data)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) { // only comments or directives
			return nil, nil, errors.New("router: document is empty")
		}
		return nil, nil, fmt.Errorf("router: decode: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, nil, errors.New("router: decode: more than one document in the input")
	}
	pos := &positions{at: make(map[string]position)}
	var doc Document
	body := &root
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		body = root.Content[0]
	}
	w := shapeWalker{seen: make(map[shapeKey]bool), pos: pos, drop: make(map[*yaml.Node]bool)}
	w.walk(body, reflect.TypeFor[Document](), "")
	if pos.undecodable {
		return &doc, pos, nil
	}
	// The values with a shape problem are left out of the decoding, so
	// that the rest of the document decodes whole and its content is
	// checked in the same pass: one pass reports every problem.
	w.prune(body, make(map[*yaml.Node]bool))
	if err := body.Decode(&doc); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			if len(pos.problems) > 0 {
				pos.incomplete = true
				return &doc, pos, nil
			}
			return nil, nil, fmt.Errorf("router: decode: %w", err) // aliasing limits and the like
		}
		if len(pos.problems) == 0 {
			// A type problem the walker does not know: report yaml's words.
			for _, msg := range te.Errors {
				pos.problems = append(pos.problems, &FieldError{Reason: msg})
			}
		}
		// The decoded document is incomplete: validating its content
		// would report what is only missing from the decoding.
		pos.incomplete = true
	}
	return &doc, pos, nil
}

// maxMappingKeys caps the keys of every mapping but services (capped at
// MaxServices): the YAML decoder compares each key of a mapping with every
// other, so 100,000 keys would take minutes. No mapping the document holds
// needs more (MaxSubsets is the largest other limit).
const maxMappingKeys = 1000

// maxKeyLen is the longest mapping key Parse reads: no name the document
// holds (service, subset, label key, header) may be longer.
const maxKeyLen = 256

// binaryTag is YAML's tag for base64 data, which decodes into a Go string
// as raw bytes, valid UTF-8 or not.
const binaryTag = "!!binary"

// checkUTF8 reports the first byte of data that is not UTF-8, by line and
// column. A document starting with a UTF-16 byte order mark is left to the
// YAML decoder, which reads UTF-16.
func checkUTF8(data []byte) error {
	if utf8.Valid(data) || bytes.HasPrefix(data, []byte{0xfe, 0xff}) || bytes.HasPrefix(data, []byte{0xff, 0xfe}) {
		return nil
	}
	line, start := 1, 0
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			return fmt.Errorf("router: document is not UTF-8: byte 0x%02x at line %d, column %d", data[i], line, utf8.RuneCount(data[start:i])+1)
		}
		if r == '\n' {
			line, start = line+1, i+size
		}
		i += size
	}
	return nil
}

// position is a line and column in the document, both from 1.
type position struct{ line, column int }

// positions maps document paths to where they are written, and collects
// the shape problems Parse finds.
type positions struct {
	at       map[string]position
	problems []*FieldError
	// incomplete: the document could not be decoded whole (values of the
	// wrong kind), so its content is not validated.
	incomplete bool
	// problemAt and problemIn hold the paths of the shape problems and of
	// the values holding them, for hides.
	problemAt, problemIn map[string]bool
	// undecodable: a mapping has too many keys, or a key is too long, for
	// the document to be decoded at all.
	undecodable bool
}

// hides reports whether a content problem at path is most likely a shape
// problem seen again, and is left out: it is at the place of a shape
// problem, inside it, or on the mapping holding it (a misspelled field
// leaves its mapping without that field).
func (p *positions) hides(path string) bool {
	if p == nil || len(p.problems) == 0 {
		return false
	}
	p.index()
	if p.problemAt[path] || p.problemIn[path] || p.problemAt[""] {
		return true
	}
	for i := 1; i < len(path); i++ { // the ancestors of path
		if (path[i] == '.' || path[i] == '[') && p.problemAt[path[:i]] {
			return true
		}
	}
	return false
}

// hidesMissing reports whether a "required" problem for a field of the
// mapping at path is left out: the mapping has a shape problem, most
// likely the misspelled field.
func (p *positions) hidesMissing(path string) bool {
	if p == nil || len(p.problems) == 0 {
		return false
	}
	p.index()
	return p.problemIn[path] || p.problemAt[path]
}

// index fills problemAt and problemIn from the shape problems, which are
// all found before the first content problem: a document with thousands
// of both would otherwise cost seconds of comparisons.
func (p *positions) index() {
	if p.problemAt != nil {
		return
	}
	p.problemAt = make(map[string]bool, len(p.problems))
	p.problemIn = make(map[string]bool, len(p.problems))
	for _, sp := range p.problems {
		p.problemAt[sp.Path] = true
		p.problemIn[parentPath(sp.Path)] = true
	}
}

// parentPath returns the path of the value holding path ("" for a
// top-level key).
func parentPath(path string) string {
	if i := strings.LastIndexAny(path, ".["); i > 0 {
		return path[:i]
	}
	return ""
}

// isUnder reports whether path is inside the value at ancestor.
func isUnder(path, ancestor string) bool {
	if ancestor == "" {
		return true
	}
	if !strings.HasPrefix(path, ancestor) || len(path) == len(ancestor) {
		return false
	}
	c := path[len(ancestor)]
	return c == '.' || c == '['
}

func (p *positions) set(path string, n *yaml.Node) {
	if _, ok := p.at[path]; !ok {
		p.at[path] = position{n.Line, n.Column}
	}
}

// of returns the position of path, or of its nearest written ancestor.
func (p *positions) of(path string) position {
	if p == nil {
		return position{}
	}
	for {
		if at, ok := p.at[path]; ok {
			return at
		}
		i := strings.LastIndexAny(path, ".[")
		if i <= 0 {
			return position{}
		}
		path = path[:i]
	}
}

func (p *positions) fail(path string, n *yaml.Node, format string, args ...any) {
	p.problems = append(p.problems, &FieldError{Path: path, Reason: fmt.Sprintf(format, args...), Line: n.Line, Column: n.Column})
}

type shapeKey struct {
	n *yaml.Node
	t reflect.Type
}

// shapeWalker checks the document's nodes beside the Go types they decode
// into, so new fields are covered as they are added.
type shapeWalker struct {
	seen map[shapeKey]bool // aliased nodes are walked once per type
	pos  *positions
	// drop holds the nodes with a shape problem: values, which prune
	// makes null, and keys, whose pair prune removes.
	drop map[*yaml.Node]bool
}

// bad reports a problem with the value n at path and leaves n out of the
// decoding.
func (w *shapeWalker) bad(path string, n *yaml.Node, format string, args ...any) {
	w.pos.fail(path, n, format, args...)
	w.drop[n] = true
}

// badKey reports a problem with the key of a mapping pair and leaves the
// pair out of the decoding.
func (w *shapeWalker) badKey(path string, key *yaml.Node, format string, args ...any) {
	w.pos.fail(path, key, format, args...)
	w.drop[key] = true
}

// prune makes the values with a shape problem null (absent, to the
// decoder) and removes the pairs whose key has one, in the tree under n.
func (w *shapeWalker) prune(n *yaml.Node, visited map[*yaml.Node]bool) {
	if len(w.drop) == 0 || visited[n] {
		return
	}
	visited[n] = true
	if w.drop[n] {
		*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null", Line: n.Line, Column: n.Column}
		return
	}
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias != nil {
			w.prune(n.Alias, visited)
		}
	case yaml.MappingNode:
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			if w.drop[n.Content[i]] {
				continue
			}
			kept = append(kept, n.Content[i], n.Content[i+1])
		}
		n.Content = kept
		for _, c := range n.Content {
			w.prune(c, visited)
		}
	default:
		for _, c := range n.Content {
			w.prune(c, visited)
		}
	}
}

var (
	durationType    = reflect.TypeFor[Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (w *shapeWalker) walk(n *yaml.Node, t reflect.Type, path string) {
	n = resolveAlias(n)
	if isNull(n) || w.tooManyKeys(n, path) {
		return
	}
	if t == durationType {
		// Checked at every place it is used, an alias's too: whether a
		// duration may be off depends on the field, not on the node.
		if path != "" {
			w.pos.set(path, n)
		}
		w.duration(n, path)
		return
	}
	k := shapeKey{n, t}
	if w.seen[k] {
		return
	}
	w.seen[k] = true
	if path != "" {
		w.pos.set(path, n)
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return // a type checking its own node
	}
	switch t.Kind() {
	case reflect.Pointer:
		w.walk(n, t.Elem(), path)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			w.bad(path, n, "must be an integer, not %s%s", describe(n), numberHint(n, false))
			return
		}
		if _, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64); err != nil {
			w.bad(path, n, "integer %.30q out of range", n.Value)
		}
	case reflect.Float32, reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
			w.bad(path, n, "must be a number, not %s%s", describe(n), numberHint(n, true))
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			w.bad(path, n, "must be true or false, not %s", describe(n))
		}
	case reflect.String:
		switch {
		case n.Kind != yaml.ScalarNode:
			w.bad(path, n, "must be a string, not %s", describe(n))
		case n.ShortTag() == binaryTag:
			w.bad(path, n, "must be a string, not binary data")
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.bad(path, n, "must be a list, not %s", describe(n))
			return
		}
		for i, item := range n.Content {
			ip := fmt.Sprintf("%s[%d]", path, i)
			if isNull(resolveAlias(item)) {
				w.bad(ip, item, "must not be null")
				continue
			}
			w.walk(item, t.Elem(), ip)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.bad(path, n, "must be a mapping of names to values, not %s", describe(n))
			return
		}
		w.keys(n, path, func(key, value *yaml.Node, kp string) {
			if key.Kind != yaml.ScalarNode {
				w.badKey(path, key, "keys must be strings, not %s", describe(key))
				return
			}
			if key.ShortTag() == binaryTag {
				w.badKey(kp, key, "keys must be strings, not binary data")
				return
			}
			w.pos.set(kp, key)
			w.walk(value, t.Elem(), kp)
		})
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.bad(path, n, "must be a mapping with the fields of %s, not %s", fieldList(t), describe(n))
			return
		}
		w.keys(n, path, func(key, value *yaml.Node, kp string) {
			f, ok := yamlField(t, key.Value)
			if !ok {
				w.badKey(kp, key, "unknown field%s", unknownFieldHint(key, t))
				return
			}
			w.pos.set(kp, key)
			w.walk(value, f.Type, kp)
		})
	}
}

// keys calls f for each key of mapping n, with the key's path, and
// reports keys given twice.
func (w *shapeWalker) keys(n *yaml.Node, path string, f func(key, value *yaml.Node, keyPath string)) {
	seen := make(map[string]int)
	w.pairs(n, path, func(key, value *yaml.Node) {
		kp := join(path, key.Value)
		if len(key.Value) > maxKeyLen {
			// No name may be that long. Every path below would repeat
			// the key (a long key over thousands of values would cost
			// gigabytes of paths), so neither the value nor the decoded
			// document is looked at.
			w.pos.fail(kp, key, "key is %d bytes, over the limit of %d", len(key.Value), maxKeyLen)
			w.pos.incomplete, w.pos.undecodable = true, true
			return
		}
		if line, dup := seen[key.Value]; dup {
			w.badKey(kp, key, "duplicate key (first at line %d)", line)
			return
		}
		seen[key.Value] = key.Line
		f(key, value, kp)
	})
}

// pairs calls f for each key and value of mapping n, following merge keys
// (<<), whose mapping or list of mappings adds fields to n. A mapping is
// merged once however often aliases name it (merging it again adds
// nothing), and the pairs of n and its merges together count against the
// mapping size limit: nested merges of aliased mappings would otherwise
// cost N to the power of their depth.
func (w *shapeWalker) pairs(n *yaml.Node, path string, f func(key, value *yaml.Node)) {
	count := 0
	w.mergedPairs(n, path, map[*yaml.Node]bool{n: true}, &count, f)
}

func (w *shapeWalker) mergedPairs(n *yaml.Node, path string, merged map[*yaml.Node]bool, count *int, f func(key, value *yaml.Node)) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, value := n.Content[i], n.Content[i+1]
		if key.Value == "<<" && key.ShortTag() == "!!merge" {
			v := resolveAlias(value)
			items := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				items = v.Content
			}
			for _, m := range items {
				if m = resolveAlias(m); m.Kind != yaml.MappingNode || merged[m] || w.tooManyKeys(m, path) {
					continue
				}
				merged[m] = true
				if !w.mergedPairs(m, path, merged, count, f) {
					return false
				}
			}
			continue
		}
		if *count++; *count > keyLimit(path) {
			w.pos.fail(path, n, "mapping of more than %d keys with its merges", keyLimit(path))
			w.pos.incomplete, w.pos.undecodable = true, true
			return false
		}
		f(key, value)
	}
	return true
}

// keyLimit is how many keys a mapping at path may hold.
func keyLimit(path string) int {
	if path == "services" {
		return MaxServices
	}
	return maxMappingKeys
}

// tooManyKeys reports, and marks the document undecodable, a mapping at
// path with more keys than any mapping there may hold.
func (w *shapeWalker) tooManyKeys(n *yaml.Node, path string) bool {
	if n.Kind != yaml.MappingNode {
		return false
	}
	limit := keyLimit(path)
	if k := len(n.Content) / 2; k > limit {
		w.pos.fail(path, n, "mapping of %d keys, over the limit of %d", k, limit)
		w.pos.incomplete, w.pos.undecodable = true, true
		return true
	}
	return false
}

func (w *shapeWalker) duration(n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode {
		w.bad(path, n, "must be a duration such as \"2s\", not %s", describe(n))
		return
	}
	if tag := n.ShortTag(); tag == "!!int" || tag == "!!float" {
		if v, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64); err == nil && v >= 0 && v < 1e9 {
			if v == 0 && !TakesNone(path) {
				w.bad(path, n, "a duration needs a unit, and a zero one means none, which only timeout and perTryTimeout take; %s", noneAdvice(path))
			} else {
				w.bad(path, n, "a duration needs a unit: write %s", unitHint(v))
			}
			return
		}
	}
	v, err := parseDuration(n.Value)
	switch {
	case err != nil:
		w.bad(path, n, "invalid duration %.30q (write it as \"250ms\", \"2s\" or \"1m30s\"%s)", n.Value, offHint(path))
	case v == Off && !TakesNone(path) && strings.TrimSpace(n.Value) == "off":
		w.bad(path, n, "off is for timeout and perTryTimeout; %s", noneAdvice(path))
	case v == Off && !TakesNone(path):
		// Zero reads as off (none): refused here as off is, rather than
		// taken silently for the default, which the document's JSON form
		// (written "off") would then refuse.
		w.bad(path, n, "a zero duration means none, which only timeout and perTryTimeout take; %s", noneAdvice(path))
	}
}

// noneAdvice says what to write instead of no duration where none is not
// allowed: nothing, for the default, except where the field has none.
func noneAdvice(path string) string {
	if strings.HasSuffix(path, "slowStart.window") {
		return "the window must be more than 0, a duration such as 30s"
	}
	return "leave this field out for its default"
}

// TakesNone reports whether the duration at path (a document path such
// as services.a.retry.perTryTimeout, or a field's name) may be none, off
// or zero: a timeout or a per-try timeout, which defaults or the service
// would otherwise set. Load refuses none on every other duration.
func TakesNone(path string) bool {
	field := path[strings.LastIndexByte(path, '.')+1:]
	return field == "timeout" || field == "perTryTimeout"
}

// offHint adds how to write no duration at all, where that is allowed.
func offHint(path string) string {
	if TakesNone(path) {
		return `, or off for none`
	}
	return ""
}

// unitHint says how to write the number v as a duration: as seconds
// when it is small, as milliseconds (go-zero's unit) when it is large.
func unitHint(v float64) string {
	num := func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
	if v < 100 {
		return num(v) + "s or " + num(v*1000) + "ms"
	}
	return num(v) + "ms or " + time.Duration(v*float64(time.Millisecond)).String()
}

// numberHint says how to write the value of n as a number, when it is
// one written as a string: "3" as 3, "50%" (of a ratio) as 0.5.
func numberHint(n *yaml.Node, ratio bool) string {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return ""
	}
	s := strings.TrimSpace(n.Value)
	if pct, ok := strings.CutSuffix(s, "%"); ok && ratio {
		if v, err := strconv.ParseFloat(strings.TrimSpace(pct), 64); err == nil {
			return ": write " + strconv.FormatFloat(v/100, 'f', -1, 64)
		}
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return ": write " + s + " without quotes"
	}
	return ""
}

// unknownFieldHint completes "unknown field" for key in a mapping of
// type t: the field it most likely means, or the fields there are. A
// boolean key where on is a field is on read by a YAML 1.1 tool; so is a
// key "true" (such a tool's boolean written out as JSON).
func unknownFieldHint(key *yaml.Node, t reflect.Type) string {
	if _, ok := yamlField(t, "on"); ok && (key.ShortTag() == "!!bool" || strings.EqualFold(key.Value, "true")) {
		return "; YAML 1.1 tools read the key on as a boolean and write it back as " + key.Value + ": quote the key: \"on\":"
	}
	return suggest(key.Value, t)
}

// describe names what node n holds, for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.ShortTag() {
	case "!!str":
		return fmt.Sprintf("the string %.30q", n.Value)
	case "!!bool":
		return "a boolean"
	}
	return fmt.Sprintf("%.30q", n.Value)
}

// yamlName returns the YAML key of struct field f.
func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name
}

// yamlField returns the field of struct type t that YAML key names.
func yamlField(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() && yamlName(f) == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// fieldList lists the YAML keys of struct type t.
func fieldList(t reflect.Type) string {
	var names []string
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() {
			names = append(names, yamlName(f))
		}
	}
	return strings.Join(names, ", ")
}

// suggest returns `; did you mean "x"?` for the field of t closest to key,
// or the list of fields when none is close.
func suggest(key string, t reflect.Type) string {
	var names []string
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() {
			names = append(names, yamlName(f))
		}
	}
	if best := textdist.Closest(key, names, 2); best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return " (known fields: " + fieldList(t) + ")"
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// sortProblems orders problems by where they are written; problems without
// a place keep their order, after the others.
func sortProblems(ps []*FieldError) {
	slices.SortStableFunc(ps, func(a, b *FieldError) int {
		if la, lb := lineOf(a), lineOf(b); la != lb {
			return la - lb
		}
		return a.Column - b.Column
	})
}

func lineOf(fe *FieldError) int {
	if fe.Line == 0 {
		return 1 << 30
	}
	return fe.Line
}

// yamlSafeJSON returns data unchanged unless it is JSON with string escapes
// that YAML lacks or reads differently (\/ and UTF-16 surrogate pairs) or
// with characters JSON allows in strings and YAML reads otherwise (see
// yamlForbidden); it then rewrites every string holding a
// backslash or such a character with Go escapes, all of which YAML shares.
func yamlSafeJSON(data []byte) []byte {
	if !bytes.Contains(data, []byte{'\\'}) && !bytes.ContainsFunc(data, yamlForbidden) || !json.Valid(data) {
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
		if (escaped || bytes.ContainsFunc(tok, yamlForbidden)) && json.Unmarshal(tok, &s) == nil {
			out = strconv.AppendQuote(out, s)
		} else {
			out = append(out, tok...)
		}
		i = end
	}
	return out
}

// yamlForbidden reports whether YAML cannot hold r unescaped in a
// quoted string, where JSON can: DEL, the C1 controls and the
// non-characters U+FFFE and U+FFFF are errors, and NEL, U+2028 and U+2029
// are line breaks, folded into a space. (JSON forbids the C0 controls
// unescaped, and YAML reads their escapes.)
func yamlForbidden(r rune) bool {
	return r >= 0x7f && r <= 0x9f || r == 0x2028 || r == 0x2029 || r == 0xfffe || r == 0xffff
}
