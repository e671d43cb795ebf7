package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/lightmesh/lightmesh/discovery/nacos"
	"github.com/lightmesh/lightmesh/router"
)

// location is where a rule document (or instance list) lives: a Nacos
// config item or naming group, an etcd key or prefix.
type location struct {
	kind  string   // "nacos" or "etcd"
	hosts []string // host:port
	// Nacos: group and dataId (dataId empty for a naming group), and the
	// namespace.
	group, dataID, namespace string
	// etcd: the key (or the prefix of an instance list).
	key string
}

func (l location) String() string {
	switch l.kind {
	case "nacos":
		s := "nacos://" + strings.Join(l.hosts, ",") + "/" + l.group
		if l.dataID != "" {
			s += "/" + l.dataID
		}
		if l.namespace != "" {
			s += "?namespace=" + l.namespace
		}
		return s
	}
	return "etcd://" + strings.Join(l.hosts, ",") + "/" + l.key
}

// parseLocation reads nacos://HOST:PORT/GROUP[/DATA_ID][?namespace=NS] or
// etcd://HOST:PORT[,HOST:PORT...]/KEY. Credentials in the URL are
// refused (without echoing them): they belong in the environment.
func parseLocation(s string) (location, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || (scheme != "nacos" && scheme != "etcd") {
		return location{}, fmt.Errorf("location %q: want nacos://HOST:PORT/GROUP/DATA_ID or etcd://HOST:PORT/KEY", s)
	}
	rest, query, _ := strings.Cut(rest, "?")
	hostPart, path, _ := strings.Cut(rest, "/")
	if strings.Contains(hostPart, "@") {
		env := "NACOS_USERNAME and NACOS_PASSWORD"
		if scheme == "etcd" {
			env = "ETCD_USERNAME and ETCD_PASSWORD"
		}
		return location{}, fmt.Errorf("%s location: credentials do not go in the URL; set %s", scheme, env)
	}
	l := location{kind: scheme}
	for _, h := range strings.Split(hostPart, ",") {
		if h = strings.TrimSpace(h); h != "" {
			l.hosts = append(l.hosts, h)
		}
	}
	if len(l.hosts) == 0 {
		return location{}, fmt.Errorf("%s location: no host:port", scheme)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return location{}, fmt.Errorf("%s location: query: %v", scheme, err)
	}
	switch scheme {
	case "nacos":
		l.group, l.dataID, _ = strings.Cut(path, "/")
		l.namespace = q.Get("namespace")
		if l.group == "" {
			l.group = nacos.DefaultGroup
		}
	case "etcd":
		l.key = "/" + path
		if path == "" {
			return location{}, errors.New("etcd location: no key (etcd://HOST:PORT/KEY)")
		}
	}
	return l, nil
}

// nacosConfig returns the Nacos client config for l, with credentials from
// the environment.
func (c *cli) nacosConfig(l location) nacos.Config {
	return nacos.Config{
		Addresses:   l.hosts,
		NamespaceID: l.namespace,
		Username:    c.env("NACOS_USERNAME"),
		Password:    c.env("NACOS_PASSWORD"),
		AccessKey:   c.env("NACOS_ACCESS_KEY"),
		SecretKey:   c.env("NACOS_SECRET_KEY"),
	}
}

// etcdClient returns a client of l's endpoints, with credentials from the
// environment. The caller closes it.
func (c *cli) etcdClient(l location) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		// With credentials, New authenticates at once: an unreachable
		// server fails here.
		Endpoints:   l.hosts,
		DialTimeout: 5 * time.Second,
		Username:    c.env("ETCD_USERNAME"),
		Password:    c.env("ETCD_PASSWORD"),
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, etcdError(l, "connect", err)
	}
	return cli, nil
}

// etcdError says what failed at l, with advice when the server did not
// answer.
func etcdError(l location, op string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("etcd %s: %s: no answer from %s in time; is the server running and the address right?", op, l.key, strings.Join(l.hosts, ","))
	}
	return fmt.Errorf("etcd %s %s: %w", op, l.key, err)
}

// fetch reads the document at l; "" when there is none.
func (c *cli) fetch(ctx context.Context, l location) (string, error) {
	switch l.kind {
	case "nacos":
		if l.dataID == "" {
			return "", fmt.Errorf("%s: no dataId (nacos://HOST:PORT/GROUP/DATA_ID)", l)
		}
		return nacos.Fetch(c.nacosConfig(l), l.dataID, l.group)
	}
	cli, err := c.etcdClient(l)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, l.key)
	if err != nil {
		return "", etcdError(l, "get", err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// fetchDocument is fetch, failing when l holds no document.
func (c *cli) fetchDocument(ctx context.Context, l location) (string, error) {
	doc, err := c.fetch(ctx, l)
	if err == nil && doc == "" {
		err = fmt.Errorf("%s: no document there", l)
	}
	return doc, err
}

// publish writes doc at l.
func (c *cli) publish(ctx context.Context, l location, doc string) error {
	switch l.kind {
	case "nacos":
		if l.dataID == "" {
			return fmt.Errorf("%s: no dataId (nacos://HOST:PORT/GROUP/DATA_ID)", l)
		}
		return nacos.Publish(c.nacosConfig(l), l.dataID, l.group, doc)
	}
	cli, err := c.etcdClient(l)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, l.key, doc); err != nil {
		return etcdError(l, "put", err)
	}
	return nil
}

func runGet(ctx context.Context, c *cli, args []string) error {
	fs := newFlags(c, "get")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		fs.Usage()
		return exitError{2}
	}
	l, err := parseLocation(rest[0])
	if err != nil {
		return err
	}
	doc, err := c.fetchDocument(ctx, l)
	if err != nil {
		return err
	}
	_, err = fmt.Fprint(c.stdout, strings.TrimRight(doc, "\n")+"\n")
	return err
}

func runPush(ctx context.Context, c *cli, args []string) error {
	fs := newFlags(c, "push")
	file := fs.String("f", "", "the rule document to publish (required)")
	dryRun := fs.Bool("dry-run", false, "validate and print what would change for traffic against the live document; publish nothing")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *file == "" || len(rest) != 1 {
		fs.Usage()
		return exitError{2}
	}
	l, err := parseLocation(rest[0])
	if err != nil {
		return err
	}
	data, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	next, err := router.Load(data)
	if err != nil {
		c.printProblems(*file, err)
		fmt.Fprintf(c.stderr, "lightmesh push: %s is invalid; nothing was published to %s\n", *file, l)
		return errReported
	}
	if *dryRun {
		live, err := c.fetch(ctx, l)
		if err != nil {
			return err
		}
		var changes []change
		if live == "" {
			fmt.Fprintf(c.stdout, "%s holds no document: the push would create it\n", l)
			return nil
		}
		old, err := router.Load([]byte(live))
		if err != nil {
			fmt.Fprintf(c.stdout, "the live document at %s is invalid (the mesh keeps its last good rules): %v\n", l, err)
			return nil
		}
		changes = diffDocuments(old.Document(), next.Document())
		writeChanges(c.stdout, changes)
		fmt.Fprintf(c.stdout, "dry run: nothing was published to %s\n", l)
		return nil
	}
	if err := c.publish(ctx, l, string(data)); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "published %s to %s\n", *file, l)
	return nil
}
