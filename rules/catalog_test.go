package rules_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/rules"
)

func TestDirFollowsOneFilePerDocument(t *testing.T) {
	dir := t.TempDir()
	cat := rules.NewDir(dir, 10*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan rules.Document, 16)
	done := make(chan error, 1)
	go func() { done <- cat.Watch(ctx, "user-api", func(d rules.Document) { got <- d }) }()
	next := func(what string) rules.Document {
		t.Helper()
		select {
		case d := <-got:
			return d
		case <-time.After(5 * time.Second):
			t.Fatalf("no delivery: %s", what)
			return rules.Document{}
		}
	}
	if d := next("missing file"); d.Data != nil {
		t.Fatalf("missing file delivered %q, want no document", d.Data)
	}
	if err := os.WriteFile(filepath.Join(dir, "order-api.yaml"), []byte("other"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "user-api.yml"), []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if d := next("file written"); string(d.Data) != "one" {
		t.Fatalf("delivered %q, want the file user-api.yml", d.Data)
	}
	if err := os.Remove(filepath.Join(dir, "user-api.yml")); err != nil {
		t.Fatal(err)
	}
	if d := next("file deleted"); d.Data != nil {
		t.Fatalf("deleted file delivered %q, want no document", d.Data)
	}
	select {
	case d := <-got:
		t.Fatalf("a missing file was reported again: %+v", d)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Watch returned %v after cancel", err)
	}
	if got, want := cat.Describe("user-api"), "dir:"+filepath.Join(dir, "user-api"); got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
}

func TestDirRefusesNamesThatAreNotFileNames(t *testing.T) {
	cat := rules.NewDir(t.TempDir(), 0)
	for _, name := range []string{"", ".", "..", "a/b", "../etc"} {
		if err := cat.Watch(context.Background(), name, func(rules.Document) {}); err == nil {
			t.Errorf("Watch(%q) did not fail", name)
		}
	}
}

func TestDirWithoutItsDirectoryFails(t *testing.T) {
	cat := rules.NewDir(filepath.Join(t.TempDir(), "gone"), 0)
	if err := cat.Watch(context.Background(), "user-api", func(rules.Document) {}); err == nil {
		t.Fatal("Watch over a missing directory did not fail")
	}
}
