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
