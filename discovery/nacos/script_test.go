package nacos

import (
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestScriptAuthAsked: `LIGHTMESH_NACOS_AUTH=1 bash scripts/nacos.sh
// start` (what .ci/run does) on the port of a server already running
// succeeds only when that server has authentication on. Against one with
// it off, the script used to print the address, say "auth on" and exit
// 0, after changing the nacos user's password on it: CI then ran its
// "authentication on" suite against a server that checks no login. The
// test runs against the test server, whichever it is: with credentials
// (auth on, as in CI) the script must accept it; without (auth off) it
// must refuse it, saying so. With auth off it passes the default
// password, so that an old script changes nothing on the shared server.
func TestScriptAuthAsked(t *testing.T) {
	cfg := testConfig(t)
	host, port, err := net.SplitHostPort(cfg.Addresses[0])
	if err != nil || host != "127.0.0.1" {
		t.Skipf("scripts/nacos.sh serves 127.0.0.1 only; the test server is %q", cfg.Addresses[0])
	}
	script, err := filepath.Abs(filepath.Join("..", "..", "scripts", "nacos.sh"))
	if err != nil {
		t.Fatal(err)
	}
	password := cfg.Password
	if password == "" {
		password = "nacos"
	}
	c := exec.Command("bash", script, "start")
	c.Env = append(os.Environ(), "LIGHTMESH_NACOS_AUTH=1", "LIGHTMESH_NACOS_PORT="+port, "LIGHTMESH_NACOS_PASSWORD="+password)
	var stderr strings.Builder
	c.Stderr = &stderr
	out, err := c.Output()
	t.Logf("nacos.sh start (auth asked) on %s: err=%v stdout=%q\n%s", cfg.Addresses[0], err, out, stderr.String())
	if cfg.Password != "" {
		if err != nil || strings.TrimSpace(string(out)) != cfg.Addresses[0] {
			t.Errorf("against a server with authentication on: err=%v stdout=%q, want success and its address", err, out)
		}
		return
	}
	if err == nil || len(out) > 0 {
		t.Errorf("against a server with authentication off: err=%v stdout=%q, want a failure and no address", err, out)
	}
	if !strings.Contains(stderr.String(), "authentication off") {
		t.Errorf("stderr does not say the server has authentication off:\n%s", stderr.String())
	}
}

// TestScriptPasswordNotInArguments: scripts/nacos.sh hands the nacos
// user's password (and the access token) to curl other than on its
// command line, which every user of the machine can read in ps or
// /proc/<pid>/cmdline while curl runs. curl is replaced by a stub that
// records its arguments and answers as a Nacos with authentication on
// would; the server's gRPC port is a listener of the test.
func TestScriptPasswordNotInArguments(t *testing.T) {
	script, err := filepath.Abs(filepath.Join("..", "..", "scripts", "nacos.sh"))
	if err != nil {
		t.Fatal(err)
	}
	var l net.Listener
	var port int
	for try := 0; try < 50 && l == nil; try++ {
		l0, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = l0.Addr().(*net.TCPAddr).Port - 1000
		l0.Close()
		if port <= 0 {
			continue
		}
		if l, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1000))); err != nil {
			l = nil
		}
	}
	if l == nil {
		t.Fatal("no free port for the fake gRPC port")
	}
	defer l.Close()
	dir := t.TempDir()
	argsLog := filepath.Join(dir, "curl-args")
	stub := `#!/usr/bin/env bash
printf '%s\n' "$*" >>"` + argsLog + `"
case "$*" in
  *"-w"*"/v1/cs/configs"*) printf 403 ;;
  *"-w"*) printf 200 ;;
  *"/v1/auth/login"*)
    # The first login, with the wanted password, fails: the script logs
    # in with the default one and changes the password.
    n=$(( $(cat "` + argsLog + `.logins" 2>/dev/null || echo 0) + 1 ))
    echo "$n" >"` + argsLog + `.logins"
    [[ $n == 1 ]] || printf '{"accessToken":"tok-R21","tokenTtl":18000}' ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "curl"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	const password = `Pw-R21<&>secret`
	c := exec.Command("bash", script, "start")
	c.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"LIGHTMESH_NACOS_AUTH=1", "LIGHTMESH_NACOS_PORT="+strconv.Itoa(port), "LIGHTMESH_NACOS_PASSWORD="+password,
		"LIGHTMESH_NACOS_HOME="+filepath.Join(dir, "home"))
	var stderr strings.Builder
	c.Stderr = &stderr
	if out, err := c.Output(); err != nil {
		t.Fatalf("nacos.sh start against the fake server: %v, stdout %q\n%s", err, out, stderr.String())
	}
	args, err := os.ReadFile(argsLog)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(args), "/v1/auth/login") || !strings.Contains(string(args), "/v1/auth/users") {
		t.Fatalf("the script did not log in and change the password through curl:\n%s", args)
	}
	for _, secret := range []string{password, url.QueryEscape(password), "tok-R21"} {
		if strings.Contains(string(args), secret) {
			t.Errorf("curl's command line holds %q:\n%s", secret, args)
		}
	}
}
