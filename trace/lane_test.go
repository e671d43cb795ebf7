package trace

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestNewLaneValidation(t *testing.T) {
	many := make([]Label, MaxLaneLabels+1)
	for i := range many {
		many[i] = Label{Key: "k" + string(rune('a'+i)), Value: "v"}
	}
	tests := []struct {
		name    string
		labels  []Label
		wantErr error
		want    string // String() on success
	}{
		{name: "empty", labels: nil, want: ""},
		{name: "one", labels: []Label{{"x-env", "staging"}}, want: "x-env=staging"},
		{name: "sorted", labels: []Label{{"x-tenant", "acme"}, {"x-env", "staging"}}, want: "x-env=staging,x-tenant=acme"},
		{name: "tchar key", labels: []Label{{"a.b_c-d~1!#$&'*+^`|", "v"}}, want: "a.b_c-d~1!#$&'*+^`|=v"},
		{name: "value punctuation", labels: []Label{{"x-env", "feature/a:b=c+d(e)!~"}}, want: "x-env=feature/a:b=c+d(e)!~"},
		{name: "max key and value", labels: []Label{{strings.Repeat("k", MaxLabelKeyLen), strings.Repeat("v", MaxLabelValueLen)}},
			want: strings.Repeat("k", MaxLabelKeyLen) + "=" + strings.Repeat("v", MaxLabelValueLen)},
		{name: "max labels", labels: many[:MaxLaneLabels], want: ""},

		{name: "too many", labels: many, wantErr: ErrTooManyLabels},
		{name: "empty key", labels: []Label{{"", "v"}}, wantErr: ErrInvalidKey},
		{name: "uppercase key", labels: []Label{{"X-Env", "v"}}, wantErr: ErrInvalidKey},
		{name: "space in key", labels: []Label{{"x env", "v"}}, wantErr: ErrInvalidKey},
		{name: "colon key", labels: []Label{{":authority", "v"}}, wantErr: ErrInvalidKey},
		{name: "percent key", labels: []Label{{"x%env", "v"}}, wantErr: ErrInvalidKey},
		{name: "unicode key", labels: []Label{{"x-énv", "v"}}, wantErr: ErrInvalidKey},
		{name: "long key", labels: []Label{{strings.Repeat("k", MaxLabelKeyLen+1), "v"}}, wantErr: ErrInvalidKey},
		{name: "reserved host", labels: []Label{{"host", "v"}}, wantErr: ErrInvalidKey},
		{name: "reserved content-length", labels: []Label{{"content-length", "1"}}, wantErr: ErrInvalidKey},
		{name: "reserved baggage", labels: []Label{{"baggage", "v"}}, wantErr: ErrInvalidKey},
		{name: "reserved traceparent", labels: []Label{{"traceparent", "v"}}, wantErr: ErrInvalidKey},
		{name: "reserved request id", labels: []Label{{"x-request-id", "v"}}, wantErr: ErrInvalidKey},
		{name: "reserved grpc", labels: []Label{{"grpc-timeout", "1S"}}, wantErr: ErrInvalidKey},
		{name: "reserved bin", labels: []Label{{"x-env-bin", "v"}}, wantErr: ErrInvalidKey},
		{name: "empty value", labels: []Label{{"x-env", ""}}, wantErr: ErrInvalidValue},
		{name: "long value", labels: []Label{{"x-env", strings.Repeat("v", MaxLabelValueLen+1)}}, wantErr: ErrInvalidValue},
		{name: "space value", labels: []Label{{"x-env", "a b"}}, wantErr: ErrInvalidValue},
		{name: "comma value", labels: []Label{{"x-env", "a,b"}}, wantErr: ErrInvalidValue},
		{name: "semicolon value", labels: []Label{{"x-env", "a;b"}}, wantErr: ErrInvalidValue},
		{name: "quote value", labels: []Label{{"x-env", `a"b`}}, wantErr: ErrInvalidValue},
		{name: "backslash value", labels: []Label{{"x-env", `a\b`}}, wantErr: ErrInvalidValue},
		{name: "percent value", labels: []Label{{"x-env", "a%20b"}}, wantErr: ErrInvalidValue},
		{name: "crlf value", labels: []Label{{"x-env", "a\r\nX-Evil: 1"}}, wantErr: ErrInvalidValue},
		{name: "nul value", labels: []Label{{"x-env", "a\x00"}}, wantErr: ErrInvalidValue},
		{name: "utf8 value", labels: []Label{{"x-env", "stägîng"}}, wantErr: ErrInvalidValue},
		{name: "duplicate", labels: []Label{{"x-env", "a"}, {"x-tenant", "t"}, {"x-env", "b"}}, wantErr: ErrDuplicateKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := NewLane(tt.labels...)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("NewLane error = %v, want %v", err, tt.wantErr)
				}
				if l.Len() != 0 {
					t.Errorf("failed NewLane returned non-empty lane %v", l)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewLane: %v", err)
			}
			if l.Len() != len(tt.labels) {
				t.Errorf("Len = %d, want %d", l.Len(), len(tt.labels))
			}
			if tt.want != "" && l.String() != tt.want {
				t.Errorf("String = %q, want %q", l.String(), tt.want)
			}
		})
	}
}

func TestNewLaneErrorMessage(t *testing.T) {
	_, err := NewLane(Label{"x-env", "ok"}, Label{"X-Tenant", "acme"})
	if err == nil || !strings.Contains(err.Error(), `label 1 key "X-Tenant"`) || !strings.Contains(err.Error(), "lowercase") {
		t.Errorf("error %v does not name the label and the reason", err)
	}
	_, err = NewLane(Label{"x-env", strings.Repeat("v", 10_000)})
	if err == nil || len(err.Error()) > 300 {
		t.Errorf("error for huge value should be short, got %d bytes", len(err.Error()))
	}
}

func TestLaneAccessors(t *testing.T) {
	var zero Lane
	if v, ok := zero.Get("x-env"); ok || v != "" || zero.Len() != 0 || zero.Labels() != nil || zero.String() != "" || !zero.IsZero() {
		t.Errorf("zero lane is not empty")
	}
	in := []Label{{"x-tenant", "acme"}, {"x-env", "staging"}}
	l, err := NewLane(in...)
	if err != nil {
		t.Fatal(err)
	}
	in[0].Value = "mutated" // the lane must not alias its input
	if v, ok := l.Get("x-tenant"); !ok || v != "acme" {
		t.Errorf("Get(x-tenant) = %q, %v", v, ok)
	}
	if _, ok := l.Get("x-missing"); ok {
		t.Errorf("Get(x-missing) found")
	}
	labels := l.Labels()
	if len(labels) != 2 || labels[0].Key != "x-env" || labels[1].Key != "x-tenant" {
		t.Errorf("Labels = %v, want sorted", labels)
	}
	labels[0].Value = "mutated" // the copy must not alias the lane
	if v, _ := l.Get("x-env"); v != "staging" {
		t.Errorf("Labels returned an alias: x-env = %q", v)
	}
	var keys []string
	for k := range l.All {
		keys = append(keys, k)
		break
	}
	if len(keys) != 1 || keys[0] != "x-env" {
		t.Errorf("All with early stop = %v", keys)
	}
}

func TestLaneContext(t *testing.T) {
	ctx := context.Background()
	if LaneFromContext(ctx).Len() != 0 {
		t.Fatal("background has a lane")
	}
	l, _ := NewLane(Label{"x-env", "staging"})
	ctx = ContextWithLane(ctx, l)
	if got := LaneFromContext(ctx).String(); got != "x-env=staging" {
		t.Errorf("LaneFromContext = %q", got)
	}
	if LaneFromContext(ContextWithLane(ctx, Lane{})).Len() != 0 {
		t.Errorf("empty lane did not clear")
	}
	var nilCtx context.Context
	if LaneFromContext(nilCtx).Len() != 0 || RequestIDFromContext(nilCtx) != "" || TraceIDFromContext(nilCtx) != "" {
		t.Errorf("nil ctx carries something")
	}
}

func TestRequestIDContext(t *testing.T) {
	ctx := ContextWithRequestID(context.Background(), "req-1")
	if got := RequestIDFromContext(ctx); got != "req-1" {
		t.Errorf("RequestIDFromContext = %q", got)
	}
	for _, bad := range []string{"", "a\r\nb", "\x00", strings.Repeat("r", MaxRequestIDLen+1), "ünicode"} {
		if got := RequestIDFromContext(ContextWithRequestID(ctx, bad)); got != "req-1" {
			t.Errorf("invalid id %q replaced the request id: %q", bad, got)
		}
	}
	if RequestIDFromContext(context.Background()) != "" {
		t.Errorf("background has a request id")
	}
}

func TestTraceIDFromContext(t *testing.T) {
	if got := TraceIDFromContext(context.Background()); got != "" {
		t.Errorf("TraceIDFromContext(background) = %q", got)
	}
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	if got := TraceIDFromContext(ctx); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("TraceIDFromContext = %q", got)
	}
}

func TestModeString(t *testing.T) {
	if ModePropagate.String() != "propagate" || ModeSpans.String() != "spans" || Mode(7).String() != "Mode(7)" {
		t.Errorf("Mode strings: %v %v %v", ModePropagate, ModeSpans, Mode(7))
	}
}
