package nacos

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/util"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
)

// TestCredentialsNeverShown runs meshes with a password, an access key
// and a secret key configured (the test server has authentication off, so
// it accepts them and ignores them): one against the server, one against
// an address where nothing listens, so that failures flow into logs,
// errors and the status. Neither the password, the access key nor the secret key, in any
// encoding, may show in the logs (the mesh's and the SDK's, through
// Config.Logger), the files the SDK writes in LogDir and CacheDir, any
// returned error, the Status, the status handler's views or the metrics.
func TestCredentialsNeverShown(t *testing.T) {
	const (
		deadPassword = `N4c0s<Pw>&9q`
		secretKey    = `Sk-L1ghtm3sh<&>7z`
		accessKey    = "AK-lightmesh-test-4711"
	)
	if raceEnabled() {
		// RamAuthClient.Login, every 5 s on an SDK goroutine, rewrites the
		// credentials each request reads (fixed upstream by
		// nacos-group/nacos-sdk-go#899, after v2.3.5).
		t.Skip("nacos-sdk-go v2.3.5 races with itself when an access key is set; .ci/run runs this test without -race")
	}
	live := testConfig(t)
	// A server with authentication on needs its real credentials; one
	// with it off ignores them.
	liveUser, livePassword := "lightmesh-ops", `L1ve<Pw>&7q`
	if live.Password != "" {
		liveUser, livePassword = live.Username, live.Password
	}
	var logs meshtest.LogBuffer
	dirs := t.TempDir()
	withSecrets := func(c Config, name, user, password string) Config {
		c.Username, c.Password = user, password
		c.AccessKey, c.SecretKey = accessKey, secretKey
		c.LogDir, c.CacheDir = filepath.Join(dirs, name, "log"), filepath.Join(dirs, name, "cache")
		c.Logger = logs.Logger()
		return c
	}
	cfg := withSecrets(live, "live", liveUser, livePassword)
	dead := withSecrets(Config{Addresses: []string{"127.0.0.1:1"}, TimeoutMs: 500}, "dead", "lightmesh-ops", deadPassword)
	seen := meshtest.Exposure{}
	t.Cleanup(func() {
		// After every client is closed: the SDK writes its files until then.
		seen.Add("mesh and SDK logs", logs.String())
		if seen.AddFiles(t, dirs) == 0 {
			t.Error("the SDK wrote no file to search")
		}
		seen.Check(t, livePassword, deadPassword, accessKey, secretKey)
	})

	service, group := unique("lm-secrets"), "LIGHTMESH_TEST"
	dataID := service + ".yaml"
	pub := newPublisher(t, cfg, group)
	version := pub.publish(t, dataID, meshtest.LaneRules(service))
	t.Cleanup(func() { pub.remove(t, dataID) })
	register(t, cfg, service, group, meshtest.NewBackend(t, "base-1"), "base")
	register(t, cfg, service, group, meshtest.NewBackend(t, "staging-1"), "staging")

	src, err := NewRuleSource(cfg, dataID, group)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := NewDiscovery(cfg, group)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	evs := make(events, 16)
	m := newMesh(t, mesh.WithRules(src), mesh.WithDiscovery(disc), mesh.WithLogger(logs.Logger()), mesh.WithRegisterer(reg), evs.hook())
	evs.wait(t, version, 20*time.Second)
	waitInstances(t, m, service, 2)
	client := &http.Client{Transport: m.Transport(nil)}
	meshtest.ExpectOnly(t, client, service, "", 5, "base-1")
	meshtest.ExpectOnly(t, client, service, "staging", 5, "staging-1")
	if got := fetch(t, cfg, dataID, group); got != meshtest.LaneRules(service) {
		t.Fatalf("Fetch = %q", got)
	}
	seen.AddStatus(t, "mesh", m.Status(), m.StatusHandler(), reg, service)

	// Nothing listens at dead's address: every call fails.
	_, err = Fetch(dead, dataID, group)
	seen.AddErr("Fetch from nowhere", err)
	seen.AddErr("Publish to nowhere", Publish(dead, dataID, group, "x: 1"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	deadSrc, err := NewRuleSource(dead, dataID, group)
	if err != nil {
		t.Fatal(err)
	}
	_, err = mesh.New(ctx, mesh.WithRules(deadSrc), mesh.WithLogger(logs.Logger()), mesh.WithStartTimeout(2*time.Second))
	if err == nil {
		t.Fatal("a mesh started with rules from nowhere")
	}
	seen.AddErr("mesh.New from nowhere", err)
	deadSrc.Close()

	deadSrc, err = NewRuleSource(dead, dataID, group)
	if err != nil {
		t.Fatal(err)
	}
	deadDisc, err := NewDiscovery(dead, group)
	if err != nil {
		t.Fatal(err)
	}
	deadReg := prometheus.NewRegistry()
	bad := newMesh(t, mesh.WithRules(deadSrc), mesh.WithDiscovery(deadDisc), mesh.WithServices(service),
		mesh.WithLogger(logs.Logger()), mesh.WithRegisterer(deadReg), mesh.WithStartEmpty(), mesh.WithStartTimeout(time.Second))
	meshtest.WaitFor(t, 20*time.Second, "the rule watch to fail", func() bool { return bad.Status().Watcher.LastError != "" })
	_, err = meshtest.Call(&http.Client{Transport: bad.Transport(nil)}, service, "")
	if err == nil {
		t.Fatal("a call through a mesh without instances succeeded")
	}
	seen.AddErr("call through the mesh without instances", err)
	seen.AddStatus(t, "mesh without a server", bad.Status(), bad.StatusHandler(), deadReg, service)

	_, err = Register(dead, service, group, meshtest.NewBackend(t, "x").Instance("base"))
	if err == nil {
		t.Fatal("Register to nowhere succeeded")
	}
	seen.AddErr("Register to nowhere", err)

	// The failures must have reached the places searched.
	if !strings.Contains(logs.String(), "127.0.0.1:1") {
		t.Errorf("the logs do not show the failures against 127.0.0.1:1:\n%s", logs.String())
	}
}

// TestSDKLogMasksEncodedSecrets: the SDK logs request parameters as JSON
// (http_agent: params:[%s] with util.ToJsonString), which escapes <, >
// and &; the masking catches those forms, and URL-escaped ones, too.
func TestSDKLogMasksEncodedSecrets(t *testing.T) {
	const password, secretKey = `pw<&>"1`, "sk/+ 2"
	var logs meshtest.LogBuffer
	cfg := Config{Password: password, SecretKey: secretKey, Logger: logs.Logger()}
	l := &sdkLogger{l: cfg.logger(), secrets: cfg.secrets()}
	l.Errorf("request params:[%s]", util.ToJsonString(map[string]string{"username": "ops", "password": password}))
	l.Errorf("request path[%s?accessKey=ak&secretKey=%s&p=%s]", "/x", url.QueryEscape(secretKey), url.PathEscape(password))
	l.Warn("plain ", password, " ", secretKey)
	seen := meshtest.Exposure{"log": logs.String()}
	seen.Check(t, password, secretKey)
	if n := strings.Count(logs.String(), "***"); n != 5 {
		t.Errorf("masked %d secrets, want 5:\n%s", n, logs.String())
	}
}

// TestSDKLogMasksAccessTokensAndQuotes: the access token the SDK gets at
// login, in the shapes it logs request headers, is masked although no
// Config field holds it; and a secret ending in a quote is masked whole
// in its JSON form.
func TestSDKLogMasksAccessTokensAndQuotes(t *testing.T) {
	const token, password = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJuYWNvcyJ9.c2lnbmF0dXJl", `ends-with-quote"`
	var logs meshtest.LogBuffer
	cfg := Config{Password: password, Logger: logs.Logger()}
	l := &sdkLogger{l: cfg.logger(), secrets: cfg.secrets()}
	l.Debugf("request=%+v", map[string]string{"accessToken": token})
	l.Debugf("request headers %s", util.ToJsonString(map[string]string{"accessToken": token, "app": "lightmesh"}))
	l.Infof("login ok, accessToken=%s tokenTtl=18000", token)
	// The shapes nacos-sdk-go v2.3.2 logs a gRPC request in at debug level.
	const other = "opaque-token-7f3a"
	l.Debugf(`request=headers:<key:"accessToken" value:"%s" > body:<value:"{\"headers\":{\"accessToken\":\"%s\"},\"app\":\"lightmesh\"}" >`, other, other)
	l.Debugf(`header:[{"accessToken":["%s"]}]`, other)
	l.Debugf("GET /nacos/v1/cs/configs?accessToken=%s&dataId=rules&group=G", other)
	l.Errorf("request params:[%s]", util.ToJsonString(map[string]string{"password": password}))
	seen := meshtest.Exposure{"log": logs.String()}
	seen.Check(t, token, other, password, `quote\`)
	if !strings.Contains(logs.String(), "lightmesh") || !strings.Contains(logs.String(), "tokenTtl=18000") || !strings.Contains(logs.String(), "&dataId=rules&group=G") {
		t.Errorf("masking took more than the token:\n%s", logs.String())
	}
}
