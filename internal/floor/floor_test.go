package floor_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/lightmesh/lightmesh/internal/floor"
)

const baggage = "lightmesh.lane.x-env=staging"

// ctxSeen is a RoundTripper that keeps the context of the request it sent.
type ctxSeen struct {
	base http.RoundTripper
	ctx  context.Context
}

func (c *ctxSeen) RoundTrip(req *http.Request) (*http.Response, error) {
	c.ctx = req.Context()
	return c.base.RoundTrip(req)
}

// A floor is only a floor if it keeps the contracts lightmesh keeps: the
// caller's request unchanged, the request sent to the instance with the
// service's name as Host, the lane's baggage and the traceparent on the
// wire, and (with a Protection) a timeout that ends when the body is
// closed, not before.
func TestRoundTripperKeepsTheContract(t *testing.T) {
	var seen http.Header
	var host string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, host = r.Header.Clone(), r.Host
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	base := &ctxSeen{base: srv.Client().Transport}
	rt := &floor.RoundTripper{Base: base, Addr: strings.TrimPrefix(srv.URL, "http://"), LaneHeader: "X-Env",
		LaneBaggage: baggage, Trace: true, Protect: floor.NewProtection(time.Second, prometheus.NewRegistry())}

	req, err := http.NewRequestWithContext(floor.SampledParent(), http.MethodGet, "http://svc/path", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Env", "staging")
	wantHeader, wantURL := req.Header.Clone(), *req.URL
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := seen.Get("Baggage"); got != baggage {
		t.Errorf("server saw Baggage %q, want %q", got, baggage)
	}
	if got, want := seen.Get("Traceparent"), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"; got != want {
		t.Errorf("server saw Traceparent %q, want %q", got, want)
	}
	if host != "svc" {
		t.Errorf("server saw Host %q, want svc", host)
	}
	if !reflect.DeepEqual(req.Header, wantHeader) || *req.URL != wantURL || req.URL.Host != "svc" || req.Host != "svc" || req.Context().Err() != nil {
		t.Errorf("the caller's request changed: header %v, URL %v, Host %q", req.Header, req.URL, req.Host)
	}
	if err := base.ctx.Err(); err != nil {
		t.Fatalf("the timeout ended before the body was read: %v", err)
	}
	if _, ok := base.ctx.Deadline(); !ok {
		t.Error("the request sent has no deadline")
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "ok" {
		t.Errorf("body %q, %v", body, err)
	}
	if base.ctx.Err() == nil {
		t.Error("closing the body did not end the timeout")
	}
}

// The gRPC floor sends the lane's baggage and the traceparent and leaves
// the caller's outgoing metadata as it was.
func TestUnaryInterceptorSendsLaneAndTrace(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var seen metadata.MD
	var deadline bool
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		seen, _ = metadata.FromIncomingContext(ctx)
		_, deadline = ctx.Deadline()
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	defer srv.Stop()

	for _, p := range []*floor.Protection{nil, floor.NewProtection(time.Second, prometheus.NewRegistry())} {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithChainUnaryInterceptor(floor.UnaryInterceptor("x-env", baggage, p)))
		if err != nil {
			t.Fatal(err)
		}
		ctx := metadata.AppendToOutgoingContext(floor.SampledParent(), "x-env", "staging")
		if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if got := seen.Get("baggage"); len(got) != 1 || got[0] != baggage {
			t.Errorf("protection %v: server saw baggage %q, want %q", p != nil, got, baggage)
		}
		if got := seen.Get("traceparent"); len(got) != 1 || got[0] != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
			t.Errorf("protection %v: server saw traceparent %q", p != nil, got)
		}
		if deadline != (p != nil) {
			t.Errorf("protection %v: the call had a deadline: %v", p != nil, deadline)
		}
		if md, _ := metadata.FromOutgoingContext(ctx); len(md) != 1 {
			t.Errorf("protection %v: the caller's outgoing metadata changed: %v", p != nil, md)
		}
	}
}

// Without a Protection the floor still sends the trace, with its sampled
// flag as it is, and sends the lane's baggage only when the request has
// the lane header.
func TestRoundTripperWithoutProtection(t *testing.T) {
	var seen http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Clone()
	}))
	defer srv.Close()
	rt := &floor.RoundTripper{Base: srv.Client().Transport, Addr: strings.TrimPrefix(srv.URL, "http://"),
		LaneHeader: "X-Env", LaneBaggage: baggage, Trace: true}
	unsampled := oteltrace.ContextWithRemoteSpanContext(context.Background(),
		oteltrace.SpanContextFromContext(floor.SampledParent()).WithTraceFlags(0))
	for _, tc := range []struct {
		ctx                context.Context
		lane               bool
		baggage, traceprnt string
	}{
		{floor.SampledParent(), true, baggage, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{unsampled, false, "", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"},
		{context.Background(), true, baggage, ""},
	} {
		req, err := http.NewRequestWithContext(tc.ctx, http.MethodGet, "http://svc/path", nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.lane {
			req.Header.Set("X-Env", "staging")
		}
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := seen.Get("Baggage"); got != tc.baggage {
			t.Errorf("lane %v: server saw Baggage %q, want %q", tc.lane, got, tc.baggage)
		}
		if got := seen.Get("Traceparent"); got != tc.traceprnt {
			t.Errorf("server saw Traceparent %q, want %q", got, tc.traceprnt)
		}
	}
}
