package main

import (
	"debug/buildinfo"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A program that uses only mesh.Transport and mesh.Handler (this
// quickstart) does not link grpc-go: the gRPC integration is a package of
// its own. Checked on a real binary, as `go version -m` would show it.
func TestHTTPOnlyBinaryHasNoGRPC(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "quickstart")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var mods []string
	for _, dep := range info.Deps {
		mods = append(mods, dep.Path)
		if strings.HasPrefix(dep.Path, "google.golang.org/grpc") {
			t.Errorf("the HTTP-only quickstart links %s %s", dep.Path, dep.Version)
		}
	}
	if len(mods) == 0 {
		t.Fatal("the binary lists no modules at all")
	}
}
