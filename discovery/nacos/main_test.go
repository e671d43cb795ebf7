package nacos

import (
	"fmt"
	"net/http"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them,
// except those the SDK itself leaves behind after CloseClient: the
// lumberjack log file's mill goroutine, the UDP push receiver's handler,
// a config-change notification sent to the listen loop of a client
// closed meanwhile (asyncNotifyListenConfig sends on an unbuffered
// channel that nothing reads once the client is closed), and a listen
// round caught by CloseClient in the middle of a request, which waits
// out its reconnect loop (seen in the fleet benchmark's processes). The
// SDK logs in to a server with authentication on through
// http.DefaultTransport, whose idle connections are closed first.
func TestMain(m *testing.M) {
	code := m.Run()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(
			// Matched anywhere in the stack: the first two sit in a runtime wait.
			goleak.IgnoreAnyFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"),
			goleak.IgnoreAnyFunction("github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client/naming_http.(*PushReceiver).handleClient"),
			goleak.IgnoreTopFunction("github.com/nacos-group/nacos-sdk-go/v2/clients/config_client.(*ConfigClient).asyncNotifyListenConfig.func1"),
			goleak.IgnoreAnyFunction("github.com/nacos-group/nacos-sdk-go/v2/common/remote/rpc.waitReconnect"),
		); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
