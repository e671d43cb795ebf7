package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// lightmesh validate knows the lanes fields: a valid lanes rule passes,
// an invalid one is rejected with its path and line.
func TestValidateLanes(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("apiVersion: lightmesh/v1\ndefaults:\n  lanes: {label: env}\nservices:\n  user-api:\n    lanes: {label: env, base: {labels: {env: base}}}\n"), 0o644)
	os.WriteFile(bad, []byte("apiVersion: lightmesh/v1\nservices:\n  user-api:\n    lanes: {header: x-env}\n"), 0o644)
	if code, out, errOut := lightmesh(t, nil, "validate", good); code != 0 {
		t.Fatalf("validate good: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := lightmesh(t, nil, "validate", bad)
	if code == 0 || !strings.Contains(out+errOut, "services.user-api.lanes.label: required") {
		t.Fatalf("validate bad: exit %d\n%s%s", code, out, errOut)
	}
}

// lightmesh explain gives the lane decision: the lane's instance when
// the service has one, base (and the lane kept) when it has none.
func TestExplainLanes(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	os.WriteFile(rules, []byte("apiVersion: lightmesh/v1\ndefaults:\n  lanes: {label: env, base: {labels: {env: base}}}\n"), 0o644)
	args := []string{"explain", "-f", rules, "--service", "user-api",
		"--instance", "user-api=127.0.0.1:8001,env=base", "--instance", "user-api=127.0.0.1:8002,env=feat-1"}
	code, out, errOut := lightmesh(t, nil, append(args, "--header", "x-env=feat-1")...)
	if code != 0 || !strings.Contains(out, "lane feat-1: 1 instance(s) of user-api with env=feat-1 → 127.0.0.1:8002") {
		t.Fatalf("lane feat-1: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = lightmesh(t, nil, append(args, "--header", "x-env=feat-2")...)
	if code != 0 || !strings.Contains(out, "lane feat-2: no instance of user-api → base; lane kept for the next hop") || !strings.Contains(out, "127.0.0.1:8001") {
		t.Fatalf("lane feat-2: exit %d\n%s%s", code, out, errOut)
	}
}
