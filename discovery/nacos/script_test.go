package nacos

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
