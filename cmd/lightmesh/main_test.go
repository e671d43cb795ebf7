package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// lightmesh runs the command with args and env, and returns its exit code
// and outputs.
func lightmesh(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

// golden compares got with testdata/golden/name, or rewrites it with
// -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestGolden runs each subcommand on the files in testdata and checks
// its output, text and JSON, and its exit code.
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		code int
		args []string
	}{
		{"help.txt", 0, []string{"help"}},
		{"validate.txt", 0, []string{"validate", "testdata/rules.yaml", "testdata/rules-v2.yaml"}},
		{"validate-bad.txt", 1, []string{"validate", "testdata/rules.yaml", "testdata/bad.yaml"}},
		{"validate-bad.json", 1, []string{"validate", "-o", "json", "testdata/bad.yaml"}},
		{"validate-service.txt", 1, []string{"validate", "--service", "user-api", "testdata/per-service/user-api.yaml"}},
		{"validate-defaults.txt", 0, []string{"validate", "--service", "_defaults", "testdata/per-service/_defaults.yaml"}},
		{"explain-lane.txt", 0, []string{"explain", "-f", "testdata/rules.yaml", "--instances", "testdata/instances.yaml", "--service", "user-api", "--header", "x-env=staging", "--path", "/v1/users"}},
		{"explain-canary.txt", 0, []string{"explain", "-f", "testdata/rules.yaml", "--instances", "testdata/instances.yaml", "--service", "user-api", "--path", "/v1/users"}},
		{"explain-lane.json", 0, []string{"explain", "-o", "json", "-f", "testdata/rules.yaml", "--instances", "testdata/instances.yaml", "--service", "user-api", "--header", "x-env:staging"}},
		{"explain-grpc.txt", 0, []string{"explain", "-f", "testdata/rules.yaml", "--instance", "user-api=10.0.0.9:9000,env=staging", "--service", "user-api", "--grpc-method", "/users.v1.Users/Get", "--header", "x-env=staging"}},
		{"explain-bad.txt", 1, []string{"explain", "-f", "testdata/bad.yaml", "--service", "user-api"}},
		{"diff.txt", 1, []string{"diff", "testdata/rules.yaml", "testdata/rules-v2.yaml"}},
		{"diff.json", 1, []string{"diff", "-o", "json", "testdata/rules.yaml", "testdata/rules-v2.yaml"}},
		{"diff-none.txt", 0, []string{"diff", "testdata/rules.yaml", "testdata/rules.yaml"}},
		{"import-istio.txt", 0, []string{"import", "istio", "testdata/istio/reviews-virtualservice.yaml", "testdata/istio/reviews-destinationrule.yaml"}},
		{"import-istio-strict.txt", 1, []string{"import", "istio", "--strict", "testdata/istio/reviews-virtualservice.yaml", "testdata/istio/reviews-destinationrule.yaml"}},
		{"usage-error.txt", 2, []string{"explain", "--service", "user-api"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := lightmesh(t, nil, tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			out := stdout
			if stderr != "" {
				out += "--- stderr\n" + stderr
			}
			golden(t, tc.name, out)
		})
	}
}

// TestSchemaFileIsCurrent: the schema checked in for editors is what
// lightmesh schema prints.
func TestSchemaFileIsCurrent(t *testing.T) {
	code, stdout, stderr := lightmesh(t, nil, "schema")
	if code != 0 {
		t.Fatalf("schema: %d %s", code, stderr)
	}
	if *update {
		os.WriteFile("lightmesh.schema.json", []byte(stdout), 0o644)
	}
	want, err := os.ReadFile("lightmesh.schema.json")
	if err != nil || string(want) != stdout {
		t.Errorf("lightmesh.schema.json is not what lightmesh schema prints (go test -update rewrites it): %v", err)
	}
}

// TestEverySubcommandHasHelp: -h on each subcommand prints its usage and
// exits 0.
func TestEverySubcommandHasHelp(t *testing.T) {
	for name := range allCommands() {
		args := []string{name, "-h"}
		if name == "import" {
			args = []string{name, "istio", "-h"}
		}
		code, _, stderr := lightmesh(t, nil, args...)
		if code != 0 || !strings.Contains(stderr, "usage: lightmesh "+name) {
			t.Errorf("%s -h: exit %d, stderr %q", name, code, stderr)
		}
	}
}

// TestReadmeShowsTheGoldenOutputs: the outputs the README shows are the
// golden files, as the README says (paths as an operator in testdata
// would see them).
func TestReadmeShowsTheGoldenOutputs(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"explain-lane.txt", "diff.txt", "import-istio.txt"} {
		data, err := os.ReadFile(filepath.Join("testdata", "golden", name))
		if err != nil {
			t.Fatal(err)
		}
		want := string(data)
		if _, stderr, ok := strings.Cut(want, "--- stderr\n"); ok && strings.HasPrefix(name, "import") {
			want = strings.ReplaceAll(stderr, "testdata/istio/", "")
		}
		if !strings.Contains(string(readme), "```\n"+want+"```\n") {
			t.Errorf("the README does not show testdata/golden/%s as it is:\n%s", name, want)
		}
	}
}
