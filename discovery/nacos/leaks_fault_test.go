//go:build fault

package nacos

import "go.uber.org/goleak"

// sdkRestartLeaks are the goroutines the SDK leaves for good when a
// client is closed while it reconnects to a restarted server, which only
// the fault tests do: the reconnect that succeeds after CloseClient
// keeps its new gRPC connection and blocks for ever in
// notifyConnectionChange, sending to the event loop CloseClient ended
// (nacos-sdk-go v2.3.5 rpc_client.go reconnect → notifyConnectionChange;
// seen in CI). The connection's goroutines are grpc-go's: this package
// makes no gRPC connection of its own, so every one here is the SDK's,
// and a client lightmesh forgot to close still shows by its SDK loops.
var sdkRestartLeaks = []goleak.Option{
	goleak.IgnoreTopFunction("github.com/nacos-group/nacos-sdk-go/v2/common/remote/rpc.(*RpcClient).notifyConnectionChange"),
	goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/transport.(*http2Client).reader"),
	goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/transport.(*http2Client).keepalive"),
	goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/transport.(*loopyWriter).run"),
	goleak.IgnoreAnyFunction("google.golang.org/grpc.(*addrConn).resetTransportAndUnlock"),
	goleak.IgnoreAnyFunction("github.com/nacos-group/nacos-sdk-go/v2/common/remote/rpc.(*GrpcClient).bindBiRequestStream.func1"),
}
