package rules

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// DefaultsName is the name of the fleet-wide defaults document in a
// Catalog: the dataId, key or file name that holds the settings every
// service without a setting of its own takes. It starts with an
// underscore, which service names in practice do not (DNS names cannot);
// a mesh with a catalog refuses it as a service name.
const DefaultsName = "_defaults"

// Catalog holds rule documents one per service, each under the name of
// the service it describes, plus an optional defaults document under
// DefaultsName: the per-service layout, where each team owns the document
// of its own service and every caller composes the ones it needs.
//
// Watch delivers the document called name with the contract of
// Source.Watch: the current version as soon as it is known, then every
// later one, until ctx ends or the connection fails; a document that does
// not exist is reported with a nil Data. Watch is called by several
// goroutines at once, for different names and for the same name (several
// meshes may share one catalog); an implementation shares one
// control-plane connection between all of them. String names the catalog
// for logs and status and must not include credentials; Describe names
// one document in it ("etcd:/lightmesh/rules/user-api").
type Catalog interface {
	Watch(ctx context.Context, name string, update func(Document)) error
	Describe(name string) string
	String() string
}

// Dir is a Catalog reading one file per document from a directory: the
// rules of service user-api in user-api.yaml (or user-api.yml or
// user-api.json, tried in that order), the defaults in _defaults.yaml.
// Each file is polled as File polls its file; a file that does not exist
// is reported as no document and picked up when it appears.
type Dir struct {
	dir      string
	interval time.Duration
}

var _ Catalog = (*Dir)(nil)

// dirExtensions are the file name endings Dir tries, in order.
var dirExtensions = []string{".yaml", ".yml", ".json"}

// NewDir returns a catalog for the files in dir, polled every interval
// (DefaultPollInterval when interval <= 0).
func NewDir(dir string, interval time.Duration) *Dir {
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	return &Dir{dir: dir, interval: interval}
}

// String implements Catalog: "dir:<directory>".
func (d *Dir) String() string { return "dir:" + d.dir }

// Describe implements Catalog: "dir:<directory>/<name>", whichever of
// the endings the file has.
func (d *Dir) Describe(name string) string { return "dir:" + filepath.Join(d.dir, name) }

// Watch implements Catalog. A name that is not a plain file name (it
// holds a path separator or is "." or "..") is an error.
func (d *Dir) Watch(ctx context.Context, name string, update func(Document)) error {
	if name == "" || name == "." || name == ".." || filepath.Base(name) != name {
		return fmt.Errorf("rules: %q cannot name a file in %s", name, d.dir)
	}
	ticker := time.NewTicker(d.interval)
	defer ticker.Stop()
	for missing := false; ; {
		path, err := d.find(name)
		if err != nil {
			return fmt.Errorf("rules: %w", err)
		}
		if path != "" {
			missing = false
			// The file exists: follow it until it goes away (File returns
			// an error then) or ctx ends.
			err := NewFile(path, d.interval).Watch(ctx, update)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		if !missing {
			update(Document{}) // the directory answered: no such document
			missing = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
	}
}

// find returns the path of name's file, or "" when there is none.
func (d *Dir) find(name string) (string, error) {
	if _, err := os.Stat(d.dir); err != nil {
		return "", err
	}
	for _, ext := range dirExtensions {
		p := filepath.Join(d.dir, name+ext)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", nil
}
