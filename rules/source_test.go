package rules

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// collect runs src.Watch in the background and returns the documents it
// delivers and a function that stops it and returns Watch's error.
func collect(t *testing.T, src Source) (<-chan Document, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	docs := make(chan Document, 16)
	done := make(chan error, 1)
	go func() { done <- src.Watch(ctx, func(d Document) { docs <- d }) }()
	return docs, func() error { cancel(); return <-done }
}

func next(t *testing.T, docs <-chan Document) Document {
	t.Helper()
	select {
	case d := <-docs:
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("no document delivered")
		return Document{}
	}
}

func TestMemoryVersions(t *testing.T) {
	m := NewMemory([]byte("a"))
	docs, stop := collect(t, m)
	if d := next(t, docs); string(d.Data) != "a" || d.Version != "1" {
		t.Fatalf("first = %q v%s", d.Data, d.Version)
	}
	m.Set([]byte("b"))
	if d := next(t, docs); string(d.Data) != "b" || d.Version != "2" {
		t.Fatalf("second = %q v%s", d.Data, d.Version)
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch returned %v, want context.Canceled", err)
	}
}

func TestFileFollowsRenameAndCapsSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	docs, stop := collect(t, NewFile(path, 5*time.Millisecond))
	defer stop()
	if d := next(t, docs); string(d.Data) != "one" {
		t.Fatalf("first = %q", d.Data)
	}
	// Editors and config tools replace the file by rename.
	tmp := path + ".tmp"
	os.WriteFile(tmp, []byte("two, longer"), 0o644)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if d := next(t, docs); string(d.Data) != "two, longer" {
		t.Fatalf("after rename = %q", d.Data)
	}
	// A huge file is read only up to one byte past the document limit, so
	// the router rejects it without the process reading it whole.
	if err := os.WriteFile(path, []byte(strings.Repeat("x", 5<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	if d := next(t, docs); len(d.Data) != readLimit {
		t.Fatalf("oversized file delivered %d bytes, want %d", len(d.Data), readLimit)
	}
}

func TestFileMissingIsAnError(t *testing.T) {
	src := NewFile(filepath.Join(t.TempDir(), "nope.yaml"), 0)
	err := src.Watch(context.Background(), func(Document) { t.Fatal("delivered a missing file") })
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want a not-exist error", err)
	}
	if !strings.HasPrefix(src.String(), "file:") {
		t.Fatalf("String() = %q", src.String())
	}
}
