package main

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery/etcd/etcdtest"
)

// pushGetRoundTrip checks push and get against a real store at location:
// a valid document is published and read back; an invalid one is refused,
// names its problems and publishes nothing (read back to prove it); a dry
// run prints what would change for traffic and publishes nothing; and the
// secrets in env never appear in any output. flags go to every command.
func pushGetRoundTrip(t *testing.T, location string, env map[string]string, secret string, flags ...string) {
	t.Helper()
	lightmesh := func(t *testing.T, env map[string]string, args ...string) (int, string, string) {
		t.Helper()
		return lightmesh(t, env, append(args, flags...)...)
	}
	check := func(what string, code, want int, outputs ...string) {
		t.Helper()
		if code != want {
			t.Errorf("%s: exit %d, want %d\n%s", what, code, want, strings.Join(outputs, "\n"))
		}
		for _, o := range outputs {
			if secret != "" && strings.Contains(o, secret) {
				t.Errorf("%s: output shows the secret:\n%s", what, o)
			}
		}
	}
	rules, _ := os.ReadFile("testdata/rules.yaml")

	code, out, errs := lightmesh(t, env, "push", "-f", "testdata/rules.yaml", location)
	check("push", code, 0, out, errs)
	code, got, errs := lightmesh(t, env, "get", location)
	check("get", code, 0, got, errs)
	got = withoutVersion(got)
	if strings.TrimSpace(got) != strings.TrimSpace(string(rules)) {
		t.Fatalf("get after push:\n%s\nwant:\n%s", got, rules)
	}

	code, out, errs = lightmesh(t, env, "push", "-f", "testdata/bad.yaml", location)
	check("push of an invalid document", code, 1, out, errs)
	if !strings.Contains(errs, "testdata/bad.yaml:8:9: services.user-api.routes[0].destinatons: unknown field") || !strings.Contains(errs, "nothing was published") {
		t.Errorf("push of an invalid document: stderr\n%s", errs)
	}
	if _, got, _ = lightmesh(t, env, "get", location); strings.TrimSpace(withoutVersion(got)) != strings.TrimSpace(string(rules)) {
		t.Fatalf("after a refused push the store holds:\n%s", got)
	}

	code, out, errs = lightmesh(t, env, "push", "--dry-run", "-f", "testdata/rules-v2.yaml", location)
	check("dry run", code, 0, out, errs)
	if !strings.Contains(out, `~ services.user-api.retry.attempts: 2 → 3`) || !strings.Contains(out, "dry run: nothing was published") {
		t.Errorf("dry run printed:\n%s", out)
	}
	if _, got, _ = lightmesh(t, env, "get", location); strings.TrimSpace(withoutVersion(got)) != strings.TrimSpace(string(rules)) {
		t.Fatalf("after a dry run the store holds:\n%s", got)
	}

	// explain reads the rules from the store too.
	code, out, errs = lightmesh(t, env, "explain", "-f", location, "--instance", "user-api=10.0.0.3:8080,env=staging", "--service", "user-api", "--header", "x-env=staging")
	check("explain from the store", code, 0, out, errs)
	if !strings.Contains(out, `route 1 "staging-lane": MATCH`) || !strings.Contains(out, "→ instance 10.0.0.3:8080") {
		t.Errorf("explain from %s:\n%s", location, out)
	}
}

// withoutVersion returns get's output without its version line.
func withoutVersion(got string) string {
	_, _, doc, _ := readVersion([]byte(got))
	return string(doc)
}

func TestPushGetEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	pushGetRoundTrip(t, "etcd://"+srv.Endpoint()+"/lightmesh/rules", nil, "")
}

func TestPushGetNacos(t *testing.T) {
	addr := os.Getenv("LIGHTMESH_NACOS_ADDR")
	if addr == "" {
		if os.Getenv("LIGHTMESH_REQUIRE_NACOS") == "1" {
			t.Fatal("LIGHTMESH_REQUIRE_NACOS=1 but LIGHTMESH_NACOS_ADDR is not set")
		}
		t.Skip("LIGHTMESH_NACOS_ADDR not set (bash scripts/nacos.sh start)")
	}
	dataID := fmt.Sprintf("cli-%d.yaml", time.Now().UnixNano())
	// Without authentication on the server, the credentials are sent and
	// ignored; with it (LIGHTMESH_NACOS_USERNAME), the real ones are
	// used. Either way they must never be printed.
	env := map[string]string{"NACOS_USERNAME": "ops", "NACOS_PASSWORD": "s3cret-nacos-pw"}
	if u := os.Getenv("LIGHTMESH_NACOS_USERNAME"); u != "" {
		env = map[string]string{"NACOS_USERNAME": u, "NACOS_PASSWORD": os.Getenv("LIGHTMESH_NACOS_PASSWORD")}
	}
	pushGetRoundTrip(t, "nacos://"+addr+"/LIGHTMESH_TEST/"+dataID, env, env["NACOS_PASSWORD"])
}

// TestCredentialsNeverShown: credentials in a location are refused
// without being repeated, and errors talking to an unreachable store do
// not show the ones in the environment.
func TestCredentialsNeverShown(t *testing.T) {
	const secret = "pa55-w0rd-xyz"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	for _, args := range [][]string{
		{"get", "nacos://ops:" + secret + "@127.0.0.1:8848/G/d.yaml"},
		{"get", "etcd://root:" + secret + "@127.0.0.1:2379/k"},
		{"push", "-f", "testdata/rules.yaml", "etcd://" + dead + "/k"},
	} {
		env := map[string]string{"ETCD_USERNAME": "root", "ETCD_PASSWORD": secret, "NACOS_PASSWORD": secret}
		code, out, errs := lightmesh(t, env, args...)
		if code == 0 {
			t.Errorf("%v: succeeded", args)
		}
		if strings.Contains(out+errs, secret) {
			t.Errorf("%v: output shows the secret:\n%s%s", args, out, errs)
		}
		if strings.Contains(args[1], "@") && !strings.Contains(errs, "credentials do not go in the URL") {
			t.Errorf("%v: stderr %q, want advice to use the environment", args, errs)
		}
	}
}
