package nacos

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
)

// nacosAdmin calls the Nacos 2.x auth API as the admin of testConfig.
type nacosAdmin struct {
	base, token string
}

// newNacosAdmin logs in as cfg's user, the server's admin in the tests.
func newNacosAdmin(t *testing.T, cfg Config) *nacosAdmin {
	t.Helper()
	base := "http://" + cfg.Addresses[0] + "/nacos"
	tok, err := nacosLogin(base, cfg.Username, cfg.Password)
	if err != nil {
		t.Fatalf("admin login: %v", err)
	}
	return &nacosAdmin{base: base, token: tok}
}

// nacosLogin returns an access token of user.
func nacosLogin(base, user, pw string) (string, error) {
	resp, err := http.PostForm(base+"/v1/auth/login", url.Values{"username": {user}, "password": {pw}})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"accessToken"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.AccessToken == "" {
		return "", os.ErrPermission
	}
	return out.AccessToken, nil
}

// call calls the admin API path with v.
func (a *nacosAdmin) call(t *testing.T, method, path string, v url.Values) {
	t.Helper()
	v.Set("accessToken", a.token)
	req, _ := http.NewRequest(method, a.base+path+"?"+v.Encode(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// grantOneItem makes a user whose role may read one config item only
// (resource "<ns>:<group>:config/<dataId>", what Nacos's default auth
// plugin accepts and matches per item), and returns a Config for it.
func grantOneItem(t *testing.T, cfg Config, group, dataID string) Config {
	t.Helper()
	a := newNacosAdmin(t, cfg)
	user, pw, role := "lm-health-"+strings.ToLower(unique("u")), "lm-health-pw1", "LM_HEALTH_"+unique("R")
	resource := ":" + group + ":config/" + dataID
	a.call(t, "POST", "/v1/auth/users", url.Values{"username": {user}, "password": {pw}})
	a.call(t, "POST", "/v1/auth/roles", url.Values{"role": {role}, "username": {user}})
	a.call(t, "POST", "/v1/auth/permissions", url.Values{"role": {role}, "resource": {resource}, "action": {"r"}})
	t.Cleanup(func() {
		a.call(t, "DELETE", "/v1/auth/permissions", url.Values{"role": {role}, "resource": {resource}, "action": {"r"}})
		a.call(t, "DELETE", "/v1/auth/roles", url.Values{"role": {role}, "username": {user}})
		a.call(t, "DELETE", "/v1/auth/users", url.Values{"username": {user}})
	})
	// The server reloads users and permissions every 15 s or so.
	meshtest.WaitFor(t, 40*time.Second, "the new user's login", func() bool {
		tok, err := nacosLogin(a.base, user, pw)
		if err != nil {
			return false
		}
		resp, err := http.Get(a.base + "/v1/cs/configs?" + url.Values{"dataId": {dataID}, "group": {group}, "accessToken": {tok}}.Encode())
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	out := cfg
	out.Username, out.Password = user, pw
	return out
}

// TestRuleSourceWithAGrantOfItsDocumentOnly: an ops team grants the mesh's
// Nacos user read access to its rule document only (Nacos 2.x's default
// auth plugin takes a permission resource per item,
// "<namespace>:<group>:config/<dataId>"). The document can be read and
// is delivered; the mesh must then stay connected, not report an outage
// every two seconds.
func TestRuleSourceWithAGrantOfItsDocumentOnly(t *testing.T) {
	admin := testConfig(t)
	if admin.Username == "" {
		t.Skip("needs a server with auth on")
	}
	group, dataID := "LIGHTMESH_HEALTH", unique("lm-health-rules")+".yaml"
	pub := newPublisher(t, admin, group)
	t.Cleanup(func() { pub.remove(t, dataID) })
	v := pub.publish(t, dataID, meshtest.LaneRules("user-api"))
	cfg := grantOneItem(t, admin, group, dataID)
	var logged meshtest.LogBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn}))

	src, err := NewRuleSource(cfg, dataID, group)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	connectCatalog(t, src.cat) // a first connect that timed out would stay the watcher's LastError
	evs := make(events, 64)
	m := newMesh(t, mesh.WithRules(src), evs.hook())
	defer m.Close()
	evs.wait(t, v, 10*time.Second)
	mark := len(logged.String()) // steady state from here
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		if w := m.Status().Watcher; w.State != mesh.StateConnected || w.LastError != "" {
			t.Fatalf("rules watcher %s, attempts %d, last error: %s", w.State, w.Attempts, w.LastError)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Nothing about the health check's refused reads. (The server also
	// refuses such a user's listen requests, which the SDK logs: see the
	// README's Nacos section.)
	for _, line := range strings.Split(logged.String()[mark:], "\n") {
		if strings.Contains(line, "ConfigQueryRequest") || strings.Contains(line, healthItemPrefix) {
			t.Errorf("a healthy source whose user may read its document only logged the health check's refusals:\n%s", line)
			break
		}
	}
}

// manySources starts n RuleSources in one process, each watching a
// document of its own in one group (one per mesh of a process serving
// several tenants or teams), and waits for each document.
func manySources(t *testing.T, cfg Config, group string, n int) []*catalogWatcher {
	t.Helper()
	pub := newPublisher(t, testConfig(t), group)
	var ws []*catalogWatcher
	for i := range n {
		dataID := unique(fmt.Sprintf("lm-health-many-%d", i))
		t.Cleanup(func() { pub.remove(t, dataID) })
		pub.publish(t, dataID, "v: 1")
		src, err := NewRuleSource(cfg, dataID, group)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { src.Close() })
		connectCatalog(t, src.cat)
		ws = append(ws, watchCatalog(t, src.cat, dataID)) // src.Watch, with the catalog watcher's recording
	}
	for _, w := range ws {
		w.next(t, "v: 1", 10*time.Second)
	}
	return ws
}

// TestManySourcesInOneProcessLogNoErrors: eight RuleSources of one
// process, each with its own document in one group, in steady state
// against a healthy server: nothing at Error level in Config.Logger.
func TestManySourcesInOneProcessLogNoErrors(t *testing.T) {
	cfg := testConfig(t)
	var buf meshtest.LogBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	manySources(t, cfg, "LIGHTMESH_HEALTH", 8)
	mark := len(buf.String()) // steady state from here: connecting may have logged retries
	time.Sleep(5 * time.Second)
	if n := strings.Count(buf.String()[mark:], "level=ERROR"); n > 0 {
		var errs []string
		for _, l := range strings.Split(buf.String()[mark:], "\n") {
			if strings.Contains(l, "level=ERROR") && len(errs) < 3 {
				errs = append(errs, l)
			}
		}
		t.Fatalf("%d error lines in 5 s of a healthy server, e.g.:\n%s", n, strings.Join(errs, "\n"))
	}
}
