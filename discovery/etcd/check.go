package etcd

import (
	"context"
	"errors"
	"fmt"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// Check asks the etcd server cli is connected to for its status and
// returns nil once it answers. It is meant for startup, before mesh.New:
// the etcd client waits for a connection it cannot make (a certificate
// signed by an unknown authority, plaintext to a TLS-only server, a wrong
// address) and its calls then fail with a bare context.DeadlineExceeded,
// while Check's error carries the reason, such as
//
//	etcd: check 127.0.0.1:2379: ... transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority
//
// (with advice where the reason alone is obscure, as for plaintext to a
// TLS server). A wrong user name or password fails it too, since the status is served
// to authenticated users only. Check waits until the server answers or ctx
// ends: give ctx a deadline. Credentials never appear in its error.
func Check(ctx context.Context, cli *clientv3.Client) error {
	if cli == nil {
		return errors.New("etcd: check: no client")
	}
	if _, ok := ctx.Deadline(); !ok {
		return errors.New("etcd: check: ctx has no deadline")
	}
	// Through the connection's own stub: the client's Maintenance API
	// would replace the connection error with ctx.Err().
	_, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Status(ctx, &pb.StatusRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("etcd: check %s: %w%s", strings.Join(cli.Endpoints(), ","), err, checkHint(err.Error()))
	}
	return nil
}

// checkHint returns advice for the connection errors whose text does not
// say what is wrong.
func checkHint(msg string) string {
	switch {
	case strings.Contains(msg, "error reading server preface: ") && !strings.Contains(msg, "tls:"):
		return " (the server closed a plaintext connection: does it require TLS?)"
	case strings.Contains(msg, "authentication handshake failed: EOF"):
		return " (the server closed the TLS handshake: does it serve plaintext, or need a client certificate?)"
	}
	return ""
}
