package etcd

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/lightmesh/lightmesh/discovery/etcd/etcdtest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
)

// zapBuffer returns a zap logger writing every level as JSON into buf.
func zapBuffer(buf *meshtest.LogBuffer) *zap.Logger {
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.AddSync(buf), zapcore.DebugLevel))
}

// TestCredentialsNeverShown runs meshes over an etcd with authentication
// on: one with the right password, one whose client has a wrong one (so
// authentication errors flow into logs, watch errors and the status), and
// checks neither password shows in the logs (the mesh's, the sources'
// and the etcd client's own), any returned error, the Status, the status
// handler's JSON, HTML and explain views, or the metrics.
func TestCredentialsNeverShown(t *testing.T) {
	const (
		password      = "S3cret-Root-Pw-7f1c"
		wrongPassword = "Wr0ng-Root-Pw-51ab"
	)
	srv := etcdtest.Start(t)
	seen := meshtest.Exposure{}
	var logs, clientLogs meshtest.LogBuffer
	t.Cleanup(func() {
		seen.Add("mesh and source logs", logs.String())
		seen.Add("etcd client logs", clientLogs.String())
		seen.Check(t, password, wrongPassword)
	})
	newClient := func(pw string) (*clientv3.Client, error) {
		cfg, err := srv.ClientConfig()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Username, cfg.Password, cfg.Logger = etcdtest.RootUser, pw, zapBuffer(&clientLogs)
		return clientv3.New(cfg)
	}
	// Created while authentication is off, this client connects; once it
	// is on, each of its requests fails to authenticate.
	wrong, err := newClient(wrongPassword)
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()

	root := srv.EnableAuth(t, password)
	_, err = newClient(wrongPassword)
	if err == nil {
		t.Fatal("a client with a wrong password was created once auth was on")
	}
	seen.AddErr("clientv3.New with a wrong password", err)

	good, err := newClient(password)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	const key = "/lightmesh-test/rules/secrets"
	put(t, root, key, laneRules)
	registerFleet(t, root)
	l := logs.Logger()

	reg := prometheus.NewRegistry()
	m := newMesh(t, mesh.WithRules(NewRuleSource(good, key, WithLogger(l))), mesh.WithDiscovery(NewDiscovery(good, testPrefix, WithLogger(l))),
		mesh.WithLogger(l), mesh.WithRegisterer(reg))
	waitInstances(t, m, 2)
	client := &http.Client{Transport: m.Transport(nil)}
	meshtest.ExpectOnly(t, client, "user-api", "", 5, "base-1")
	meshtest.ExpectOnly(t, client, "user-api", "staging", 5, "staging-1")
	seen.AddStatus(t, "mesh with the right password", m.Status(), m.StatusHandler(), reg, "user-api")

	// The wrong password: New fails for want of rules, and a mesh started
	// empty keeps failing to watch.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = mesh.New(ctx, mesh.WithRules(NewRuleSource(wrong, key, WithLogger(l))), mesh.WithLogger(l), mesh.WithStartTimeout(time.Second))
	if err == nil {
		t.Fatal("a mesh whose client cannot authenticate started with rules")
	}
	seen.AddErr("mesh.New with a wrong password", err)

	badReg := prometheus.NewRegistry()
	bad := newMesh(t, mesh.WithRules(NewRuleSource(wrong, key, WithLogger(l))), mesh.WithDiscovery(NewDiscovery(wrong, testPrefix, WithLogger(l))),
		mesh.WithServices("user-api"), mesh.WithLogger(l), mesh.WithRegisterer(badReg),
		mesh.WithStartEmpty(), mesh.WithStartTimeout(time.Second))
	meshtest.WaitFor(t, 10*time.Second, "the rule watch to fail to authenticate", func() bool {
		return strings.Contains(bad.Status().Watcher.LastError, "authentication failed")
	})
	_, err = meshtest.Call(&http.Client{Transport: bad.Transport(nil)}, "user-api", "")
	if err == nil {
		t.Fatal("a call through the mesh that cannot read instances succeeded")
	}
	seen.AddErr("call through the mesh with a wrong password", err)
	seen.AddStatus(t, "mesh with a wrong password", bad.Status(), bad.StatusHandler(), badReg, "user-api")

	_, err = Register(ctx, wrong, testPrefix, "user-api", "x", meshtest.NewBackend(t, "x").Instance("base"), 10*time.Second)
	if err == nil {
		t.Fatal("Register with a wrong password succeeded")
	}
	seen.AddErr("Register with a wrong password", err)

	// The failures must have been seen where a leak would show, or the
	// search proves nothing.
	if !strings.Contains(logs.String(), "authentication failed") {
		t.Errorf("the mesh logged no authentication failure:\n%s", logs.String())
	}
	var all bytes.Buffer
	for _, s := range seen {
		all.WriteString(s)
	}
	if n := strings.Count(all.String(), "authentication failed"); n < 3 {
		t.Errorf("authentication failures gathered: %d, want at least 3 (errors and status)", n)
	}
}
