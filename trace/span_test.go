package trace

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// testHandler is what mesh.Handler does with a Propagator; done is signalled
// after the server span has ended.
func testHandler(p *Propagator, next http.Handler, done chan<- struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := p.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := p.StartServer(ctx, r, AttrService.String("b"))
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r.WithContext(ctx))
		End(span, sw.code, nil)
		if done != nil {
			done <- struct{}{}
		}
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// testTransport is what mesh.Transport does with a Propagator.
type testTransport struct {
	p    *Propagator
	base http.RoundTripper
}

func (t testTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	req := r.Clone(r.Context())
	ctx, span := t.p.StartClient(req.Context(), req, AttrService.String("c"))
	t.p.Inject(ctx, propagation.HeaderCarrier(req.Header))
	// Routing would happen here, on req.Header.
	span.SetAttributes(AttrSubset.String(req.Header.Get("X-Env")), AttrInstance.String(req.URL.Host))
	resp, err := t.base.RoundTrip(req.WithContext(ctx))
	code := 0
	if resp != nil {
		code = resp.StatusCode
	}
	End(span, code, err)
	return resp, err
}

// chain runs client → B → C: B is served through testHandler and calls C
// through testTransport; C records the headers it received. It returns C's
// headers.
func chain(t *testing.T, p *Propagator, in http.Header) http.Header {
	t.Helper()
	got := make(chan http.Header, 1)
	c := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		w.WriteHeader(http.StatusTeapot)
	}))
	defer c.Close()

	base := &http.Transport{}
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: testTransport{p: p, base: base}}
	done := make(chan struct{}, 1)
	b := httptest.NewServer(testHandler(p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Service code: no header copying, only the context.
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, c.URL+"/c?x=1", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("B → C: %v", err)
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		w.WriteHeader(http.StatusAccepted)
	}), done))
	defer b.Close()

	req, _ := http.NewRequest(http.MethodPost, b.URL+"/b", nil)
	req.Header = in
	outer := &http.Transport{}
	defer outer.CloseIdleConnections()
	resp, err := outer.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("B answered %d", resp.StatusCode)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("B's handler did not finish")
	}
	return <-got
}

func TestPropagateOnlyCreatesNoSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	p := New(WithTracerProvider(tp))

	atC := chain(t, p, header("Traceparent", inTraceparent, "X-Env", "staging", "X-Request-Id", "req-7", "Baggage", "user=alice"))

	if n := len(rec.Started()); n != 0 {
		t.Errorf("%d spans started in propagate-only mode", n)
	}
	// No span in between: C's parent is A's span, same trace.
	if got := atC.Get("Traceparent"); got != inTraceparent {
		t.Errorf("traceparent at C = %q, want %q", got, inTraceparent)
	}
	if atC.Get("X-Env") != "staging" || atC.Get("X-Request-Id") != "req-7" {
		t.Errorf("headers at C: X-Env %q X-Request-Id %q", atC.Get("X-Env"), atC.Get("X-Request-Id"))
	}
	if m := members(t, atC); m["user"] != "alice" || m["lightmesh.lane.x-env"] != "staging" {
		t.Errorf("baggage at C = %v", m)
	}
}

func TestSpanModeParentChild(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	p := New(WithTracerProvider(tp), WithMode(ModeSpans))

	atC := chain(t, p, header("Traceparent", inTraceparent, "Baggage", "lightmesh.lane.x-env=staging"))

	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans ended, want 2 (server at B, client B → C)", len(spans))
	}
	var server, client sdktrace.ReadOnlySpan
	for _, s := range spans {
		switch s.SpanKind() {
		case trace.SpanKindServer:
			server = s
		case trace.SpanKindClient:
			client = s
		}
	}
	if server == nil || client == nil {
		t.Fatalf("want one server and one client span, got %v", spans)
	}
	if server.Parent().SpanID().String() != inSpanID || !server.Parent().IsRemote() || server.SpanContext().TraceID().String() != inTraceID {
		t.Errorf("server span parent = %v, want remote %s in trace %s", server.Parent(), inSpanID, inTraceID)
	}
	if client.Parent().SpanID() != server.SpanContext().SpanID() {
		t.Errorf("client span parent = %v, want server span %v", client.Parent().SpanID(), server.SpanContext().SpanID())
	}
	want := "00-" + inTraceID + "-" + client.SpanContext().SpanID().String() + "-01"
	if got := atC.Get("Traceparent"); got != want {
		t.Errorf("traceparent at C = %q, want the client span %q", got, want)
	}
	if server.Name() != "POST" || client.Name() != "GET" {
		t.Errorf("span names = %q, %q", server.Name(), client.Name())
	}

	checkAttrs(t, "server", server.Attributes(), map[attribute.Key]any{
		"http.request.method":       "POST",
		"url.path":                  "/b",
		"url.scheme":                "http",
		"server.address":            "127.0.0.1",
		"network.peer.address":      "127.0.0.1",
		"http.response.status_code": int64(202),
		AttrLane:                    "x-env=staging",
		AttrService:                 "b",
	})
	checkAttrs(t, "client", client.Attributes(), map[attribute.Key]any{
		"http.request.method":       "GET",
		"server.address":            "127.0.0.1",
		"http.response.status_code": int64(418),
		AttrLane:                    "x-env=staging",
		AttrService:                 "c",
		AttrSubset:                  "staging",
	})
	for _, kv := range client.Attributes() {
		if kv.Key == "url.full" {
			if u, err := url.Parse(kv.Value.AsString()); err != nil || u.Path != "/c" || u.RawQuery != "x=1" {
				t.Errorf("url.full = %q", kv.Value.AsString())
			}
		}
	}
	if server.Status().Code != codes.Unset || client.Status().Code != codes.Unset {
		t.Errorf("statuses = %v, %v; 2xx and 4xx are not errors", server.Status(), client.Status())
	}
}

func checkAttrs(t *testing.T, what string, got []attribute.KeyValue, want map[attribute.Key]any) {
	t.Helper()
	have := map[attribute.Key]any{}
	for _, kv := range got {
		have[kv.Key] = kv.Value.AsInterface()
	}
	for k, v := range want {
		if have[k] != v {
			t.Errorf("%s span %s = %v, want %v", what, k, have[k], v)
		}
	}
	if _, ok := have["server.port"]; !ok {
		t.Errorf("%s span has no server.port", what)
	}
}

func TestStartPropagateModeIsNoop(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	p := New(WithTracerProvider(tp))

	// The caller's own span must not be returned (End would end it).
	ctx, own := tp.Tracer("user").Start(context.Background(), "own")
	req := httptest.NewRequest(http.MethodGet, "http://svc/x", nil)
	cctx, span := p.StartClient(ctx, req)
	if cctx != ctx || span.IsRecording() || span.SpanContext().IsValid() {
		t.Errorf("StartClient in propagate mode returned a new ctx or a live span")
	}
	End(span, 500, errors.New("boom"))
	sctx, span := p.StartServer(ctx, req)
	if sctx != ctx || span.IsRecording() {
		t.Errorf("StartServer in propagate mode returned a new ctx or a live span")
	}
	End(span, 200, nil)
	if !own.IsRecording() {
		t.Errorf("the caller's span was ended")
	}
	own.End()
	if n := len(rec.Started()); n != 1 {
		t.Errorf("%d spans started, want only the caller's", n)
	}
	allocs := testing.AllocsPerRun(100, func() {
		_, s := p.StartClient(ctx, req)
		End(s, 200, nil)
	})
	if allocs != 0 {
		t.Errorf("StartClient+End in propagate mode allocates %.0f times", allocs)
	}
}

func TestEnd(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	p := New(WithTracerProvider(tp), WithMode(ModeSpans))
	req := httptest.NewRequest(http.MethodGet, "http://svc/x", nil)

	tests := []struct {
		code      int
		err       error
		wantCode  codes.Code
		wantErrTy string
	}{
		{200, nil, codes.Unset, ""},
		{404, nil, codes.Unset, ""},
		{503, nil, codes.Error, "503"},
		{0, context.DeadlineExceeded, codes.Error, "context.deadlineExceededError"},
		{42, nil, codes.Error, "42"},
	}
	for _, tt := range tests {
		_, span := p.StartClient(context.Background(), req)
		End(span, tt.code, tt.err)
		s := rec.Ended()[len(rec.Ended())-1]
		if s.Status().Code != tt.wantCode {
			t.Errorf("code %d err %v: status %v, want %v", tt.code, tt.err, s.Status().Code, tt.wantCode)
		}
		var errType, status any
		for _, kv := range s.Attributes() {
			switch kv.Key {
			case "error.type":
				errType = kv.Value.AsString()
			case "http.response.status_code":
				status = kv.Value.AsInt64()
			}
		}
		if tt.wantErrTy == "" && errType != nil || tt.wantErrTy != "" && errType != tt.wantErrTy {
			t.Errorf("code %d err %v: error.type = %v, want %q", tt.code, tt.err, errType, tt.wantErrTy)
		}
		if tt.code != 0 && status != int64(tt.code) || tt.code == 0 && status != nil {
			t.Errorf("code %d: http.response.status_code = %v", tt.code, status)
		}
		if tt.err != nil && len(s.Events()) == 0 {
			t.Errorf("err %v not recorded as an event", tt.err)
		}
	}
	End(nil, 500, errors.New("nil span is ignored"))
}

func TestStartAttributesEdgeCases(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	p := New(WithTracerProvider(tp), WithMode(ModeSpans))

	req := httptest.NewRequest("PURGE", "https://user:secret@svc.example/x?sig=abc&keep=1#frag", nil)
	_, span := p.StartClient(context.Background(), req, AttrRoute.String("r0"))
	End(span, 200, nil)
	_, span = p.StartServer(context.Background(), nil)
	End(span, 200, nil)
	_, span = p.StartClient(context.Background(), &http.Request{Method: "GET"})
	End(span, 200, nil)

	ended := rec.Ended()
	if ended[0].Name() != "HTTP" || ended[1].Name() != "HTTP" || ended[2].Name() != "GET" {
		t.Errorf("names = %q %q %q", ended[0].Name(), ended[1].Name(), ended[2].Name())
	}
	checkAttrs(t, "client", ended[0].Attributes(), map[attribute.Key]any{
		"http.request.method":          "_OTHER",
		"http.request.method_original": "PURGE",
		"url.full":                     "https://REDACTED:REDACTED@svc.example/x?sig=REDACTED&keep=1#frag",
		"server.address":               "svc.example",
		"server.port":                  int64(443),
		AttrRoute:                      "r0",
	})
}

func TestRedactQuery(t *testing.T) {
	for in, want := range map[string]string{
		"http://h/p":                            "http://h/p",
		"http://h/p?a=1":                        "http://h/p?a=1",
		"http://h/p?Signature=x&a=1":            "http://h/p?Signature=REDACTED&a=1",
		"http://h/p?a=1&X-Goog-Signature=s#f":   "http://h/p?a=1&X-Goog-Signature=REDACTED#f",
		"http://h/p?mysig=1&AWSAccessKeyId=k&s": "http://h/p?mysig=1&AWSAccessKeyId=REDACTED&s",
	} {
		if got := redactQuery(in); got != want {
			t.Errorf("redactQuery(%q) = %q, want %q", in, got, want)
		}
	}
}
