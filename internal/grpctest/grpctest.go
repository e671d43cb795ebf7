// Package grpctest holds a real gRPC test service for lightmesh's tests,
// benchmarks and examples: an Echo service served on a TCP loopback port,
// written with a hand-made service descriptor over protobuf's wrapper
// messages, so no protoc step is needed.
//
// The service answers with the server's name, counts its calls and open
// connections, records the metadata of the last call, and can be told to
// fail with a gRPC code or to answer slowly.
package grpctest

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The Echo service's full method names.
const (
	// CallMethod is unary: the reply is the server's name.
	CallMethod = "/lightmesh.test.Echo/Call"
	// StreamMethod is server streaming: the request is a count n and the
	// server sends n replies, each its name.
	StreamMethod = "/lightmesh.test.Echo/Stream"
	// ChatMethod is bidirectional: every message comes back prefixed with
	// the server's name and a colon.
	ChatMethod = "/lightmesh.test.Echo/Chat"
)

// Server is a real gRPC server running the Echo service on 127.0.0.1.
type Server struct {
	// Name is what the server answers with.
	Name string
	// Addr is host:port.
	Addr string
	// Code, when not OK, is the code every call fails with.
	Code atomic.Uint32
	// Delay is how long each unary call waits before answering, in ns.
	Delay atomic.Int64
	// Calls counts the calls received (unary and streams).
	Calls atomic.Int64
	// Conns is the number of client connections open now; Accepted counts
	// every connection ever accepted.
	Conns, Accepted atomic.Int64
	// Forward, when set, is called by each unary call with its context; the
	// reply is then the server's name, ">" and what Forward returned: a
	// hop of a call chain.
	Forward atomic.Pointer[func(context.Context) (string, error)]

	srv    *grpc.Server
	lastMD atomic.Value // metadata.MD
}

// Start starts a Server named name with opts (interceptors, say) and stops
// it when tb ends.
func Start(tb testing.TB, name string, opts ...grpc.ServerOption) *Server {
	tb.Helper()
	s, err := Serve(name, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// Serve starts a Server named name with opts on a free loopback port; Stop
// stops it.
func Serve(name string, opts ...grpc.ServerOption) (*Server, error) {
	s := &Server{Name: name}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.Addr = lis.Addr().String()
	s.srv = grpc.NewServer(opts...)
	s.srv.RegisterService(&serviceDesc, s)
	go s.srv.Serve(&countingListener{Listener: lis, s: s})
	return s, nil
}

// Stop stops the server at once, closing its connections.
func (s *Server) Stop() { s.srv.Stop() }

// GracefulStop stops accepting calls and waits for those in flight.
func (s *Server) GracefulStop() { s.srv.GracefulStop() }

// LastMetadata returns the metadata of the last call, or nil.
func (s *Server) LastMetadata() metadata.MD {
	md, _ := s.lastMD.Load().(metadata.MD)
	return md
}

func (s *Server) enter(ctx context.Context) error {
	s.Calls.Add(1)
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		s.lastMD.Store(md)
	}
	if c := codes.Code(s.Code.Load()); c != codes.OK {
		return status.Errorf(c, "%s fails with %v", s.Name, c)
	}
	return nil
}

func (s *Server) call(ctx context.Context, _ *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	if d := time.Duration(s.Delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if fwd := s.Forward.Load(); fwd != nil {
		next, err := (*fwd)(ctx)
		if err != nil {
			return nil, err
		}
		return wrapperspb.String(s.Name + ">" + next), nil
	}
	return wrapperspb.String(s.Name), nil
}

func (s *Server) stream(n *wrapperspb.Int32Value, stream grpc.ServerStream) error {
	if err := s.enter(stream.Context()); err != nil {
		return err
	}
	for range n.GetValue() {
		if err := stream.SendMsg(wrapperspb.String(s.Name)); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) chat(stream grpc.ServerStream) error {
	if err := s.enter(stream.Context()); err != nil {
		return err
	}
	for {
		var in wrapperspb.StringValue
		if err := stream.RecvMsg(&in); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if err := stream.SendMsg(wrapperspb.String(s.Name + ":" + in.GetValue())); err != nil {
			return err
		}
	}
}

// service is what the descriptor's handlers are registered for.
type service interface {
	call(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
	stream(*wrapperspb.Int32Value, grpc.ServerStream) error
	chat(grpc.ServerStream) error
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: "lightmesh.test.Echo",
	HandlerType: (*service)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Call",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			handler := func(ctx context.Context, req any) (any, error) {
				return srv.(service).call(ctx, req.(*wrapperspb.StringValue))
			}
			if interceptor == nil {
				return handler(ctx, in)
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: CallMethod}, handler)
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Stream",
		ServerStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			n := new(wrapperspb.Int32Value)
			if err := stream.RecvMsg(n); err != nil {
				return err
			}
			return srv.(service).stream(n, stream)
		},
	}, {
		StreamName:    "Chat",
		ServerStreams: true,
		ClientStreams: true,
		Handler:       func(srv any, stream grpc.ServerStream) error { return srv.(service).chat(stream) },
	}},
}

// StreamDesc describes StreamMethod and ChatDesc ChatMethod for
// ClientConn.NewStream.
var (
	StreamDesc = grpc.StreamDesc{StreamName: "Stream", ServerStreams: true}
	ChatDesc   = grpc.StreamDesc{StreamName: "Chat", ServerStreams: true, ClientStreams: true}
)

// Call makes one unary Echo call on conn and returns the answering
// server's name.
func Call(ctx context.Context, conn grpc.ClientConnInterface, opts ...grpc.CallOption) (string, error) {
	var out wrapperspb.StringValue
	if err := conn.Invoke(ctx, CallMethod, wrapperspb.String("hi"), &out, opts...); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}

// countingListener counts the connections of s.
type countingListener struct {
	net.Listener
	s *Server
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.s.Conns.Add(1)
	l.s.Accepted.Add(1)
	return &countingConn{Conn: c, s: l.s}, nil
}

type countingConn struct {
	net.Conn
	s      *Server
	closed atomic.Bool
}

func (c *countingConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.s.Conns.Add(-1)
	}
	return c.Conn.Close()
}
