package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/lightmesh/lightmesh/discovery/etcd"
	"github.com/lightmesh/lightmesh/discovery/nacos"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/rules"
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
	return "etcd://" + strings.Join(l.hosts, ",") + l.key // the key starts with /
}

// name is the last element of l's key or dataId: the document name in a
// per-service layout (user-api, _defaults).
func (l location) name() string {
	if l.kind == "nacos" {
		return l.dataID
	}
	return l.key[strings.LastIndexByte(l.key, '/')+1:]
}

// isLocation reports whether s names a Nacos or etcd location rather than
// a file: it has a scheme, or starts like one (nacos:/, a slash short).
func isLocation(s string) bool {
	return strings.Contains(s, "://") || strings.HasPrefix(s, "nacos:") || strings.HasPrefix(s, "etcd:")
}

// redactUserinfo returns s with what comes before an @ (credentials, in
// a URL) replaced, after the scheme: nacos:/user:pw@host → nacos:…@host.
func redactUserinfo(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return s
	}
	if colon := strings.IndexByte(s, ':'); colon >= 0 && colon < at {
		return s[:colon+1] + "…" + s[at:]
	}
	return "…" + s[at:]
}

// sibling returns the location of the document name beside l's in the
// per-service layout: the same Nacos group, the same etcd prefix.
func (l location) sibling(name string) location {
	if l.kind == "nacos" {
		l.dataID = name
		return l
	}
	l.key = l.key[:strings.LastIndexByte(l.key, '/')+1] + name
	return l
}

// parseLocation reads nacos://HOST:PORT/GROUP[/DATA_ID][?namespace=NS] or
// etcd://HOST:PORT[,HOST:PORT...]/KEY. Credentials in the URL are
// refused (without echoing them): they belong in the environment.
func parseLocation(s string) (location, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || (scheme != "nacos" && scheme != "etcd") {
		return location{}, fmt.Errorf("location %q: want nacos://HOST:PORT/GROUP/DATA_ID or etcd://HOST:PORT/KEY", redactUserinfo(s))
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
// caller closes it. It stops waiting when ctx ends (Ctrl-C): an
// *interrupted.
func (c *cli) etcdClient(ctx context.Context, l location) (*clientv3.Client, error) {
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
		Context:     ctx,
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil, &interrupted{l: l}
		}
		if errors.Is(err, context.DeadlineExceeded) {
			// The client keeps the reason to itself; a client without
			// credentials can ask.
			cfg.Username, cfg.Password = "", ""
			if probe, perr := clientv3.New(cfg); perr == nil {
				err = checkEtcd(ctx, probe, err)
				probe.Close()
			}
		}
		if ctx.Err() != nil {
			return nil, &interrupted{l: l}
		}
		return nil, c.etcdError(l, "connect", err)
	}
	// Calls over a connection that cannot be made wait and then fail
	// with no reason; Check says why.
	if err := checkEtcd(ctx, cli, nil); err != nil {
		cli.Close()
		if ctx.Err() != nil {
			return nil, &interrupted{l: l}
		}
		return nil, c.etcdError(l, "connect", err)
	}
	return cli, nil
}

// checkEtcd runs etcd.Check on cli and returns its error, or orElse when
// the server answers.
func checkEtcd(ctx context.Context, cli *clientv3.Client, orElse error) error {
	ctx, cancel := context.WithTimeout(ctx, etcdCheckTimeout)
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

// noVersion is the version of a location that holds no document.
const noVersion = "none"

// stored is what a location holds: its document ("" for none) and the
// version that a conditional write compares (etcd: the key's
// ModRevision; Nacos: the MD5 of the content; noVersion for none).
type stored struct {
	doc, version string
}

// nacosVersion is the version Nacos compares for content: its MD5.
func nacosVersion(content string) string {
	if content == "" {
		return noVersion
	}
	sum := md5.Sum([]byte(content))
	return hex.EncodeToString(sum[:])
}

// interrupted is a call to the store at l given up when the command's
// context ended (Ctrl-C) before the store answered.
type interrupted struct {
	l location
	// sent: a write had been sent, so the store may have applied it.
	sent bool
}

func (e *interrupted) Error() string {
	if e.sent {
		return fmt.Sprintf("interrupted after the publish was sent to %s: it may or may not have been applied; run lightmesh get %s to see", e.l, e.l)
	}
	return fmt.Sprintf("interrupted while waiting for %s", e.l)
}

// whileWaiting returns what call returns, or an *interrupted (sent as
// told) as soon as ctx ends: for the calls of the Nacos package, which
// take no context. An abandoned call runs on until it ends or the
// command exits.
func whileWaiting[T any](ctx context.Context, l location, sent bool, call func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := call()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, &interrupted{l: l, sent: sent}
	}
}

// fetch reads the document at l, with its version.
func (c *cli) fetch(ctx context.Context, l location) (stored, error) {
	switch l.kind {
	case "nacos":
		if l.dataID == "" {
			return stored{}, fmt.Errorf("%s: no dataId (nacos://HOST:PORT/GROUP/DATA_ID)", l)
		}
		doc, err := whileWaiting(ctx, l, false, func() (string, error) {
			return c.nacosFetch(c.nacosConfig(l), l.dataID, l.group)
		})
		return stored{doc: doc, version: nacosVersion(doc)}, err
	}
	cli, err := c.etcdClient(ctx, l)
	if err != nil {
		return stored{}, err
	}
	defer cli.Close()
	callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := cli.Get(callCtx, l.key)
	if err != nil {
		if ctx.Err() != nil {
			return stored{}, &interrupted{l: l}
		}
		return stored{}, c.etcdError(l, "get", err)
	}
	return etcdStored(resp.Kvs), nil
}

// etcdStored is what a get of one key answered.
func etcdStored(kvs []*mvccpb.KeyValue) stored {
	if len(kvs) == 0 {
		return stored{version: noVersion}
	}
	return stored{doc: string(kvs[0].Value), version: strconv.FormatInt(kvs[0].ModRevision, 10)}
}

// fetchDocument is fetch, failing when l holds no document.
func (c *cli) fetchDocument(ctx context.Context, l location) (stored, error) {
	st, err := c.fetch(ctx, l)
	if err == nil && st.doc == "" {
		err = fmt.Errorf("%s: no document there", l)
	}
	return st, err
}

// conflictError is a conditional write refused: l no longer holds the
// version the write expected.
type conflictError struct {
	l        location
	expected string
	live     stored
}

func (e *conflictError) Error() string {
	return fmt.Sprintf("%s changed since it was read (version %s, now %s)", e.l, e.expected, e.live.version)
}

// publish writes doc at l if l still holds version ifVersion (noVersion:
// if l holds no document), and returns the version written; force
// writes whatever l holds. A write refused for the version is a
// *conflictError with what l holds now.
func (c *cli) publish(ctx context.Context, l location, doc, ifVersion string, force bool) (string, error) {
	switch l.kind {
	case "nacos":
		if l.dataID == "" {
			return "", fmt.Errorf("%s: no dataId (nacos://HOST:PORT/GROUP/DATA_ID)", l)
		}
		cas := ""
		if !force {
			// Nacos compares only an item that exists: given a version,
			// it creates a deleted item again. Check just before
			// writing that an item exists when a version is expected,
			// and that none does when none is.
			live, err := c.fetch(ctx, l)
			if err != nil {
				return "", err
			}
			if (live.doc == "") != (ifVersion == noVersion) {
				return "", &conflictError{l, ifVersion, live}
			}
			if ifVersion != noVersion {
				cas = ifVersion
			}
		}
		_, err := whileWaiting(ctx, l, true, func() (struct{}, error) {
			return struct{}{}, c.nacosPublish(c.nacosConfig(l), l.dataID, l.group, doc, cas)
		})
		var intr *interrupted
		if err != nil && !errors.As(err, &intr) {
			// Nacos does not say why it refused, and a publish whose
			// answer was lost (a timeout) may have been applied: look.
			// It compares with its database and serves reads from a
			// cache refreshed just after a write, so look a few times.
			ours := nacosVersion(doc)
			for range 10 {
				live, ferr := c.fetch(ctx, l)
				if ferr != nil {
					break
				}
				if live.version == ours {
					return ours, nil // applied; only its answer was lost
				}
				if cas != "" && live.version != cas {
					return "", &conflictError{l, ifVersion, live}
				}
				select {
				case <-time.After(100 * time.Millisecond):
				case <-ctx.Done():
				}
			}
		}
		if err != nil {
			return "", err
		}
		return nacosVersion(doc), nil
	}
	cli, err := c.etcdClient(ctx, l)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	if ctx.Err() != nil {
		return "", &interrupted{l: l}
	}
	callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if force {
		resp, err := cli.Put(callCtx, l.key, doc)
		if err != nil {
			if ctx.Err() != nil {
				return "", &interrupted{l: l, sent: true}
			}
			return "", c.etcdError(l, "put", err)
		}
		return strconv.FormatInt(resp.Header.Revision, 10), nil
	}
	rev := int64(0) // a key that does not exist has ModRevision 0
	if ifVersion != noVersion {
		if rev, err = strconv.ParseInt(ifVersion, 10, 64); err != nil || rev <= 0 {
			return "", fmt.Errorf("version %q: an etcd version is the key's ModRevision, a number", ifVersion)
		}
	}
	resp, err := cli.Txn(callCtx).
		If(clientv3.Compare(clientv3.ModRevision(l.key), "=", rev)).
		Then(clientv3.OpPut(l.key, doc)).
		Else(clientv3.OpGet(l.key)).
		Commit()
	if err != nil {
		if ctx.Err() != nil {
			return "", &interrupted{l: l, sent: true}
		}
		return "", c.etcdError(l, "put", err)
	}
	if !resp.Succeeded {
		return "", &conflictError{l, ifVersion, etcdStored(resp.Responses[0].GetResponseRange().Kvs)}
	}
	return strconv.FormatInt(resp.Header.Revision, 10), nil
}

// versionPrefix starts the comment line get writes first, which push
// reads back: the version of the document the file was read from.
const versionPrefix = "# lightmesh-version: "

// versionLine is the comment get writes above a document read at l.
func versionLine(l location, version string) string {
	return versionPrefix + version + " (read from " + l.String() + "; lightmesh push publishes only over this version)"
}

// readVersion returns the version and the location of the line of data
// written by get; "" when there is none. doc is data without that line,
// what push publishes; asEdited is data with that line left empty, which
// reads the same and keeps every line and column where the file on disk
// has it, for the problems push names. The line is looked for among the
// comments that open the file (an editor's modeline may have been put
// above it). A byte-order mark, which some editors write when they save,
// is not part of the document.
func readVersion(data []byte) (version, from string, doc, asEdited []byte) {
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	for start := 0; start < len(data); {
		end := len(data)
		if i := bytes.IndexByte(data[start:], '\n'); i >= 0 {
			end = start + i + 1
		}
		line := bytes.TrimRight(data[start:end], "\r\n")
		if v, ok := bytes.CutPrefix(line, []byte(versionPrefix)); ok {
			ver, note, _ := bytes.Cut(v, []byte(" "))
			if f, ok := bytes.CutPrefix(note, []byte("(read from ")); ok {
				from, _, _ = strings.Cut(string(f), ";")
			}
			lineEnd := data[start+len(line) : end]
			return string(ver), from, slices.Concat(data[:start], data[end:]), slices.Concat(data[:start], lineEnd, data[end:])
		}
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			break // the document has begun
		}
		start = end
	}
	return "", "", data, data
}

// fetched is get's JSON output.
type fetched struct {
	Location string `json:"location"`
	Version  string `json:"version"`
	Document string `json:"document"`
}

func runGet(ctx context.Context, c *cli, args []string) error {
	fs := newFlags(c, "get")
	out := outputFlag(fs, "yaml", "json")
	c.etcdTLSFlags(fs)
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if err := checkOutput(*out, "yaml", "json"); err != nil {
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
	st, err := c.fetchDocument(ctx, l)
	if err != nil {
		return err
	}
	if *out == "json" {
		return writeStructured(c.stdout, "json", fetched{Location: l.String(), Version: st.version, Document: st.doc})
	}
	_, err = fmt.Fprint(c.stdout, versionLine(l, st.version)+"\n"+strings.TrimRight(st.doc, "\n")+"\n")
	return err
}

func runPush(ctx context.Context, c *cli, args []string) error {
	err := push(ctx, c, args)
	var intr *interrupted
	if errors.As(err, &intr) && !intr.sent {
		return fmt.Errorf("%w; nothing was published", err)
	}
	return err
}

// push is the push command; runPush says what an interruption left.
func push(ctx context.Context, c *cli, args []string) error {
	fs := newFlags(c, "push")
	file := fs.String("f", "", "the rule document to publish (required); its first line, written by lightmesh get, names the version it was read from")
	dryRun := fs.Bool("dry-run", false, "validate and print what would change for traffic against the live document; publish nothing")
	force := fs.Bool("force", false, "publish over whatever the location holds, even an edit this file was not read from")
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
	readFrom, from, data, asEdited := readVersion(data)
	if from != "" && !sameItem(from, l) {
		// Read elsewhere (staging, say): its version says nothing here.
		fmt.Fprintf(c.stderr, "lightmesh push: %s was read from %s, not %s%s\n", *file, from, l, otherHostsHint(from, l))
		readFrom = ""
	}
	if *service != "" && l.name() != *service {
		// The catalog reads the document of a service from the key or
		// dataId named after it.
		return fmt.Errorf("--service %s: %s is the document of %q, not of %q; every mesh would reject it there", *service, l, l.name(), *service)
	}
	asDefaults := ""
	if *service == "" && l.name() == rules.DefaultsName {
		// The name is the per-service layout's: every mesh reads the
		// document there as the defaults document.
		*service = rules.DefaultsName
		asDefaults = fmt.Sprintf(" as the defaults document of the per-service layout (%s is named %s; lightmesh validate --service %s gives the same)", l, rules.DefaultsName, rules.DefaultsName)
	}
	// The problems are named at the lines of the file on disk.
	next, err := load(*service, asEdited)
	if err != nil {
		c.printProblems(*file, err)
		fmt.Fprintf(c.stderr, "lightmesh push: %s is invalid%s; nothing was published to %s\n", *file, asDefaults, l)
		return errReported
	}
	// In the per-service layout a service's document is composed with
	// the defaults document beside it: diffs show what is in force then.
	var defaults *router.Document
	if *service != "" && *service != rules.DefaultsName {
		defaults = c.defaultsBeside(ctx, l)
	}
	if *dryRun {
		live, err := c.fetch(ctx, l)
		if err != nil {
			return err
		}
		if live.doc == "" {
			fmt.Fprintf(c.stdout, "%s holds no document: the push would create it\n", l)
		} else {
			writeDiff(c.stdout, *service, live.doc, next, defaults)
		}
		switch {
		case *force:
		case readFrom != "" && readFrom != live.version:
			fmt.Fprintf(c.stdout, "%s changed since it was read into %s (version %s, now %s): the push would be refused; the diff above undoes what was published since\n", l, *file, readFrom, live.version)
		case readFrom == "" && live.doc != "" && live.doc != string(data):
			fmt.Fprintf(c.stdout, "%s was not read from %s, which holds a document (version %s): the push would be refused (--force replaces it)\n", *file, l, live.version)
		}
		fmt.Fprintf(c.stdout, "dry run: nothing was published to %s\n", l)
		return nil
	}
	if readFrom == "" && !*force {
		// A file not read with get: publish only where there is nothing
		// to overwrite, or nothing would change.
		live, err := c.fetch(ctx, l)
		if err != nil {
			return err
		}
		switch {
		case live.doc == "":
			// No key (noVersion), or one emptied (etcd: its
			// ModRevision), which holds no document either.
			readFrom = live.version
		case live.doc == string(data):
			fmt.Fprintf(c.stdout, "%s already holds %s (version %s): nothing to publish\n", l, *file, live.version)
			return nil
		default:
			fmt.Fprintf(c.stderr, "lightmesh push: %s holds a document (version %s) that %s was not read from; publishing would replace it. What the push would change:\n", l, live.version, *file)
			writeDiff(c.stderr, *service, live.doc, next, defaults)
			// Never get into the file pushed: that would lose the edit.
			fresh := besideFile(*file)
			fmt.Fprintf(c.stderr, "start from the live document (lightmesh get %s > %s, carry your edit over from %s, and push %s), or replace it with push --force; nothing was published\n", l, fresh, *file, fresh)
			return errReported
		}
	}
	version, err := c.publish(ctx, l, string(data), readFrom, *force)
	var conflict *conflictError
	if errors.As(err, &conflict) {
		fmt.Fprintf(c.stderr, "lightmesh push: %v: someone published since %s was read. What the push would change in the live document:\n", err, *file)
		if conflict.live.doc == "" {
			fmt.Fprintf(c.stderr, "(the document was deleted)\n")
		} else {
			writeDiff(c.stderr, *service, conflict.live.doc, next, defaults)
		}
		fmt.Fprintf(c.stderr, "read it again (lightmesh get %s), merge your change, and push; or replace it with push --force. Nothing was published\n", l)
		return errReported
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "published %s to %s (version %s)\n", *file, l, version)
	return nil
}

// besideFile returns a file name beside file, for get to write the live
// document into: never file itself, which holds the operator's edit.
func besideFile(file string) string {
	ext := filepath.Ext(file)
	return strings.TrimSuffix(file, ext) + ".live" + ext
}

// sameItem reports whether the location from (as get wrote it in a file)
// names the same item as l: the same location, whatever the order of its
// hosts, with Nacos's public namespace written "" or "public".
func sameItem(from string, l location) bool {
	f, err := parseLocation(from)
	return err == nil && f.canonical() == l.canonical()
}

// canonical is l written one way for each item: its hosts sorted, the
// public Nacos namespace "". Hosts are compared as written: localhost
// and 127.0.0.1 may or may not be the same server.
func (l location) canonical() string {
	l.hosts = slices.Sorted(slices.Values(l.hosts))
	if l.kind == "nacos" && l.namespace == "public" {
		l.namespace = ""
	}
	return l.String()
}

// otherHostsHint is advice for a file read from the same item as l
// through other hosts (localhost for 127.0.0.1, say): push to where it
// was read, where its version is checked.
func otherHostsHint(from string, l location) string {
	f, err := parseLocation(from)
	if err != nil {
		return ""
	}
	f.hosts, l.hosts = nil, nil
	if f.canonical() != l.canonical() {
		return ""
	}
	return fmt.Sprintf(" (the same name at other hosts: if they are the same servers, push to %s, where the version read is checked)", from)
}

// defaultsBeside returns the defaults document beside l in the
// per-service layout, or nil when there is none, saying why on stderr
// when it cannot be read or is invalid.
func (c *cli) defaultsBeside(ctx context.Context, l location) *router.Document {
	at := l.sibling(rules.DefaultsName)
	st, err := c.fetch(ctx, at)
	var intr *interrupted
	if errors.As(err, &intr) {
		return nil // the next call says so
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "lightmesh push: the defaults document %s: %v; what is in force is shown without it\n", at, err)
		return nil
	}
	if st.doc == "" {
		return nil
	}
	d, err := router.LoadPart("", []byte(st.doc))
	if err != nil {
		fmt.Fprintf(c.stderr, "lightmesh push: the defaults document %s is invalid (the meshes keep its last good version); what is in force is shown without it\n", at)
		return nil
	}
	return d.Document()
}

// writeDiff prints to w what changes for traffic from the live document
// to next, composed with defaults (the per-service layout's defaults
// document; nil for none), or that the live document is invalid (the mesh
// then keeps its last good rules).
func writeDiff(w io.Writer, service, live string, next *router.Rules, defaults *router.Document) {
	old, err := load(service, []byte(live))
	if err != nil {
		fmt.Fprintf(w, "the live document is invalid (the mesh keeps its last good rules): %v\n", err)
		return
	}
	if defaults != nil {
		composed := [2]*router.Rules{}
		for i, r := range []*router.Rules{old, next} {
			if composed[i], err = router.Compose(defaults, r.Document()); err != nil {
				fmt.Fprintf(w, "with the defaults document: %v\n", err)
				return
			}
		}
		old, next = composed[0], composed[1]
	}
	writeChanges(w, diffRules(old, next))
}
