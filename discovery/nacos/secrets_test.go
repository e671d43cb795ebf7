package nacos

import (
	"context"
	"encoding/json"
	"html"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/util"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
)

// exposure gathers everything a run shows an operator or a log pipeline,
// by where it came from, to search it for secrets.
type exposure map[string]string

func (e exposure) add(where, s string) { e[where] += s + "\n" }

func (e exposure) addErr(where string, err error) {
	if err != nil {
		e.add(where, err.Error())
	}
}

// addMesh gathers m's Status (as JSON), what its StatusHandler serves
// (JSON, the HTML page, the explain view of service) and the metrics reg
// serves.
func (e exposure) addMesh(t *testing.T, name string, m *mesh.Mesh, reg *prometheus.Registry, service string) {
	t.Helper()
	js, err := json.Marshal(m.Status())
	if err != nil {
		t.Fatal(err)
	}
	e.add(name+" Status()", string(js))
	get := func(h http.Handler, target string) string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("%s %s: status %d: %s", name, target, rec.Code, rec.Body)
		}
		return rec.Body.String()
	}
	e.add(name+" status handler", get(m.StatusHandler(), "/lightmesh/status"))
	e.add(name+" status page", get(m.StatusHandler(), "/lightmesh/status?format=html"))
	e.add(name+" explain", get(m.StatusHandler(), "/lightmesh/status?explain&service="+service+"&header=x-env:staging"))
	e.add(name+" metrics", get(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), "/metrics"))
}

// addFiles gathers the content of every file under dir.
func (e exposure) addFiles(t *testing.T, dir string) (n int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		e.add("file "+path, string(data))
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// forms returns secret as it is and as the encoders that log lines and
// pages pass it through would write it: JSON, Go quoting (slog's text
// handler), HTML, URL query and path.
func forms(secret string) []string {
	js, _ := json.Marshal(secret)
	return []string{secret, strings.Trim(string(js), `"`), strings.Trim(strconv.Quote(secret), `"`),
		html.EscapeString(secret), url.QueryEscape(secret), url.PathEscape(secret)}
}

// leaks returns where in e any form of any of secrets shows.
func (e exposure) leaks(secrets ...string) []string {
	var out []string
	for where, s := range e {
		if slices.ContainsFunc(secrets, func(secret string) bool {
			return slices.ContainsFunc(forms(secret), func(f string) bool { return strings.Contains(s, f) })
		}) {
			out = append(out, where)
		}
	}
	return out
}

// check fails t when a secret shows anywhere in e.
func (e exposure) check(t *testing.T, secrets ...string) {
	t.Helper()
	for _, where := range e.leaks(secrets...) {
		t.Errorf("a secret shows in %s:\n%s", where, e[where])
	}
}

func TestExposureFindsSecrets(t *testing.T) {
	e := exposure{}
	e.add("log", "connected")
	e.add("json log", `{"params":{"password":"pw\u003c1\u003e"}}`)
	e.addErr("error", &url.Error{Op: "Get", URL: "http://h/?password=pw%3C1%3E", Err: os.ErrDeadlineExceeded})
	if got := e.leaks("pw<1>"); len(got) != 2 {
		t.Fatalf("leaks = %v, want the JSON log and the error", got)
	}
}

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
		password  = `N4c0s<Pw>&9q`
		secretKey = `Sk-L1ghtm3sh<&>7z`
		accessKey = "AK-lightmesh-test-4711"
	)
	live := testConfig(t)
	var logs meshtest.LogBuffer
	dirs := t.TempDir()
	withSecrets := func(c Config, name string) Config {
		c.Username, c.Password = "lightmesh-ops", password
		c.AccessKey, c.SecretKey = accessKey, secretKey
		c.LogDir, c.CacheDir = filepath.Join(dirs, name, "log"), filepath.Join(dirs, name, "cache")
		c.Logger = logs.Logger()
		return c
	}
	cfg := withSecrets(live, "live")
	dead := withSecrets(Config{Addresses: []string{"127.0.0.1:1"}, TimeoutMs: 500}, "dead")
	seen := exposure{}
	t.Cleanup(func() {
		// After every client is closed: the SDK writes its files until then.
		seen.add("mesh and SDK logs", logs.String())
		if seen.addFiles(t, dirs) == 0 {
			t.Error("the SDK wrote no file to search")
		}
		seen.check(t, password, accessKey, secretKey)
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
	if got, err := Fetch(cfg, dataID, group); err != nil || got != meshtest.LaneRules(service) {
		t.Fatalf("Fetch = %q, %v", got, err)
	}
	seen.addMesh(t, "mesh", m, reg, service)

	// Nothing listens at dead's address: every call fails.
	_, err = Fetch(dead, dataID, group)
	seen.addErr("Fetch from nowhere", err)
	seen.addErr("Publish to nowhere", Publish(dead, dataID, group, "x: 1"))
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
	seen.addErr("mesh.New from nowhere", err)
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
	seen.addErr("call through the mesh without instances", err)
	seen.addMesh(t, "mesh without a server", bad, deadReg, service)

	_, err = Register(dead, service, group, meshtest.NewBackend(t, "x").Instance("base"))
	if err == nil {
		t.Fatal("Register to nowhere succeeded")
	}
	seen.addErr("Register to nowhere", err)

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
	seen := exposure{"log": logs.String()}
	seen.check(t, password, secretKey)
	if n := strings.Count(logs.String(), "***"); n != 5 {
		t.Errorf("masked %d secrets, want 5:\n%s", n, logs.String())
	}
}
