package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/lightmesh/lightmesh/discovery/etcd"
	"github.com/lightmesh/lightmesh/discovery/nacos"
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

// etcdTLS holds the --etcd-cacert, --etcd-cert and --etcd-key flags.
type etcdTLS struct{ caFile, certFile, keyFile string }

// etcdTLSFlags adds the etcd TLS flags to fs.
func (c *cli) etcdTLSFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.etcdTLS.caFile, "etcd-cacert", "", "talk TLS to etcd, verifying it with the CA certificates in this PEM file (without it, the system's)")
	fs.StringVar(&c.etcdTLS.certFile, "etcd-cert", "", "talk TLS to etcd, presenting this client certificate (PEM; with --etcd-key)")
	fs.StringVar(&c.etcdTLS.keyFile, "etcd-key", "", "the key of --etcd-cert (PEM)")
}

// config returns the TLS configuration the flags ask for: nil (plaintext)
// when none is set.
func (t etcdTLS) config() (*tls.Config, error) {
	if t == (etcdTLS{}) {
		return nil, nil
	}
	if (t.certFile == "") != (t.keyFile == "") {
		return nil, errors.New("--etcd-cert and --etcd-key go together")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.caFile != "" {
		pem, err := os.ReadFile(t.caFile)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cacert: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--etcd-cacert %s: no PEM certificate", t.caFile)
		}
	}
	if t.certFile != "" {
		cert, err := tls.LoadX509KeyPair(t.certFile, t.keyFile)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cert: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// etcdCheckTimeout bounds the check that the server answers.
const etcdCheckTimeout = 5 * time.Second

// etcdClient returns a client of l's endpoints, with credentials from the
// environment and TLS from the flags, once the server has answered. The
// caller closes it.
func (c *cli) etcdClient(l location) (*clientv3.Client, error) {
	tc, err := c.etcdTLS.config()
	if err != nil {
		return nil, err
	}
	cfg := clientv3.Config{
		// With credentials, New authenticates at once: an unreachable
		// server fails here.
		Endpoints:   l.hosts,
		DialTimeout: 5 * time.Second,
		Username:    c.env("ETCD_USERNAME"),
		Password:    c.env("ETCD_PASSWORD"),
		TLS:         tc,
		Logger:      zap.NewNop(),
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			// The client keeps the reason to itself; a client without
			// credentials can ask.
			cfg.Username, cfg.Password = "", ""
			if probe, perr := clientv3.New(cfg); perr == nil {
				err = checkEtcd(probe, err)
				probe.Close()
			}
		}
		return nil, c.etcdError(l, "connect", err)
	}
	// Calls over a connection that cannot be made wait and then fail
	// with no reason; Check says why.
	if err := checkEtcd(cli, nil); err != nil {
		cli.Close()
		return nil, c.etcdError(l, "connect", err)
	}
	return cli, nil
}

// checkEtcd runs etcd.Check on cli and returns its error, or orElse when
// the server answers.
func checkEtcd(cli *clientv3.Client, orElse error) error {
	ctx, cancel := context.WithTimeout(context.Background(), etcdCheckTimeout)
	defer cancel()
	if err := etcd.Check(ctx, cli); err != nil {
		return &etcdConnError{err}
	}
	return orElse
}

// etcdConnError is an error of etcd.Check: the server did not answer.
type etcdConnError struct{ err error }

func (e *etcdConnError) Error() string { return e.err.Error() }
func (e *etcdConnError) Unwrap() error { return e.err }

// etcdError says what failed at l, with advice when the server did not
// answer or the connection failed with TLS in play.
func (c *cli) etcdError(l location, op string, err error) error {
	msg := err.Error()
	var conn *etcdConnError
	tlsTrouble := strings.Contains(msg, "x509:") || strings.Contains(msg, "tls:") || strings.Contains(msg, "require TLS")
	connTrouble := errors.As(err, &conn) && (strings.Contains(msg, "connection error") || strings.Contains(msg, "latest balancer error"))
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("etcd %s: %s: no answer from %s in time; is the server running and the address right?", op, l.key, strings.Join(l.hosts, ","))
	case tlsTrouble || connTrouble && c.etcdTLS != (etcdTLS{}):
		return fmt.Errorf("etcd %s %s: %w; TLS is set with --etcd-cacert, --etcd-cert and --etcd-key", op, l.key, err)
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
		return "", c.etcdError(l, "get", err)
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
		return c.etcdError(l, "put", err)
	}
	return nil
}

func runGet(ctx context.Context, c *cli, args []string) error {
	fs := newFlags(c, "get")
	c.etcdTLSFlags(fs)
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
	service := serviceFlag(fs)
	c.etcdTLSFlags(fs)
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
	next, err := load(*service, data)
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
		old, err := load(*service, []byte(live))
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
