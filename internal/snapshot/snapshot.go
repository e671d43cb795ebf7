// Package snapshot keeps the last good rule document and instance lists on
// local disk, written atomically (temp file, fsync, rename, fsync of the
// directory), so a process
// restarted while its control plane is down can start from them.
package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
)

// maxFileSize caps a snapshot file read back: a rule document is at most
// 1 MiB and an instance list of the mesh's maximum size fits well within.
const maxFileSize = 64 << 20

// Store reads and writes snapshots under one directory.
type Store struct{ dir string }

// New returns a store rooted at dir, creating it (mode 0700) if needed.
func New(dir string) (*Store, error) {
	for _, sub := range []string{"instances", "documents"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
	}
	return &Store{dir: dir}, nil
}

// Rules is a saved rule document.
type Rules struct {
	Source  string    `json:"source"`
	Version string    `json:"version"`
	SavedAt time.Time `json:"savedAt"`
	Data    string    `json:"data"`
	// Missing records, for a document of a per-service layout, that the
	// source held no such document: known absent, not unknown.
	Missing bool `json:"missing,omitempty"`
}

// Instances is a saved instance list of one service.
type Instances struct {
	// Source names the discovery source the list came from: a list is
	// restored only for the same source (another environment's
	// instances are worse than none).
	Source    string               `json:"source"`
	Service   string               `json:"service"`
	SavedAt   time.Time            `json:"savedAt"`
	Instances []discovery.Instance `json:"instances"`
}

// SaveDocument writes atomically the rule document called name: a
// service's rules or the defaults of a per-service layout, or, named "",
// the one document of a single-document layout (rules.json).
func (s *Store) SaveDocument(name string, r Rules) error { return s.write(s.documentPath(name), r) }

// LoadDocument reads the saved document called name; fs.ErrNotExist when
// none.
func (s *Store) LoadDocument(name string) (Rules, error) {
	var r Rules
	err := s.read(s.documentPath(name), &r)
	return r, err
}

// RemoveDocument removes the saved document called name; removing one
// that is not saved is not an error.
func (s *Store) RemoveDocument(name string) error { return remove(s.documentPath(name)) }

func (s *Store) documentPath(name string) string {
	if name == "" {
		return filepath.Join(s.dir, "rules.json")
	}
	return filepath.Join(s.dir, "documents", "doc-"+url.PathEscape(name)+".json")
}

// SaveInstances writes the instance list of one service atomically.
func (s *Store) SaveInstances(in Instances) error { return s.write(s.instancesPath(in.Service), in) }

// LoadInstances reads the saved instances of service; fs.ErrNotExist when
// none.
func (s *Store) LoadInstances(service string) (Instances, error) {
	var in Instances
	err := s.read(s.instancesPath(service), &in)
	if err == nil && in.Service != service {
		err = fmt.Errorf("snapshot: %s holds service %q", s.instancesPath(service), in.Service)
	}
	return in, err
}

// RemoveInstances removes the saved instances of service; removing a
// list that is not saved is not an error.
func (s *Store) RemoveInstances(service string) error { return remove(s.instancesPath(service)) }

func remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

func (s *Store) instancesPath(service string) string {
	return filepath.Join(s.dir, "instances", "svc-"+url.PathEscape(service)+".json")
}

func (s *Store) write(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("snapshot: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("snapshot: sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	// The rename is durable only once the directory entry is on disk.
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("snapshot: sync %s: %w", filepath.Dir(path), err)
	}
	return nil
}

func (s *Store) read(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() > maxFileSize {
		return fmt.Errorf("snapshot: %s is %d bytes, over the %d limit", path, st.Size(), maxFileSize)
	}
	if err := json.NewDecoder(f).Decode(v); err != nil {
		return fmt.Errorf("snapshot: %s: %w", path, err)
	}
	return nil
}

// IsNotExist reports whether err says there is no snapshot.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
