package nacos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/lightmesh/lightmesh/rules"
)

// DefaultGroup is the Nacos group used when none is given.
const DefaultGroup = "DEFAULT_GROUP"

// healthInterval is how often a watch checks that the server still
// answers, and healthTimeout how long one check may take. The SDK
// reconnects by itself and tells its listeners nothing, so without the
// checks a watch through an outage would look connected.
const (
	healthInterval = time.Second
	healthTimeout  = 3 * time.Second
)

// maxReadFailures is how many reads in a row must fail for the health
// check to end the watches.
const maxReadFailures = 2

// errClosed is returned by Watch after Close.
var errClosed = errors.New("nacos: closed")

// RuleSource is a rules.Source reading a rule document from one Nacos
// config item. Use NewRuleSource; call Close when done, after the mesh
// using it is closed.
//
// It is a Catalog of one item: one SDK config client, the item read
// when the server pushes a change (never the content the SDK hands its
// listeners, which may arrive out of order), re-read every 30 s, and a
// health check that reads an item nobody writes every second (see
// healthItem) and ends every Watch with an error when two reads in a row
// fail or one takes over 3 s, so the mesh reports the outage and retries
// with backoff. Watch may be
// called by several callers at once; they share the item.
type RuleSource struct {
	cat    *Catalog
	dataID string
}

var _ rules.Source = (*RuleSource)(nil)

// NewRuleSource connects a config client to the servers in cfg for the
// item dataID in group (DefaultGroup when empty). It fails when cfg is
// invalid or dataID is not one Nacos accepts; an unreachable server only
// makes Watch fail, so the mesh retries.
func NewRuleSource(cfg Config, dataID, group string) (*RuleSource, error) {
	if dataID == "" {
		return nil, errors.New("nacos: rule source needs a dataId")
	}
	if !validDataID(dataID) {
		return nil, fmt.Errorf("nacos: %q cannot be a dataId (letters, digits and - _ . : only)", dataID)
	}
	cat, err := newCatalog(cfg, groupOrDefault(group))
	if err != nil {
		return nil, err
	}
	return &RuleSource{cat: cat, dataID: dataID}, nil
}

// String implements rules.Source: "nacos:<namespace>/<group>/<dataId>".
func (s *RuleSource) String() string { return s.cat.Describe(s.dataID) }

// Watch implements rules.Source. It delivers the config item with the
// MD5 of its content as the version, or the nil Document when the item
// does not exist or is empty (the server answered, with nothing), then
// every change, until ctx ends (ctx.Err()) or the health check fails (an
// error). A deletion delivers the nil Document, and the mesh keeps its
// last rules.
func (s *RuleSource) Watch(ctx context.Context, update func(rules.Document)) error {
	return s.cat.Watch(ctx, s.dataID, update)
}

// Close closes the SDK client and removes its private directory. Watch
// fails after Close. Close is safe to call more than once.
func (s *RuleSource) Close() error { return s.cat.Close() }

// removeDir removes a private directory made by clientParam.
func removeDir(dir string) {
	if dir != "" {
		os.RemoveAll(dir)
	}
}

// Publish writes content to the config item dataID in group
// (DefaultGroup when empty), as an ops engineer would in the Nacos
// console. It connects a client for this one call and closes it, so it
// suits tools and examples, not loops.
func Publish(cfg Config, dataID, group, content string) error {
	return PublishIfMD5(cfg, dataID, group, content, "")
}

// PublishIfMD5 is Publish done only while the item's content has the MD5
// casMD5 (hex, as Nacos reports it; the MD5 of what Fetch read): Nacos
// compares and writes in one step, so an edit published since the read is
// never overwritten. The error does not say whether the content changed;
// Fetch again to tell. An empty casMD5 writes unconditionally.
func PublishIfMD5(cfg Config, dataID, group, content, casMD5 string) error {
	if dataID == "" || content == "" {
		return errors.New("nacos: publish needs a dataId and content")
	}
	group = groupOrDefault(group)
	return withConfigClient(cfg, func(client *configClient) error {
		// Type and SrcUser go with every publish: the SDK sends them empty
		// otherwise, and the server then sets the item's format to text
		// (an item made YAML in the console lost its YAML check and
		// highlighting) and records no user in the item's history.
		ok, err := client.publish(vo.ConfigParam{DataId: dataID, Group: group, Content: content, CasMd5: casMD5, Type: "yaml", SrcUser: historyUser(cfg)})
		if err == nil && !ok {
			err = errors.New("server refused")
		}
		if err != nil {
			return fmt.Errorf("nacos: publish %s/%s: %w", group, dataID, newDiagnosis(cfg).explain(context.Background(), err))
		}
		return nil
	})
}

// Fetch reads the content of the config item dataID in group
// (DefaultGroup when empty); "" with a nil error when the item does not
// exist. Like Publish, it connects a client for this one call.
func Fetch(cfg Config, dataID, group string) (string, error) {
	if dataID == "" {
		return "", errors.New("nacos: fetch needs a dataId")
	}
	group = groupOrDefault(group)
	var content string
	err := withConfigClient(cfg, func(client *configClient) error {
		var err error
		if content, err = client.get(dataID, group); err != nil {
			return fmt.Errorf("nacos: fetch %s/%s: %w", group, dataID, newDiagnosis(cfg).explain(context.Background(), err))
		}
		return nil
	})
	return content, err
}

// historyUser is who a publish is recorded as in the item's history: the
// user logged in as, else "lightmesh".
func historyUser(cfg Config) string {
	if cfg.Username != "" {
		return cfg.Username
	}
	return "lightmesh"
}

func groupOrDefault(group string) string {
	if group == "" {
		return DefaultGroup
	}
	return group
}

// withConfigClient runs fn with a config client of cfg made for the call.
func withConfigClient(cfg Config, fn func(*configClient) error) error {
	param, dir, err := cfg.clientParam()
	if err != nil {
		return err
	}
	defer removeDir(dir)
	client, err := newConfigClient(cfg, param)
	if err != nil {
		return fmt.Errorf("nacos: config client for %s: %w", cfg, err)
	}
	defer client.close()
	return fn(client)
}
