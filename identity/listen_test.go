package identity_test

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/identity"
)

// Closing a permissive server closes the connections whose first byte has
// not come yet, as closing a strict one does: they must not outlive the
// server (held open with a goroutine until the sniff times out).
func TestPermissiveCloseClosesSilentConnections(t *testing.T) {
	src, _ := workload(t, newCA(t), "/api")
	for _, mode := range []identity.Mode{identity.Strict, identity.Permissive} {
		t.Run(mode.String(), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.NotFoundHandler()}
			served := make(chan struct{})
			go func() { srv.Serve(identity.Listen(ln, identity.ServerTLSConfig(src), mode)); close(served) }()

			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			time.Sleep(100 * time.Millisecond) // the server has accepted it and waits for its first byte
			srv.Close()
			<-served

			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			start := time.Now()
			_, err = c.Read(make([]byte, 1))
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the connection is still open %v after the server closed", time.Since(start).Round(time.Millisecond))
			}
		})
	}
}
