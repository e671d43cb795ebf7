package trace

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
)

// manyMembers returns a baggage string of n distinct short members
// ("0=", "1=", ... with base-36 keys), then extra.
func manyMembers(n int, extra string) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(int64(i), 36))
		b.WriteByte('=')
	}
	if extra != "" {
		b.WriteString("," + extra)
	}
	return b.String()
}

func TestHostileInputIgnoredSafely(t *testing.T) {
	valid := "lightmesh.lane.x-env=staging"
	tests := []struct {
		name      string
		in        http.Header
		wantTrace bool   // a valid trace id is extracted
		wantLane  string // Lane.String of the extracted lane
		wantReqID string
		maxBag    int // upper bound on extracted baggage members
	}{
		{name: "traceparent garbage", in: header("Traceparent", "garbage", "X-Env", "staging"), wantLane: "x-env=staging"},
		{name: "traceparent short", in: header("Traceparent", "00-4bf92f35-00f067aa0ba902b7-01")},
		{name: "traceparent uppercase hex", in: header("Traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01")},
		{name: "traceparent zero trace id", in: header("Traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01")},
		{name: "traceparent zero span id", in: header("Traceparent", "00-"+inTraceID+"-0000000000000000-01")},
		{name: "traceparent version ff", in: header("Traceparent", "ff-"+inTraceID+"-"+inSpanID+"-01")},
		{name: "traceparent v00 extra field", in: header("Traceparent", inTraceparent+"-extra")},
		{name: "traceparent 1MB", in: header("Traceparent", strings.Repeat("0", 1<<20))},
		{name: "traceparent 1MB after valid prefix", in: header("Traceparent", inTraceparent+strings.Repeat("-a", 1<<19))},
		{name: "traceparent non-ascii", in: header("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e47é6-00f067aa0ba902b7-01")},
		{name: "traceparent ok, tracestate hostile", in: header("Traceparent", inTraceparent, "Tracestate", strings.Repeat("a=b,", 10_000)+"==,,;"), wantTrace: true},
		{name: "baggage over 8192 bytes", in: header("X-Env", "staging", "Baggage", manyMembers(0, strings.Repeat("a", 9000)+"=1,"+valid)), wantLane: "x-env=staging"},
		{name: "baggage headers totalling over 8192", in: header("Baggage", valid, "Baggage", "big="+strings.Repeat("b", 5000), "Baggage", "big2="+strings.Repeat("b", 5000))},
		{name: "baggage thousands of members", in: header("Baggage", manyMembers(1500, valid)), maxBag: 64},
		{name: "baggage thousands of invalid members", in: header("Baggage", strings.Repeat("=,", 4000)+valid)},
		{name: "baggage thousands of duplicate members", in: header("Baggage", strings.Repeat(valid+",", 250))},
		{name: "baggage 129 list members", in: header("Baggage", strings.Repeat("=,", 128)+valid)},
		{name: "baggage 128 list members, lane last", in: header("Baggage", strings.Repeat("=,", 127)+valid), wantLane: "x-env=staging", maxBag: 1},
		{name: "baggage 65 distinct members, lane last", in: header("Baggage", manyMembers(64, valid)), maxBag: 64},
		{name: "baggage 65 distinct members, lane first", in: header("Baggage", valid+","+manyMembers(64, "")), wantLane: "x-env=staging", maxBag: 64},
		{name: "baggage many headers", in: func() http.Header {
			h := http.Header{}
			for range 5000 {
				h.Add("Baggage", "a=1")
			}
			return h
		}(), maxBag: 0},
		{name: "baggage invalid percent encoding", in: header("Baggage", "lightmesh.lane.x-env=%zz,user=%G1,ok=1"), maxBag: 1},
		{name: "baggage lane value decodes to invalid", in: header("Baggage", "lightmesh.lane.x-env=a%2Cb"), maxBag: 1},
		{name: "baggage lane value decodes to valid", in: header("Baggage", "lightmesh.lane.x-env=st%61ging"), wantLane: "x-env=staging", maxBag: 1},
		{name: "baggage lane value too long", in: header("Baggage", "lightmesh.lane.x-env="+strings.Repeat("v", MaxLabelValueLen+1)), maxBag: 1},
		{name: "baggage lane value invalid utf8", in: header("Baggage", "lightmesh.lane.x-env=%FF%FE"), maxBag: 1},
		{name: "baggage unterminated properties", in: header("Baggage", valid+";;;;=;"), maxBag: 1},
		{name: "baggage control bytes", in: header("Baggage", "a=\x00\x01,"+valid), wantLane: "x-env=staging", maxBag: 1},
		{name: "lane header too long", in: header("X-Env", strings.Repeat("s", MaxLabelValueLen+1))},
		{name: "lane header 1MB", in: header("X-Env", strings.Repeat("s", 1<<20))},
		{name: "lane header with separators", in: header("X-Env", "staging;drop table")},
		{name: "lane header utf8", in: header("X-Env", "stägîng")},
		{name: "lane header empty", in: header("X-Env", "", "Baggage", valid), wantLane: "x-env=staging", maxBag: 1},
		{name: "lane header padded", in: header("X-Env", "  staging  "), wantLane: "x-env=staging"},
		{name: "lane header repeated 5000 times", in: func() http.Header {
			h := http.Header{}
			for i := range 5000 {
				h.Add("X-Env", fmt.Sprintf("v%d", i))
			}
			return h
		}(), wantLane: "x-env=v0"},
		{name: "request id 1MB", in: header("X-Request-Id", strings.Repeat("r", 1<<20))},
		{name: "request id control bytes", in: header("X-Request-Id", "abc\x7fdef")},
		{name: "request id ok", in: header("X-Request-Id", "3f2c-9a"), wantReqID: "3f2c-9a"},
	}
	p := New(WithMode(ModeSpans))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := p.Extract(context.Background(), propagation.HeaderCarrier(tt.in))
			if got := TraceIDFromContext(ctx) != ""; got != tt.wantTrace {
				t.Errorf("trace extracted = %v, want %v", got, tt.wantTrace)
			}
			if got := LaneFromContext(ctx).String(); got != tt.wantLane {
				t.Errorf("lane = %q, want %q", got, tt.wantLane)
			}
			if got := RequestIDFromContext(ctx); got != tt.wantReqID {
				t.Errorf("request id = %.40q, want %q", got, tt.wantReqID)
			}
			if n := baggage.FromContext(ctx).Len(); n > tt.maxBag {
				t.Errorf("%d baggage members extracted, want at most %d", n, tt.maxBag)
			}
			// The request proceeds: spans and Inject work on what remains.
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc/", nil)
			sctx, span := p.StartServer(ctx, req)
			out := http.Header{}
			p.Inject(sctx, propagation.HeaderCarrier(out))
			End(span, 200, nil)
			if raw := out.Get("Baggage"); len(raw) > 8192 {
				t.Errorf("outgoing baggage is %d bytes", len(raw))
			}
			if _, err := baggage.Parse(out.Get("Baggage")); err != nil {
				t.Errorf("outgoing baggage %q does not parse: %v", out.Get("Baggage"), err)
			}
			for k, vs := range out {
				for _, v := range vs {
					if strings.ContainsAny(v, "\r\n\x00") {
						t.Errorf("outgoing header %s has control bytes: %q", k, v)
					}
				}
			}
		})
	}
}

// TestHostileInputBoundedAllocation checks that the worst inputs cost a
// bounded amount of memory whatever their size.
func TestHostileInputBoundedAllocation(t *testing.T) {
	p := New()
	inputs := map[string]http.Header{
		"1MB traceparent":      header("Traceparent", strings.Repeat("0", 1<<20)),
		"1MB lane header":      header("X-Env", strings.Repeat("s", 1<<20)),
		"1MB request id":       header("X-Request-Id", strings.Repeat("r", 1<<20)),
		"1MB baggage":          header("Baggage", strings.Repeat("a=1,", 1<<18)),
		"1500 members baggage": header("Baggage", manyMembers(1500, "")),
		"2000 duplicates":      header("Baggage", strings.Repeat("k=v,", 2000)),
		"5000 baggage headers": func() http.Header { h := http.Header{}; h["Baggage"] = make([]string, 5000); return h }(),
	}
	if n := len(manyMembers(1500, "")); n > 8192 {
		t.Fatalf("member corpus is %d bytes, must fit the 8192 byte limit to reach the parser", n)
	}
	for name, h := range inputs {
		t.Run(name, func(t *testing.T) {
			allocs := testing.AllocsPerRun(5, func() {
				p.Extract(context.Background(), propagation.HeaderCarrier(h))
			})
			// 64 members × a few allocations each is the worst legitimate case.
			if allocs > 600 {
				t.Errorf("Extract allocated %.0f times", allocs)
			}
		})
	}
}

// laneSources returns, for lane key k, the values the input offers it: the
// header value (trimmed) and the value of every baggage member named
// BaggagePrefix+k, as written and percent-decoded. It is a deliberately
// naive reading of W3C baggage: members split at commas, properties cut at
// the first semicolon, key and value split at the first '='.
func laneSources(k, headerValue, bag string) []string {
	out := []string{strings.TrimSpace(headerValue)}
	for _, member := range strings.Split(bag, ",") {
		member, _, _ = strings.Cut(member, ";")
		key, value, ok := strings.Cut(member, "=")
		if !ok || strings.TrimSpace(key) != BaggagePrefix+k {
			continue
		}
		value = strings.TrimSpace(value)
		out = append(out, value)
		if dec, err := url.PathUnescape(value); err == nil {
			out = append(out, dec)
		}
	}
	return out
}

// FuzzExtract feeds Extract arbitrary trace context, baggage, lane headers
// and request ids. The lane extracted must be valid, hold only configured
// keys, each with a value the input carries for it (never one made up),
// take a valid lane header over baggage, and survive a hop; the request
// id must be valid and the outgoing baggage must parse.
func FuzzExtract(f *testing.F) {
	lane := BaggagePrefix + "x-env=staging," + BaggagePrefix + "x-tenant=acme"
	f.Add(inTraceparent, "vendor=1", "user=alice,lightmesh.lane.x-env=staging", "canary", "", "req-1")
	f.Add("garbage", "", "lightmesh.lane.x-env=%zz", "a,b", "", "")
	f.Add("", "", strings.Repeat("k=v,", 100), "", "", "\x00")
	f.Add("", "", lane, "", "", "")                                             // both keys from baggage
	f.Add("", "", lane, "base", "  ", "")                                       // a header over baggage, a blank one
	f.Add("", "", manyMembers(63, lane), "", "", "")                            // at the member limit
	f.Add("", "", manyMembers(200, lane), "", "", "")                           // over it: baggage ignored
	f.Add("", "", lane+";p=1;q,"+BaggagePrefix+"x-env=other", "", "", "")       // properties, a duplicate
	f.Add("", "", BaggagePrefix+"x-env=st%61g\xffing", "\xff\xfe", "t\xe9", "") // invalid UTF-8
	f.Add("", "", BaggagePrefix+"x-env=%E2%82%AC,"+BaggagePrefix+"x-tenant=%61", "", "", "")
	f.Add("", "", BaggagePrefix+"x-env="+strings.Repeat("v", MaxLabelValueLen+1), strings.Repeat("s", MaxLabelValueLen), "", "")
	f.Add("", "", BaggagePrefix+"x-tenant="+strings.Repeat("v", 9000), strings.Repeat("s", MaxLabelValueLen+1), "", "")
	f.Add("", "", " "+BaggagePrefix+"x-env = a ,"+BaggagePrefix+"X-ENV=b,"+BaggagePrefix+"x-other=c", "", "", "")
	p := New(WithLaneKeys("x-env", "x-tenant"))
	f.Fuzz(func(t *testing.T, tp, ts, bag, env, tenant, reqID string) {
		in := propagation.MapCarrier{"traceparent": tp, "tracestate": ts, "baggage": bag, "x-env": env, "x-tenant": tenant, "x-request-id": reqID}
		ctx := p.Extract(context.Background(), in)
		lane := LaneFromContext(ctx)
		if _, err := NewLane(lane.Labels()...); err != nil {
			t.Fatalf("extracted lane %q is invalid: %v", lane, err)
		}
		headers := map[string]string{"x-env": env, "x-tenant": tenant}
		for k, v := range lane.All {
			h, configured := headers[k]
			if !configured {
				t.Fatalf("extracted lane %q has key %q, not a lane key", lane, k)
			}
			if !slices.Contains(laneSources(k, h, bag), v) {
				t.Fatalf("extracted lane %q: %s=%q is in neither the header %q nor the baggage %q", lane, k, v, h, bag)
			}
		}
		for k, h := range headers {
			if h = strings.TrimSpace(h); validValue(h) {
				if got, _ := lane.Get(k); got != h {
					t.Fatalf("lane header %s=%q is valid, but the lane has %s=%q", k, h, k, got)
				}
			}
		}
		if id := RequestIDFromContext(ctx); id != "" && !validRequestID(id) {
			t.Fatalf("extracted request id %q is invalid", id)
		}
		out := http.Header{}
		p.Inject(ctx, propagation.HeaderCarrier(out))
		if _, err := baggage.Parse(out.Get("Baggage")); err != nil && out.Get("Baggage") != "" {
			t.Fatalf("outgoing baggage %q does not parse: %v", out.Get("Baggage"), err)
		}
		// Round trip: the next hop sees the same lane.
		next := LaneFromContext(p.Extract(context.Background(), propagation.HeaderCarrier(out)))
		if next.String() != lane.String() {
			t.Fatalf("lane changed across a hop: %q → %q", lane, next)
		}
	})
}
