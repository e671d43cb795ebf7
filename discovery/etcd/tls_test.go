package etcd

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lightmesh/lightmesh/discovery/etcd/etcdtest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
)

// TestTLS runs a mesh over an etcd that serves clients over TLS only,
// with a CA generated for the test: a client trusting that CA reads the
// rules and the instances and calls reach the backends; a client that
// does not trust it, or speaks plaintext, fails with an error that says
// why.
func TestTLS(t *testing.T) {
	srv := etcdtest.StartTLS(t, etcdtest.TLSOptions{})
	cli := srv.Client(t) // trusts the server's CA
	const key = "/lightmesh-test/rules/tls"
	put(t, cli, key, laneRules)
	registerFleet(t, cli)

	m := newMesh(t, mesh.WithRules(NewRuleSource(cli, key)), mesh.WithDiscovery(NewDiscovery(cli, testPrefix)))
	waitInstances(t, m, 2)
	client := &http.Client{Transport: m.Transport(nil)}
	meshtest.ExpectOnly(t, client, "user-api", "", 5, "base-1")
	meshtest.ExpectOnly(t, client, "user-api", "staging", 5, "staging-1")

	// A client that cannot connect waits: the mesh gets no document and
	// says only that; Check and the etcd client's logger name the cause.
	for _, tc := range []struct {
		name string
		tls  *tls.Config
		want string
	}{
		{"CA not trusted", &tls.Config{MinVersion: tls.VersionTLS12}, "certificate signed by unknown authority"},
		{"plaintext", nil, "does it require TLS?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := etcdtest.NewClientConfig(srv.Endpoint())
			var logs meshtest.LogBuffer
			cfg.TLS, cfg.Logger = tc.tls, zapBuffer(&logs)
			cli, err := clientv3.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			m, err := mesh.New(ctx, mesh.WithRules(NewRuleSource(cli, key)), mesh.WithStartTimeout(time.Second))
			if err == nil {
				m.Close()
				t.Fatal("mesh.New succeeded over a client that cannot connect")
			}
			checkCtx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			err = Check(checkCtx, cli)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check: %v, want an error containing %q", err, tc.want)
			}
			if tc.tls != nil && !strings.Contains(logs.String(), tc.want) {
				t.Errorf("the etcd client's log does not say %q:\n%s", tc.want, logs.String())
			}
		})
	}
	checkCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := Check(checkCtx, cli); err != nil {
		t.Fatalf("Check over the trusting client: %v", err)
	}
}

// TestTLSClientCertificate: a server that requires client certificates
// serves a client presenting one signed by its CA and refuses one that
// presents none.
func TestTLSClientCertificate(t *testing.T) {
	srv := etcdtest.StartTLS(t, etcdtest.TLSOptions{ClientCertAuth: true})
	cli := srv.Client(t) // presents the client certificate
	const key = "/lightmesh-test/rules/mtls"
	put(t, cli, key, laneRules)
	registerFleet(t, cli)
	m := newMesh(t, mesh.WithRules(NewRuleSource(cli, key)), mesh.WithDiscovery(NewDiscovery(cli, testPrefix)))
	waitInstances(t, m, 2)
	meshtest.ExpectOnly(t, &http.Client{Transport: m.Transport(nil)}, "user-api", "staging", 5, "staging-1")

	cfg := etcdtest.NewClientConfig(srv.Endpoint())
	var err error
	if cfg.TLS, err = srv.TLS().ClientTLS(false); err != nil {
		t.Fatal(err)
	}
	noCert, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer noCert.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// Under TLS 1.3 the server refuses the missing certificate after the
	// client has finished its handshake, so the error is either the
	// server's alert (certificate required) or a broken connection.
	if err := Check(ctx, noCert); err == nil {
		t.Fatal("Check without a client certificate succeeded")
	}
}

// TestCheck: Check passes over a working client, refuses a ctx without a
// deadline, and reports a wrong password without showing it.
func TestCheck(t *testing.T) {
	srv := etcdtest.Start(t)
	const password, wrongPassword = "Ch3ck-Pw-9d2e", "Ch3ck-Wr0ng-4b7a"
	cfg := etcdtest.NewClientConfig(srv.Endpoint())
	cfg.Username, cfg.Password = etcdtest.RootUser, wrongPassword
	wrong, err := clientv3.New(cfg) // auth is still off: it connects
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	root := srv.EnableAuth(t, password)
	if err := Check(context.Background(), root); err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("Check without a deadline: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := Check(ctx, root); err != nil {
		t.Fatalf("Check as root: %v", err)
	}
	err = Check(ctx, wrong)
	if err == nil || !strings.Contains(err.Error(), "authentication failed") || strings.Contains(err.Error(), wrongPassword) {
		t.Fatalf("Check with a wrong password: %v, want the authentication failure without the password", err)
	}
}
