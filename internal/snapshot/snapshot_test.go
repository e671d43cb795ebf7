package snapshot

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
)

func TestRoundTrip(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadDocument(""); !IsNotExist(err) {
		t.Fatalf("empty store: err = %v, want not-exist", err)
	}
	want := Rules{Source: "etcd:/rules", Version: "42", SavedAt: time.Unix(1700000000, 0).UTC(), Data: "apiVersion: lightmesh/v1\n"}
	if err := s.SaveDocument("", want); err != nil {
		t.Fatal(err)
	}
	got, err := s.LoadDocument("")
	if err != nil || got != want {
		t.Fatalf("LoadDocument(\"\") = %+v, %v", got, err)
	}
	for _, svc := range []string{"user-api", "..", "a/b"} {
		in := Instances{Service: svc, Instances: []discovery.Instance{{Address: "127.0.0.1:80", Labels: map[string]string{"env": "base"}}}}
		if err := s.SaveInstances(in); err != nil {
			t.Fatal(err)
		}
		back, err := s.LoadInstances(svc)
		if err != nil || back.Service != svc || len(back.Instances) != 1 || back.Instances[0].Labels["env"] != "base" {
			t.Fatalf("%q: %+v, %v", svc, back, err)
		}
	}
	// Only the store's own files are in its directory: no temp files left
	// behind and nothing escaped it.
	entries, _ := os.ReadDir(filepath.Join(s.dir, "instances"))
	if len(entries) != 3 {
		t.Fatalf("instances dir holds %d files, want 3", len(entries))
	}
}

func TestCorruptSnapshotIsAnError(t *testing.T) {
	dir := t.TempDir()
	s, _ := New(dir)
	if err := os.WriteFile(filepath.Join(dir, "rules.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadDocument(""); err == nil || IsNotExist(err) {
		t.Fatalf("corrupt snapshot: err = %v", err)
	}
}

func TestDocumentsRoundTripByName(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadDocument("user-api"); !IsNotExist(err) {
		t.Fatalf("empty store: err = %v, want not-exist", err)
	}
	names := []string{"user-api", "_defaults", "..", "a/b"}
	for i, name := range names {
		if err := s.SaveDocument(name, Rules{Source: "etcd:/r/" + name, Version: string(rune('1' + i)), Data: name}); err != nil {
			t.Fatal(err)
		}
	}
	for i, name := range names {
		got, err := s.LoadDocument(name)
		if err != nil || got.Data != name || got.Source != "etcd:/r/"+name || got.Version != string(rune('1'+i)) {
			t.Fatalf("%q: %+v, %v", name, got, err)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(s.dir, "documents"))
	if len(entries) != len(names) {
		t.Fatalf("documents/ holds %d files, want %d", len(entries), len(names))
	}
}

func TestRemoveForgetsSavedFiles(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveDocument("user-api", Rules{Data: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveInstances(Instances{Service: "user-api"}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second time, nothing is left to remove
		if err := s.RemoveDocument("user-api"); err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveInstances("user-api"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.LoadDocument("user-api"); !IsNotExist(err) {
		t.Fatalf("removed document: err = %v", err)
	}
	if _, err := s.LoadInstances("user-api"); !IsNotExist(err) {
		t.Fatalf("removed instances: err = %v", err)
	}
}
