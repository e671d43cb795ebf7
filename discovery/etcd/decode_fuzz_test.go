package etcd

import (
	"bytes"
	"encoding/json"
	"maps"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/lightmesh/lightmesh/discovery"
)

// fuzzDir is the directory of the service whose values FuzzDecode decodes.
const fuzzDir = "/lm/svc/"

// newFuzzSet returns an empty instance set for fuzzDir, as a Watch of
// service svc holds it, taking values of up to maxValueSize bytes.
func newFuzzSet(maxValueSize int) *instanceSet {
	d := NewDiscovery(nil, "/lm/", WithMaxValueSize(maxValueSize))
	return &instanceSet{d: d, service: "svc", dir: fuzzDir, entries: map[string]discovery.Instance{}}
}

// checkDecoded fails unless in, decoded from value, is valid and is what
// value says read on its own: the same address, weight, health and labels.
func checkDecoded(t *testing.T, in discovery.Instance, value []byte) {
	t.Helper()
	if err := in.Validate(); err != nil {
		t.Fatalf("accepted %q as an invalid instance: %v", value, err)
	}
	var want discovery.Instance
	if err := json.Unmarshal(value, &want); err != nil {
		t.Fatalf("accepted %q, which is not JSON: %v", value, err)
	}
	if in.Address != want.Address || in.Weight != want.Weight || in.Unhealthy != want.Unhealthy || !maps.Equal(in.Labels, want.Labels) {
		t.Fatalf("decoded %q as %+v, want %+v", value, in, want)
	}
}

// FuzzDecode feeds the decoding Discovery applies to every etcd value
// arbitrary keys and values, under a fuzzed value size limit. Decoding
// must never panic; an accepted value must be a valid instance equal to
// what the value says on its own, even after another value was decoded
// into the same set (label sets are shared between instances); a value
// over the size limit, or a key that is no instance name, must be
// refused; and put must keep exactly the accepted values.
func FuzzDecode(f *testing.F) {
	f.Add("a", []byte(`{"address":"10.0.0.1:80","weight":3,"labels":{"env":"staging"}}`), []byte(`{"address":"10.0.0.2:80","labels":{"env":"staging"}}`), uint16(16<<10))
	f.Add("a", []byte(`{"address":"10.0.0.1:80"}`), []byte(`{"address":"10.0.0.1:80","unhealthy":true}`), uint16(24)) // at the limit
	f.Add("a", []byte(`{"address":"10.0.0.1:80"}`), []byte(`{}`), uint16(23))                                         // one byte over
	f.Add("b", []byte(`{"address":"[::1]:443","labels":{"":"x"}}`), []byte(`null`), uint16(1000))
	f.Add("c", []byte(`{"address":"h:0"}`), []byte(`{"address":"h:65536"}`), uint16(1000))
	f.Add("d", []byte(`{"address":"h:1","weight":-1}`), []byte(`{"address":"h:1","weight":1e400}`), uint16(1000))
	f.Add("e", []byte(`{"address":"h:1","labels":{"k":"`+strings.Repeat("v", discovery.MaxLabelValueLen+1)+`"}}`), []byte("\x00\xff"), uint16(2000))
	f.Add("f", []byte(`{"address":"h:1","labels":{"a\u0000b":"c"}}`), []byte(`{"address":"h:2","labels":{"a":"b\u0000c"}}`), uint16(1000))
	f.Add("g/h", []byte(`{"address":"h:1"}`), []byte(`{"address":"h:1"} {}`), uint16(1000))
	f.Add("", []byte(`{"address":"h:1","Address":"x:2","labels":{"k":"\ud800"}}`), []byte(`{"address":"h:1","labels":null,"extra":[1,2]}`), uint16(1000))
	f.Fuzz(func(t *testing.T, id string, value, other []byte, limit uint16) {
		size := 1 + int(limit)
		s := newFuzzSet(size)
		key := fuzzDir + id
		in, err := s.decode(&mvccpb.KeyValue{Key: []byte(key), Value: value})
		switch {
		case err != nil:
		case len(value) > size:
			t.Fatalf("accepted a value of %d bytes over the limit of %d", len(value), size)
		case checkName("instance", id) != nil:
			t.Fatalf("accepted key %q, whose instance name %q is invalid", key, id)
		default:
			checkDecoded(t, in, value)
			// The same value padded past the limit (still valid JSON) is refused.
			padded := append(bytes.Clone(value), bytes.Repeat([]byte{' '}, size+1-len(value))...)
			if _, err := s.decode(&mvccpb.KeyValue{Key: []byte(key), Value: padded}); err == nil {
				t.Fatalf("accepted %q padded to %d bytes, over the limit of %d", value, len(padded), size)
			}
		}
		// Another value decoded into the same set is what it says, and
		// leaves the first as it was.
		if in2, err2 := s.decode(&mvccpb.KeyValue{Key: []byte(fuzzDir + "other"), Value: other}); err2 == nil {
			checkDecoded(t, in2, other)
			if err == nil {
				checkDecoded(t, in, value)
			}
		}

		// put keeps exactly the accepted values, under their key.
		set := newFuzzSet(size)
		changed := set.put(&mvccpb.KeyValue{Key: []byte(key), Value: value})
		got, kept := set.entries[key]
		if changed != (err == nil) || kept != (err == nil) || len(set.entries) != len(set.list()) {
			t.Fatalf("put of a value decode %s: changed %v, kept %v (%d entries)", map[bool]string{true: "accepts", false: "refuses"}[err == nil], changed, kept, len(set.entries))
		}
		if kept {
			checkDecoded(t, got, value)
			if set.put(&mvccpb.KeyValue{Key: []byte(key), Value: value}) {
				t.Fatal("putting the same value again reports a change")
			}
		}
		_, err2 := set.decode(&mvccpb.KeyValue{Key: []byte(key), Value: other})
		set.put(&mvccpb.KeyValue{Key: []byte(key), Value: other})
		if got, kept := set.entries[key]; kept != (err2 == nil) {
			t.Fatalf("after a put of a value decode %s, the key is kept: %v", map[bool]string{true: "accepts", false: "refuses"}[err2 == nil], kept)
		} else if kept {
			checkDecoded(t, got, other)
		}
	})
}
