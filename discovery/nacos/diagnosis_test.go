package nacos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/rules"
)

// TestSlowLoginIsNotBlamedOnCredentials: a client whose own login timed
// out (a server slow to answer its HTTP port when the client started)
// has its requests refused "user not found!" until the SDK logs in
// again, as a wrong password would. The error must not send the operator
// to check credentials that are right: it says the server accepts them
// and the client has not logged in yet; and the client works once the
// SDK's login gets through.
func TestSlowLoginIsNotBlamedOnCredentials(t *testing.T) {
	cfg := testConfig(t)
	if cfg.Password == "" {
		t.Skip("the server has no authentication: LIGHTMESH_NACOS_PASSWORD is not set")
	}
	dataID := unique("lm-slow-login")
	eventually(t, "publish", func() error { return Publish(cfg, dataID, "", "apiVersion: lightmesh/v1\n") })
	r := startRelay(t, cfg.Addresses[0])
	slow := cfg
	slow.Addresses = []string{r.addr}
	slow.TimeoutMs = 1000
	r.holdLogins() // the SDK's logins time out; its gRPC requests and the adapter's check are answered
	src, err := NewRuleSource(slow, dataID, "")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	d, err := NewDiscovery(slow, "")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var errs []error
	errs = append(errs, whileConnecting(func() error {
		return src.Watch(ctx, func(rules.Document) { t.Error("delivered without a login") })
	}))
	if err := whileConnecting(func() error {
		reg, err := d.Register(unique("lm-slow-login"), discovery.Instance{Address: "10.42.0.9:80"})
		if err == nil {
			reg.Close()
		}
		return err
	}); err != nil {
		errs = append(errs, err)
	} else {
		t.Error("registered without a login")
	}
	for _, err := range errs {
		t.Logf("refused: %v", err)
		if !errors.Is(err, errNotLoggedIn) || errors.Is(err, errLogin) || strings.Contains(err.Error(), "check Config.Username") {
			t.Errorf("got %v, want an error saying the credentials are accepted and the client has not logged in yet", err)
		}
		if strings.Contains(err.Error(), cfg.Password) {
			t.Errorf("the error shows the password: %v", err)
		}
	}

	r.release() // the SDK's next login (every 5 s) gets through
	delivered := make(chan struct{}, 1)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go func() {
		for wctx.Err() == nil {
			err := src.Watch(wctx, func(rules.Document) {
				select {
				case delivered <- struct{}{}:
				default:
				}
			})
			if wctx.Err() == nil {
				t.Logf("after the release: %v", err)
				time.Sleep(500 * time.Millisecond)
			}
		}
	}()
	select {
	case <-delivered:
	case <-ctx.Done():
		t.Fatal("the document was not delivered after the SDK could log in")
	}
}

// TestLoginCheckedOncePerInterval: a client refused in a loop logs in to
// check its credentials once per checkEvery, not once per refusal
// (a login costs the server a password hash).
func TestLoginCheckedOncePerInterval(t *testing.T) {
	cfg := testConfig(t)
	if cfg.Password == "" {
		t.Skip("the server has no authentication: LIGHTMESH_NACOS_PASSWORD is not set")
	}
	r := startRelay(t, cfg.Addresses[0])
	slow := cfg
	slow.Addresses = []string{r.addr}
	slow.TimeoutMs = 1000
	r.holdLogins()
	src, err := NewRuleSource(slow, unique("lm-login-checks"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 5 {
		err := whileConnecting(func() error { return src.Watch(ctx, func(rules.Document) {}) })
		if !errors.Is(err, errNotLoggedIn) {
			t.Fatalf("refusal %d: %v, want the client not logged in yet", i+1, err)
		}
	}
	if n := r.checks.Load(); n != 1 {
		t.Errorf("5 refusals logged in to check %d times, want once", n)
	}
}

// TestWrongPasswordIsNamed: a password the server refuses is named as the
// cause, with what the server answered the login.
func TestWrongPasswordIsNamed(t *testing.T) {
	cfg := testConfig(t)
	if cfg.Password == "" {
		t.Skip("the server has no authentication: LIGHTMESH_NACOS_PASSWORD is not set")
	}
	bad := cfg
	bad.Password = "not-the-Pw-7y"
	err := whileConnecting(func() error { _, err := Fetch(bad, unique("lm-wrong-pw"), ""); return err })
	if err == nil {
		t.Fatal("fetched with a wrong password")
	}
	t.Logf("refused: %v", err)
	want := fmt.Sprintf("the server refuses user %q's login (403", cfg.Username)
	if !errors.Is(err, errLogin) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), bad.Password) {
		t.Errorf("got %v, want it to say %q and to check the credentials, without them", err, want)
	}
}

// TestRoleWithoutPermissionIsNamed: a user who logs in but whose role may
// not read the namespace is told so, not to check the password.
func TestRoleWithoutPermissionIsNamed(t *testing.T) {
	cfg := testConfig(t)
	if cfg.Password == "" {
		t.Skip("the server has no authentication: LIGHTMESH_NACOS_PASSWORD is not set")
	}
	user := fmt.Sprintf("lmnorole%d", time.Now().UnixNano()%1e9)
	norole := cfg
	norole.Username, norole.Password = user, "norole-Pw-3z"
	admin := func(method, path string, form url.Values) string {
		t.Helper()
		lc := newDiagnosis(cfg)
		hc, err := lc.client()
		if err != nil {
			t.Fatal(err)
		}
		tok := adminToken(t, hc, cfg)
		req, _ := http.NewRequest(method, "http://"+cfg.Addresses[0]+path+"?accessToken="+url.QueryEscape(tok)+"&"+form.Encode(), nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if out := admin(http.MethodPost, "/nacos/v1/auth/users", url.Values{"username": {user}, "password": {norole.Password}}); !strings.Contains(out, "ok") {
		t.Fatalf("creating user %s: %s", user, out)
	}
	defer admin(http.MethodDelete, "/nacos/v1/auth/users", url.Values{"username": {user}})
	// The server takes up to 15 s to know a new user.
	deadline := time.Now().Add(30 * time.Second)
	for newDiagnosis(norole).logIn() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the new user %s cannot log in: %v", user, newDiagnosis(norole).logIn())
		}
		time.Sleep(time.Second)
	}
	err := whileConnecting(func() error { _, err := Fetch(norole, unique("lm-norole"), ""); return err })
	t.Logf("refused: %v", err)
	if err == nil || !strings.Contains(err.Error(), "lacks the permission") || errors.Is(err, errLogin) || errors.Is(err, errNotLoggedIn) {
		t.Errorf("got %v, want it to say the user's role lacks the permission", err)
	}
}

// TestPublishKeepsTheFormatAndNamesTheUser: an item made YAML in the
// console stays YAML after a Publish (the console keeps its YAML check and
// highlighting), and the item's history names the user who published.
func TestPublishKeepsTheFormatAndNamesTheUser(t *testing.T) {
	cfg := testConfig(t)
	hc, err := newDiagnosis(cfg).client()
	if err != nil {
		t.Fatal(err)
	}
	token := ""
	if cfg.Password != "" {
		token = adminToken(t, hc, cfg)
	}
	dataID, group := unique("lm-format"), DefaultGroup
	api := func(path string, q url.Values) string {
		t.Helper()
		q.Set("accessToken", token)
		resp, err := hc.Get("http://" + cfg.Addresses[0] + path + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	// Made in the console: format YAML.
	resp, err := hc.PostForm("http://"+cfg.Addresses[0]+"/nacos/v1/cs/configs", url.Values{"dataId": {dataID}, "group": {group}, "type": {"yaml"}, "content": {"apiVersion: lightmesh/v1\n"}, "accessToken": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	eventually(t, "publish", func() error { return Publish(cfg, dataID, group, "apiVersion: lightmesh/v1\nservices: {}\n") })
	var item struct {
		Type    string `json:"type"`
		Content string `json:"content"`
	}
	if err := json.Unmarshal([]byte(api("/nacos/v1/cs/configs", url.Values{"dataId": {dataID}, "group": {group}, "show": {"all"}})), &item); err != nil {
		t.Fatal(err)
	}
	if item.Type != "yaml" || !strings.Contains(item.Content, "services") {
		t.Errorf("after the publish: type %q, content %q; want type yaml and the new content", item.Type, item.Content)
	}
	var history struct {
		PageItems []struct {
			SrcUser string `json:"srcUser"`
		} `json:"pageItems"`
	}
	want := historyUser(cfg)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out := api("/nacos/v1/cs/history", url.Values{"search": {"accurate"}, "dataId": {dataID}, "group": {group}, "pageNo": {"1"}, "pageSize": {"10"}})
		json.Unmarshal([]byte(out), &history)
		if len(history.PageItems) > 0 && history.PageItems[0].SrcUser == want || time.Now().After(deadline) {
			break
		}
	}
	if len(history.PageItems) == 0 || history.PageItems[0].SrcUser != want {
		t.Errorf("history %+v: want the last change made by %q", history.PageItems, want)
	}
}

// grpcPortClosed returns the test server's config through a relay whose
// gRPC port refuses connections while its HTTP port relays, with a 1 s
// request timeout, and the relay.
func grpcPortClosed(t *testing.T) (Config, *relay) {
	t.Helper()
	cfg := testConfig(t)
	r := startRelay(t, cfg.Addresses[0])
	r.closeGRPCPort()
	cfg.Addresses = []string{r.addr}
	cfg.TimeoutMs = 1000
	return cfg, r
}

// TestOutageNotConnectedNamesTheGRPCPort: a server whose HTTP port answers and
// whose gRPC port (HTTP + 1000) refuses connections (a firewall or a
// Kubernetes Service that opens 8848 only) leaves the SDK's clients "not
// connected, current status: STARTING"; the errors name the port that
// does not answer and say that Nacos 2 clients need it.
func TestOutageNotConnectedNamesTheGRPCPort(t *testing.T) {
	skipUnderRace(t) // a client that never connects: the SDK races with itself (its status)
	cfg, r := grpcPortClosed(t)
	want := "the gRPC port " + grpcOf(t, r.addr) + " does not"
	check := func(what string, err error) {
		t.Helper()
		t.Logf("%s: %v", what, err)
		if !errors.Is(err, errNotConnected) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "HTTP port + 1000") {
			t.Errorf("%s: %v; want it to say %q and that Nacos 2 clients need the HTTP port + 1000", what, err, want)
		}
	}
	_, err := Fetch(cfg, unique("lm-no-grpc"), "")
	check("fetch", err)
	d, err := NewDiscovery(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, err = d.Register(unique("lm-no-grpc"), discovery.Instance{Address: "10.42.0.9:80"})
	check("register", err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	check("watch", d.Watch(ctx, unique("lm-no-grpc"), func([]discovery.Instance) { t.Error("delivered without a connection") }))
}

// TestOutageWatchEndsWithItsContextWhileTheServerCheckIsSlow: while the gRPC
// connection is down the SDK answers its health question over HTTP,
// which can take seconds; a Watch whose context ends meanwhile returns
// then, not when the SDK answers.
func TestOutageWatchEndsWithItsContextWhileTheServerCheckIsSlow(t *testing.T) {
	skipUnderRace(t) // a client that never connects: the SDK races with itself (its status)
	cfg, r := grpcPortClosed(t)
	d, err := NewDiscovery(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r.hold() // the HTTP health question gets no answer until its timeout
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		err := d.Watch(ctx, "lm-slow-check", func([]discovery.Instance) {})
		took := time.Since(start)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || took > 2*time.Second {
			t.Errorf("watch %d: %v after %v; want its context's end after 300ms", i, err, took)
		}
	}
	r.release()
}

// adminToken logs in as cfg's user and returns the access token.
func adminToken(t *testing.T, hc *http.Client, cfg Config) string {
	t.Helper()
	resp, err := hc.PostForm("http://"+cfg.Addresses[0]+"/nacos/v1/auth/users/login", url.Values{"username": {cfg.Username}, "password": {cfg.Password}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	_, tok, ok := strings.Cut(string(b), `"accessToken":"`)
	tok, _, _ = strings.Cut(tok, `"`)
	if !ok || tok == "" {
		t.Fatalf("login as %s: %s", cfg.Username, b)
	}
	return tok
}
