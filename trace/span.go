package trace

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Mesh span attribute keys. StartClient and StartServer set AttrLane; the
// caller adds the others (as attrs, or later with span.SetAttributes) once
// routing has decided them.
const (
	// AttrService is the logical destination (client) or local (server)
	// service name.
	AttrService = attribute.Key("lightmesh.service")
	// AttrSubset is the subset the router picked.
	AttrSubset = attribute.Key("lightmesh.subset")
	// AttrInstance is the instance (address or id) the balancer picked.
	AttrInstance = attribute.Key("lightmesh.instance")
	// AttrRoute is the name or index of the matched route.
	AttrRoute = attribute.Key("lightmesh.route")
	// AttrLane is the request's lane as Lane.String, e.g. "x-env=staging".
	AttrLane = attribute.Key("lightmesh.lane")
	// AttrReason is why the mesh refused or failed a call: no_route,
	// no_instance, circuit_open, rate_limited, timeout, retries_exhausted,
	// upstream_failure. Absent when the call succeeded.
	AttrReason = attribute.Key("lightmesh.reason")
)

// nonRecordingSpan returns otel's shared no-op span without allocating.
func nonRecordingSpan() trace.Span {
	return trace.SpanFromContext(context.Background())
}

// StartClient starts a client span for the outgoing request r as a child of
// the span in ctx and returns a context carrying it; pass that context to
// Inject so the next hop's parent is this span, and finish the span with End.
// The span is named after the method and carries http.request.method,
// url.full (user info redacted), server.address, server.port, lightmesh.lane
// (when ctx has a lane) and attrs.
//
// In ModePropagate it creates nothing and returns ctx and a non-recording
// span on which End does nothing. A nil r gives a span named "HTTP" with
// attrs only.
func (p *Propagator) StartClient(ctx context.Context, r *http.Request, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if p.mode != ModeSpans {
		return ctx, nonRecordingSpan()
	}
	kv := make([]attribute.KeyValue, 0, 8+len(attrs))
	name := "HTTP"
	if r != nil {
		var method attribute.KeyValue
		name, method = methodAttr(r.Method)
		kv = append(kv, method)
		if method.Value.AsString() == "_OTHER" {
			kv = append(kv, semconv.HTTPRequestMethodOriginal(r.Method))
		}
		if r.URL != nil {
			kv = append(kv, semconv.URLFull(redactedURL(r.URL)))
			kv = appendServer(kv, r.URL.Host, r.URL.Scheme == "https")
		}
	}
	kv = appendLane(kv, ctx)
	kv = append(kv, attrs...)
	return p.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(kv...))
}

// StartServer starts a server span for the incoming request r and returns a
// context carrying it. Call it with the context returned by Extract, so the
// span's parent is the remote caller's span; finish it with End. The span is
// named after the method and carries http.request.method, url.path,
// url.scheme, server.address, server.port, network.peer.address,
// user_agent.original, lightmesh.lane (when ctx has a lane) and attrs.
//
// In ModePropagate it creates nothing and returns ctx and a non-recording
// span on which End does nothing. A nil r gives a span named "HTTP" with
// attrs only.
func (p *Propagator) StartServer(ctx context.Context, r *http.Request, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if p.mode != ModeSpans {
		return ctx, nonRecordingSpan()
	}
	kv := make([]attribute.KeyValue, 0, 10+len(attrs))
	name := "HTTP"
	if r != nil {
		var method attribute.KeyValue
		name, method = methodAttr(r.Method)
		kv = append(kv, method)
		if method.Value.AsString() == "_OTHER" {
			kv = append(kv, semconv.HTTPRequestMethodOriginal(r.Method))
		}
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		kv = append(kv, semconv.URLScheme(scheme))
		if r.URL != nil {
			kv = append(kv, semconv.URLPath(r.URL.Path))
		}
		kv = appendServer(kv, r.Host, r.TLS != nil)
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil && host != "" {
			kv = append(kv, semconv.NetworkPeerAddress(host))
		}
		if ua := r.UserAgent(); ua != "" {
			kv = append(kv, semconv.UserAgentOriginal(ua))
		}
	}
	kv = appendLane(kv, ctx)
	kv = append(kv, attrs...)
	return p.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(kv...))
}

// End records the outcome of an HTTP exchange on span and ends it:
// http.response.status_code when statusCode is not 0; when err is not nil,
// the error (error.type, an exception event and Error status); otherwise when
// statusCode is 5xx or not a valid status code, error.type set to the code
// and Error status. 4xx responses are not marked as errors. A nil span is
// ignored; on a non-recording span End only calls span.End.
func End(span trace.Span, statusCode int, err error) {
	if span == nil {
		return
	}
	if span.IsRecording() {
		var kv [2]attribute.KeyValue
		n := 0
		if statusCode != 0 {
			kv[n] = semconv.HTTPResponseStatusCode(statusCode)
			n++
		}
		switch {
		case err != nil:
			kv[n] = semconv.ErrorType(err)
			n++
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		case statusCode >= 500 || (statusCode != 0 && statusCode < 100):
			kv[n] = semconv.ErrorTypeKey.String(strconv.Itoa(statusCode))
			n++
			span.SetStatus(codes.Error, "")
		}
		if n > 0 {
			span.SetAttributes(kv[:n]...)
		}
	}
	span.End()
}

// methodAttr returns the span name and http.request.method attribute for
// method: known methods as themselves, others as "HTTP" and "_OTHER". An
// empty method means GET, as in net/http.
func methodAttr(method string) (string, attribute.KeyValue) {
	switch method {
	case "", http.MethodGet:
		return http.MethodGet, semconv.HTTPRequestMethodGet
	case http.MethodPost:
		return method, semconv.HTTPRequestMethodPost
	case http.MethodPut:
		return method, semconv.HTTPRequestMethodPut
	case http.MethodDelete:
		return method, semconv.HTTPRequestMethodDelete
	case http.MethodHead:
		return method, semconv.HTTPRequestMethodHead
	case http.MethodPatch:
		return method, semconv.HTTPRequestMethodPatch
	case http.MethodOptions:
		return method, semconv.HTTPRequestMethodOptions
	case http.MethodConnect:
		return method, semconv.HTTPRequestMethodConnect
	case http.MethodTrace:
		return method, semconv.HTTPRequestMethodTrace
	case "QUERY":
		return method, semconv.HTTPRequestMethodQuery
	}
	return "HTTP", semconv.HTTPRequestMethodOther
}

// appendServer appends server.address and server.port parsed from hostport,
// using the scheme's default port when hostport has none.
func appendServer(kv []attribute.KeyValue, hostport string, tls bool) []attribute.KeyValue {
	if hostport == "" {
		return kv
	}
	host, port := hostport, ""
	if h, pt, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, pt
	} else {
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	if host == "" {
		return kv
	}
	kv = append(kv, semconv.ServerAddress(host))
	n, err := strconv.Atoi(port)
	switch {
	case err == nil && n > 0 && n < 65536:
		kv = append(kv, semconv.ServerPort(n))
	case port == "" && tls:
		kv = append(kv, semconv.ServerPort(443))
	case port == "":
		kv = append(kv, semconv.ServerPort(80))
	}
	return kv
}

// appendLane appends lightmesh.lane when ctx has a lane.
func appendLane(kv []attribute.KeyValue, ctx context.Context) []attribute.KeyValue {
	if l := LaneFromContext(ctx); l.Len() > 0 {
		kv = append(kv, AttrLane.String(l.String()))
	}
	return kv
}

// sensitiveQueryParams are query parameters whose values semantic
// conventions require redacting from url.full.
var sensitiveQueryParams = [...]string{"AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature"}

// redactedURL returns u as a string with user info replaced by
// "REDACTED:REDACTED" and sensitive query parameter values by "REDACTED".
func redactedURL(u *url.URL) string {
	if u.User != nil {
		c := *u
		c.User = url.UserPassword("REDACTED", "REDACTED")
		return redactQuery(c.String())
	}
	return redactQuery(u.String())
}

// redactQuery replaces the values of sensitiveQueryParams in the query of the
// URL string s.
func redactQuery(s string) string {
	q := strings.IndexByte(s, '?')
	if q < 0 {
		return s
	}
	hit := false
	for _, name := range sensitiveQueryParams {
		if strings.Contains(s[q:], name+"=") {
			hit = true
			break
		}
	}
	if !hit {
		return s
	}
	frag := ""
	rest := s[q+1:]
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		rest, frag = rest[:i], rest[i:]
	}
	parts := strings.Split(rest, "&")
	for i, part := range parts {
		k, _, ok := strings.Cut(part, "=")
		if ok {
			for _, name := range sensitiveQueryParams {
				if k == name {
					parts[i] = k + "=REDACTED"
					break
				}
			}
		}
	}
	return s[:q+1] + strings.Join(parts, "&") + frag
}

// StartRPCClient starts a client span for the gRPC call fullMethod
// (/pkg.Service/Method) to the logical service, as a child of the span in
// ctx, following the RPC semantic conventions: named pkg.Service/Method,
// with rpc.system.name grpc, rpc.method, server.address (service),
// lightmesh.lane (when ctx has a lane) and attrs. Finish it with EndRPC. In
// ModePropagate it creates nothing and returns ctx and a non-recording span.
func (p *Propagator) StartRPCClient(ctx context.Context, fullMethod, service string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if p.mode != ModeSpans {
		return ctx, nonRecordingSpan()
	}
	name := strings.TrimPrefix(fullMethod, "/")
	kv := make([]attribute.KeyValue, 0, 5+len(attrs))
	kv = append(kv, semconv.RPCSystemNameGRPC, semconv.RPCMethod(name))
	if service != "" {
		kv = append(kv, semconv.ServerAddress(service))
	}
	kv = appendLane(kv, ctx)
	kv = append(kv, attrs...)
	return p.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(kv...))
}

// StartRPCServer starts a server span for the incoming gRPC call
// fullMethod from peer (an address; "" when unknown). Call it with the
// context Extract returned, so the span's parent is the remote caller's.
// In ModePropagate it creates nothing.
func (p *Propagator) StartRPCServer(ctx context.Context, fullMethod, peer string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if p.mode != ModeSpans {
		return ctx, nonRecordingSpan()
	}
	name := strings.TrimPrefix(fullMethod, "/")
	kv := make([]attribute.KeyValue, 0, 5+len(attrs))
	kv = append(kv, semconv.RPCSystemNameGRPC, semconv.RPCMethod(name))
	if host, _, err := net.SplitHostPort(peer); err == nil && host != "" {
		kv = append(kv, semconv.NetworkPeerAddress(host))
	}
	kv = appendLane(kv, ctx)
	kv = append(kv, attrs...)
	return p.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(kv...))
}

// EndRPC records the outcome of a gRPC call on span and ends it:
// rpc.response.status_code is codeName (DEADLINE_EXCEEDED); failed marks
// the span as an error, with err recorded when it is not nil. A nil span is
// ignored; on a non-recording span EndRPC only calls span.End.
func EndRPC(span trace.Span, codeName string, failed bool, err error) {
	if span == nil {
		return
	}
	if span.IsRecording() {
		span.SetAttributes(semconv.RPCResponseStatusCode(codeName))
		if failed {
			span.SetAttributes(semconv.ErrorTypeKey.String(codeName))
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			} else {
				span.SetStatus(codes.Error, codeName)
			}
		}
	}
	span.End()
}
