package nacos

import (
	"encoding/binary"
	"maps"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nacos-group/nacos-sdk-go/v2/model"

	"github.com/lightmesh/lightmesh/discovery"
)

// fuzzMetadata decodes b into a metadata map: entries of a one-byte key
// length, the key, a two-byte value length and the value, any bytes at
// all; a length past the end takes what is left. Then it adds many
// entries "m0".."m<many-1>", so that the label count limit is reached.
func fuzzMetadata(b []byte, many uint8) map[string]string {
	md := map[string]string{}
	take := func(n int) string {
		n = min(n, len(b))
		s := string(b[:n])
		b = b[n:]
		return s
	}
	for len(b) > 0 {
		k := take(int(b[0]) + 1)[1:]
		var v string
		if len(b) >= 2 {
			n := int(binary.BigEndian.Uint16(b))
			b = b[2:]
			v = take(n)
		}
		md[k] = v
	}
	for i := range int(many) {
		md["m"+strconv.Itoa(i)] = "v"
	}
	return md
}

// fuzzEntry encodes one metadata entry in fuzzMetadata's format.
func fuzzEntry(k, v string) []byte {
	b := append([]byte{byte(len(k))}, k...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// FuzzToInstance feeds toInstance, the conversion of every instance Nacos
// pushes, arbitrary addresses, ports, weights (NaN, infinities, huge,
// tiny, negative zero), health flags and metadata of arbitrary bytes. It
// must never panic; what it accepts must pass discovery's Validate, with
// the address, health and a weight that follow from the input and labels
// that are the metadata entries within discovery's limits, the first
// MaxLabels in key order; it may refuse only a bad port, weight or
// address, never an instance for its metadata.
func FuzzToInstance(f *testing.F) {
	env := fuzzEntry("env", "staging")
	f.Add("10.0.0.1", uint64(80), 1.0, true, true, env, uint8(0))
	f.Add("::1", uint64(65535), 0.255, true, false, append(fuzzEntry("", "x"), fuzzEntry("k", strings.Repeat("v", discovery.MaxLabelValueLen+1))...), uint8(0))
	f.Add("10.0.0.1", uint64(0), 1.0, true, true, env, uint8(0))
	f.Add("10.0.0.1", uint64(65536), 1.0, true, true, env, uint8(0))
	f.Add("10.0.0.1", uint64(1)<<63, math.NaN(), true, true, []byte(nil), uint8(0))
	f.Add("10.0.0.1", uint64(80), math.Inf(1), true, true, []byte(nil), uint8(0))
	f.Add("10.0.0.1", uint64(80), math.Inf(-1), true, true, []byte(nil), uint8(0))
	f.Add("10.0.0.1", uint64(80), -0.0, true, true, []byte(nil), uint8(0))
	f.Add("10.0.0.1", uint64(80), -1e-300, true, true, []byte(nil), uint8(0))
	f.Add("10.0.0.1", uint64(80), 5e-324, true, true, []byte(nil), uint8(0))
	f.Add("10.0.0.1", uint64(80), 1e300, true, true, []byte(nil), uint8(0))
	f.Add("10.0.0.1", uint64(80), 9999.995, true, true, []byte(nil), uint8(0))
	f.Add("10.0.0.1", uint64(80), 1.0, true, true, env, uint8(discovery.MaxLabels))
	f.Add("10.0.0.1", uint64(80), 1.0, true, true, append(fuzzEntry("\x00\xff", "\xfe\n"), fuzzEntry(strings.Repeat("k", discovery.MaxLabelKeyLen+1), "v")...), uint8(200))
	f.Add("", uint64(80), 1.0, true, true, []byte(nil), uint8(0))
	f.Add("[::1]", uint64(80), 1.0, true, true, []byte(nil), uint8(0))
	f.Add("a]b:c", uint64(80), 1.0, true, true, []byte(nil), uint8(0))
	f.Add("h\x00\n", uint64(80), 1.0, false, true, []byte(nil), uint8(0))
	f.Fuzz(func(t *testing.T, ip string, port uint64, weight float64, healthy, enable bool, mdBytes []byte, many uint8) {
		md := fuzzMetadata(mdBytes, many)
		h := model.Instance{Ip: ip, Port: port, Weight: weight, Healthy: healthy, Enable: enable, Metadata: md}
		in, dropped, err := toInstance(h)
		badPort := port == 0 || port > 65535
		badWeight := math.IsNaN(weight) || math.IsInf(weight, 0) || weight < 0
		addr := net.JoinHostPort(ip, strconv.FormatUint(port, 10))
		if err != nil {
			if !badPort && !badWeight && (discovery.Instance{Address: addr}).Validate() == nil {
				t.Fatalf("refused an instance with a good port, weight and address %q: %v", addr, err)
			}
			return
		}
		if badPort || badWeight {
			t.Fatalf("accepted port %d, weight %v as %+v", port, weight, in)
		}
		if err := in.Validate(); err != nil {
			t.Fatalf("accepted %+v, which is not valid: %v", in, err)
		}
		if in.Address != addr {
			t.Fatalf("address %q, want %q", in.Address, addr)
		}
		if want := !healthy || !enable || weight == 0; in.Unhealthy != want {
			t.Fatalf("healthy %v, enabled %v, weight %v: Unhealthy = %v", healthy, enable, weight, in.Unhealthy)
		}
		// Weight: 100 per unit of Nacos weight, rounded, at least 1 for
		// any positive weight, at most maxWeight; 0 only for weight 0.
		switch w, scaled := in.Weight, weight*100; {
		case w < 0 || w > maxWeight:
			t.Fatalf("weight %v became %d, outside 0..%d", weight, w, maxWeight)
		case weight == 0 && w != 0, weight > 0 && w < 1:
			t.Fatalf("weight %v became %d", weight, w)
		case weight > 0 && scaled >= 1 && scaled <= maxWeight && math.Abs(float64(w)-scaled) > 0.5:
			t.Fatalf("weight %v became %d, not the nearest to %v", weight, w, scaled)
		case scaled > maxWeight && w != maxWeight:
			t.Fatalf("weight %v became %d, want the cap %d", weight, w, maxWeight)
		}
		// Labels: the valid entries, the first MaxLabels in key order.
		var want []string
		for _, k := range slices.Sorted(maps.Keys(md)) {
			if v := md[k]; k != "" && len(k) <= discovery.MaxLabelKeyLen && len(v) <= discovery.MaxLabelValueLen && len(want) < discovery.MaxLabels {
				want = append(want, k)
			}
		}
		if len(in.Labels) != len(want) || dropped != len(md)-len(want) {
			t.Fatalf("%d labels kept and %d dropped of %d entries, want %d kept", len(in.Labels), dropped, len(md), len(want))
		}
		for _, k := range want {
			if v, ok := in.Labels[k]; !ok || v != md[k] {
				t.Fatalf("label %q = %q (%v), want %q", k, v, ok, md[k])
			}
		}
	})
}
