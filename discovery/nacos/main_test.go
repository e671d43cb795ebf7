package nacos

import (
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

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
//
// A client closed while its reconnect loop is in a server check or in
// the back-off sleep after one (the tests that point a client at the
// unreachable 127.0.0.1:1 leave one there) finishes that round before it
// sees the shutdown: up to the SDK's 3 s initial gRPC timeout plus its
// back-off of at most 5 s, with a gRPC connection open meanwhile. The
// check waits up to leftoverWait for such rounds to end, so a goroutine
// that never ends still fails the run but one that is ending does not.
func TestMain(m *testing.M) {
	code := m.Run()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if code == 0 {
		if err := findLeaks(leftoverWait); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// leftoverWait bounds how long TestMain waits for a closed SDK client's
// last reconnect round (see TestMain).
const leftoverWait = 15 * time.Second

// findLeaks reports the goroutines still running after wait, other than
// those the SDK leaves behind for good (listed in TestMain's comment;
// the fault build adds sdkRestartLeaks).
func findLeaks(wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		err := goleak.Find(append([]goleak.Option{
			// Matched anywhere in the stack: the first two sit in a runtime wait.
			goleak.IgnoreAnyFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"),
			goleak.IgnoreAnyFunction("github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client/naming_http.(*PushReceiver).handleClient"),
			goleak.IgnoreTopFunction("github.com/nacos-group/nacos-sdk-go/v2/clients/config_client.(*ConfigClient).asyncNotifyListenConfig.func1"),
			goleak.IgnoreAnyFunction("github.com/nacos-group/nacos-sdk-go/v2/common/remote/rpc.waitReconnect"),
		}, sdkRestartLeaks...)...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
}
