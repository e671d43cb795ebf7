package trace

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
)

// Limits on lanes, label keys and values, and request ids. Anything larger is
// rejected by NewLane and ignored by Extract.
const (
	// MaxLaneLabels is the maximum number of labels in a Lane and the
	// maximum number of lane keys a Propagator reads.
	MaxLaneLabels = 16
	// MaxLabelKeyLen is the maximum length of a label key in bytes.
	MaxLabelKeyLen = 64
	// MaxLabelValueLen is the maximum length of a label value in bytes.
	MaxLabelValueLen = 128
	// MaxRequestIDLen is the maximum length of a request id in bytes.
	MaxRequestIDLen = 256
)

// BaggagePrefix is the prefix of the W3C baggage members that carry lane
// labels: the label x-env=staging travels as the baggage member
// "lightmesh.lane.x-env=staging".
const BaggagePrefix = "lightmesh.lane."

// Errors returned by NewLane, for use with errors.Is. The returned errors wrap
// one of these and name the offending label.
var (
	// ErrInvalidKey reports a label key that is not a lowercase HTTP header
	// token, is too long, or is reserved.
	ErrInvalidKey = errors.New("trace: invalid lane label key")
	// ErrInvalidValue reports a label value that is empty, too long, or
	// contains a byte outside the allowed set.
	ErrInvalidValue = errors.New("trace: invalid lane label value")
	// ErrDuplicateKey reports two labels with the same key.
	ErrDuplicateKey = errors.New("trace: duplicate lane label key")
	// ErrTooManyLabels reports more than MaxLaneLabels labels.
	ErrTooManyLabels = errors.New("trace: too many lane labels")
)

// Label is one routing label of a lane: a lowercase header name and its
// value, for example {Key: "x-env", Value: "staging"}.
type Label struct {
	Key, Value string
}

// Lane is an immutable, small set of routing labels carried by a request.
// Keys are lowercase, sorted and unique. The zero value is the empty lane.
// A Lane is safe for concurrent use and cheap to copy.
type Lane struct {
	d *laneData
}

// laneData holds the labels of a non-empty lane. one backs labels for the
// common single-label lane so that building it costs one allocation.
// bag caches the lane's baggage header value, made on first use.
type laneData struct {
	labels []Label
	one    [1]Label
	bag    atomic.Pointer[string]
}

// newLane wraps labels, which must be valid, sorted and unique, without
// copying more than necessary. The caller must not retain labels.
func newLane(labels []Label) Lane {
	switch len(labels) {
	case 0:
		return Lane{}
	case 1:
		d := &laneData{}
		d.one[0] = labels[0]
		d.labels = d.one[:]
		return Lane{d: d}
	default:
		return Lane{d: &laneData{labels: slices.Clone(labels)}}
	}
}

// NewLane returns the lane holding labels, sorted by key. Each key must be a
// lowercase HTTP header name: 1 to MaxLabelKeyLen bytes of lowercase letters,
// digits and !#$&'*+-.^_`|~, and not reserved (hop-by-hop and framing
// headers, content-type, traceparent, tracestate, baggage, x-request-id, and
// the gRPC metadata names grpc-* and *-bin). Each value must be 1 to
// MaxLabelValueLen bytes of visible ASCII other than `"`, `,`, `;`, `\` and
// `%`, so it travels unchanged both as a header value and as a baggage value.
// At most MaxLaneLabels labels are allowed and keys must be unique. NewLane
// with no labels returns the empty lane. Errors wrap ErrInvalidKey,
// ErrInvalidValue, ErrDuplicateKey or ErrTooManyLabels.
func NewLane(labels ...Label) (Lane, error) {
	if len(labels) == 0 {
		return Lane{}, nil
	}
	if len(labels) > MaxLaneLabels {
		return Lane{}, fmt.Errorf("%w: %d labels, at most %d allowed", ErrTooManyLabels, len(labels), MaxLaneLabels)
	}
	for i, lb := range labels {
		if reason := checkKey(lb.Key); reason != "" {
			return Lane{}, fmt.Errorf("%w: label %d key %q: %s", ErrInvalidKey, i, truncate(lb.Key), reason)
		}
		if reason := checkValue(lb.Value); reason != "" {
			return Lane{}, fmt.Errorf("%w: label %d (%s) value %q: %s", ErrInvalidValue, i, lb.Key, truncate(lb.Value), reason)
		}
	}
	sorted := slices.Clone(labels)
	slices.SortFunc(sorted, func(a, b Label) int { return cmp.Compare(a.Key, b.Key) })
	for i := 1; i < len(sorted); i++ {
		if sorted[i].Key == sorted[i-1].Key {
			return Lane{}, fmt.Errorf("%w: %q", ErrDuplicateKey, sorted[i].Key)
		}
	}
	return newLane(sorted), nil
}

// Get returns the value of the label with the given key and whether the lane
// has it. It does not allocate.
func (l Lane) Get(key string) (string, bool) {
	if l.d == nil {
		return "", false
	}
	for _, lb := range l.d.labels {
		if lb.Key == key {
			return lb.Value, true
		}
	}
	return "", false
}

// Len returns the number of labels in the lane.
func (l Lane) Len() int {
	if l.d == nil {
		return 0
	}
	return len(l.d.labels)
}

// IsZero reports whether the lane is empty.
func (l Lane) IsZero() bool { return l.Len() == 0 }

// Labels returns a copy of the lane's labels sorted by key, or nil for the
// empty lane.
func (l Lane) Labels() []Label {
	if l.d == nil {
		return nil
	}
	return slices.Clone(l.d.labels)
}

// All calls yield for each label in key order without copying the labels,
// stopping early if yield returns false. It has the shape of an iter.Seq2.
func (l Lane) All(yield func(key, value string) bool) {
	if l.d == nil {
		return
	}
	for _, lb := range l.d.labels {
		if !yield(lb.Key, lb.Value) {
			return
		}
	}
}

// String returns the labels as comma-separated key=value pairs in key order,
// for example "x-env=staging" or "x-env=staging,x-tenant=acme"; the empty
// lane is "".
func (l Lane) String() string {
	if l.d == nil {
		return ""
	}
	if len(l.d.labels) == 1 {
		return l.d.labels[0].Key + "=" + l.d.labels[0].Value
	}
	var b strings.Builder
	for i, lb := range l.d.labels {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(lb.Key)
		b.WriteByte('=')
		b.WriteString(lb.Value)
	}
	return b.String()
}

// baggage returns the lane's labels as a W3C baggage header value, made
// once per lane.
func (l Lane) baggage() string {
	if l.d == nil {
		return ""
	}
	if b := l.d.bag.Load(); b != nil {
		return *b
	}
	b := laneBaggage(l.d.labels)
	l.d.bag.Store(&b)
	return b
}

// labels returns the lane's labels without copying; callers must not modify
// them.
func (l Lane) labels() []Label {
	if l.d == nil {
		return nil
	}
	return l.d.labels
}

// reservedKeys are header names a lane label must never overwrite: hop-by-hop
// and framing headers, and the headers this package writes itself.
var reservedKeys = [...]string{
	"connection", "content-length", "content-type", "host", "keep-alive",
	"proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
	"traceparent", "tracestate", "baggage", requestIDKey,
}

// checkKey returns why key is not a valid label key, or "" if it is.
func checkKey(key string) string {
	if key == "" {
		return "empty"
	}
	if len(key) > MaxLabelKeyLen {
		return fmt.Sprintf("%d bytes, at most %d allowed", len(key), MaxLabelKeyLen)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if 'A' <= c && c <= 'Z' {
			return fmt.Sprintf("uppercase letter %q at byte %d (keys are lowercase header names)", c, i)
		}
		if !isKeyByte(c) {
			return fmt.Sprintf("byte %q at %d is not allowed in a header name", c, i)
		}
	}
	if slices.Contains(reservedKeys[:], key) {
		return "reserved header name"
	}
	if strings.HasPrefix(key, "grpc-") || strings.HasSuffix(key, "-bin") {
		return "reserved by gRPC metadata (grpc-* and *-bin)"
	}
	return ""
}

// checkValue returns why value is not a valid label value, or "" if it is.
func checkValue(value string) string {
	if value == "" {
		return "empty"
	}
	if len(value) > MaxLabelValueLen {
		return fmt.Sprintf("%d bytes, at most %d allowed", len(value), MaxLabelValueLen)
	}
	for i := 0; i < len(value); i++ {
		if !isValueByte(value[i]) {
			return fmt.Sprintf("byte %q at %d is not allowed (visible ASCII except `\"` `,` `;` `\\` `%%`)", value[i], i)
		}
	}
	return ""
}

// validValue reports whether value is a valid label value, without
// allocating.
func validValue(value string) bool {
	if value == "" || len(value) > MaxLabelValueLen {
		return false
	}
	for i := 0; i < len(value); i++ {
		if !isValueByte(value[i]) {
			return false
		}
	}
	return true
}

// isKeyByte reports whether c may appear in a label key: an RFC 9110 tchar
// other than an uppercase letter or '%' (which baggage keys never decode).
func isKeyByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$&'*+-.^_`|~", c) >= 0
}

// isValueByte reports whether c may appear in a label value: a W3C
// baggage-octet other than '%', which is also a valid header value byte.
func isValueByte(c byte) bool {
	if c < 0x21 || c > 0x7e {
		return false
	}
	switch c {
	case '"', ',', ';', '\\', '%':
		return false
	}
	return true
}

// validRequestID reports whether id is a request id worth carrying: 1 to
// MaxRequestIDLen bytes of printable ASCII (spaces allowed inside).
func validRequestID(id string) bool {
	if id == "" || len(id) > MaxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// truncate shortens s for an error message.
func truncate(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
