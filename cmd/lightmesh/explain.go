package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/discovery/etcd"
	"github.com/lightmesh/lightmesh/discovery/nacos"
	"github.com/lightmesh/lightmesh/internal/textdist"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/rules"
)

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func runExplain(ctx context.Context, c *cli, args []string) error {
	fs := newFlags(c, "explain")
	rulesAt := fs.String("f", "", "the rules: a file, or a LOCATION (nacos://..., etcd://...)")
	instancesAt := fs.String("instances", "", "the instances: a YAML file (service: [{address, labels, weight}]), nacos://HOST:PORT/GROUP or etcd://HOST:PORT/PREFIX")
	var instanceFlags, headerFlags multiFlag
	fs.Var(&instanceFlags, "instance", "an instance, SERVICE=HOST:PORT[,label=value...] (repeatable)")
	service := fs.String("service", "", "the service called (required)")
	fs.Var(&headerFlags, "header", "a request header or gRPC metadata, name=value or name:value (repeatable)")
	path := fs.String("path", "/", "the request path")
	method := fs.String("method", http.MethodGet, "the HTTP method")
	grpcMethod := fs.String("grpc-method", "", "a gRPC call's full method, /pkg.Service/Method (path and method are then ignored)")
	caller := fs.String("caller", "", "the caller's SPIFFE ID (or none, for a caller without a certificate): explain says whether the service's authorization serves it, and which rule decided")
	wait := fs.Duration("timeout", 10*time.Second, "how long to wait for the rules and the instances")
	out := outputFlag(fs, "text", "json", "yaml")
	c.etcdTLSFlags(fs)
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if err := checkOutput(*out, "text", "json", "yaml"); err != nil {
		return err
	}
	if *rulesAt == "" || *service == "" || len(rest) > 0 {
		fs.Usage()
		return exitError{2}
	}
	if err := mesh.CheckCaller(*caller); err != nil {
		return fmt.Errorf("--caller %q: %v", *caller, err)
	}
	req := mesh.ExplainRequest{Service: *service, Method: *method, Path: *path, GRPCMethod: *grpcMethod, Header: http.Header{}, Caller: *caller}
	for _, h := range headerFlags {
		k, v, ok := strings.Cut(h, "=")
		if !ok {
			k, v, ok = strings.Cut(h, ":")
		}
		if !ok || strings.TrimSpace(k) == "" {
			return fmt.Errorf("--header %q: want name=value", h)
		}
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}

	var closers []io.Closer
	defer func() {
		for _, cl := range closers {
			cl.Close()
		}
	}()
	// Validate first, as the mesh will: a rejected document is reported
	// at once, as validate reports it, rather than after the start
	// timeout.
	loaded, err := c.checkRules(ctx, *rulesAt)
	if err != nil {
		return err
	}
	src, err := c.ruleSource(ctx, *rulesAt, &closers)
	if err != nil {
		return err
	}
	disc, listed, err := c.instanceSource(ctx, *instancesAt, instanceFlags, &closers)
	if err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	m, err := mesh.New(startCtx,
		mesh.WithRules(src),
		mesh.WithDiscovery(disc),
		mesh.WithServices(*service),
		mesh.WithStartTimeout(*wait),
		mesh.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		return err
	}
	defer m.Close()
	e := m.Explain(req)
	if !slices.Contains(loaded.Services(), *service) && e.Instance == "" && listed[*service] == nil {
		// Most likely a misspelled name: say so rather than explain a
		// call to a service nobody knows.
		msg := fmt.Sprintf("no rule and no discovery entry names %s", *service)
		if *instancesAt != "" && isLocation(*instancesAt) {
			msg = fmt.Sprintf("no rule names %s and discovery has no instance of it", *service)
		}
		names := append(loaded.Services(), slices.Sorted(maps.Keys(listed))...)
		if best := textdist.Closest(*service, names, 2); best != "" {
			msg += fmt.Sprintf("; did you mean %s?", best)
		}
		fmt.Fprintf(c.stderr, "lightmesh explain: %s\n", msg)
		return errReported
	}
	if *out != "text" {
		return writeStructured(c.stdout, *out, e)
	}
	return e.WriteText(c.stdout)
}

// checkRules reads the document at (a file or a location) and validates
// it with router.Load, printing its problems as validate does.
func (c *cli) checkRules(ctx context.Context, at string) (*router.Rules, error) {
	var data []byte
	if isLocation(at) {
		l, err := parseLocation(at)
		if err != nil {
			return nil, err
		}
		doc, err := c.fetchDocument(ctx, l)
		if err != nil {
			return nil, err
		}
		data = []byte(doc.doc)
	} else {
		var err error
		if data, err = os.ReadFile(at); err != nil {
			return nil, err
		}
	}
	loaded, err := router.Load(data)
	if err != nil {
		c.printProblems(at, err)
		return nil, fmt.Errorf("%s is invalid: the mesh rejects it", at)
	}
	return loaded, nil
}

// ruleSource returns the rule source at: a file, or a Nacos or etcd
// location.
func (c *cli) ruleSource(ctx context.Context, at string, closers *[]io.Closer) (rules.Source, error) {
	if !isLocation(at) {
		if _, err := os.Stat(at); err != nil {
			return nil, err
		}
		return rules.NewFile(at, 0), nil
	}
	l, err := parseLocation(at)
	if err != nil {
		return nil, err
	}
	if l.kind == "nacos" {
		if l.dataID == "" {
			return nil, fmt.Errorf("%s: no dataId (nacos://HOST:PORT/GROUP/DATA_ID)", l)
		}
		src, err := nacos.NewRuleSource(c.nacosConfig(l), l.dataID, l.group)
		if err != nil {
			return nil, err
		}
		*closers = append(*closers, src)
		return src, nil
	}
	cli, err := c.etcdClient(ctx, l)
	if err != nil {
		return nil, err
	}
	*closers = append(*closers, cli)
	return etcd.NewRuleSource(cli, l.key), nil
}

// instanceSource returns the instances: a YAML file or a Nacos or etcd
// location, plus those given with --instance; and the instances listed
// in the file and the flags, by service.
func (c *cli) instanceSource(ctx context.Context, at string, flags []string, closers *[]io.Closer) (discovery.Source, map[string][]discovery.Instance, error) {
	static := map[string][]discovery.Instance{}
	for _, f := range flags {
		svc, in, err := parseInstanceFlag(f)
		if err != nil {
			return nil, nil, err
		}
		static[svc] = append(static[svc], in)
	}
	switch {
	case at == "":
		return discovery.NewStatic(static), static, nil
	case !isLocation(at):
		fromFile, err := readInstances(at)
		if err != nil {
			return nil, nil, err
		}
		for svc, list := range fromFile {
			static[svc] = append(static[svc], list...)
		}
		return discovery.NewStatic(static), static, nil
	case len(static) > 0:
		return nil, nil, errors.New("--instance cannot be combined with instances from Nacos or etcd")
	}
	l, err := parseLocation(at)
	if err != nil {
		return nil, nil, err
	}
	if l.kind == "nacos" {
		d, err := nacos.NewDiscovery(c.nacosConfig(l), l.group)
		if err != nil {
			return nil, nil, err
		}
		*closers = append(*closers, d)
		return d, nil, nil
	}
	cli, err := c.etcdClient(ctx, l)
	if err != nil {
		return nil, nil, err
	}
	*closers = append(*closers, cli)
	return etcd.NewDiscovery(cli, l.key), nil, nil
}

// parseInstanceFlag reads SERVICE=HOST:PORT[,label=value...].
func parseInstanceFlag(f string) (string, discovery.Instance, error) {
	svc, rest, ok := strings.Cut(f, "=")
	parts := strings.Split(rest, ",")
	if !ok || svc == "" || parts[0] == "" {
		return "", discovery.Instance{}, fmt.Errorf("--instance %q: want SERVICE=HOST:PORT[,label=value...]", f)
	}
	in := discovery.Instance{Address: parts[0]}
	for _, kv := range parts[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return "", in, fmt.Errorf("--instance %q: label %q: want label=value", f, kv)
		}
		if k == "weight" {
			w, err := strconv.Atoi(v)
			if err != nil {
				return "", in, fmt.Errorf("--instance %q: weight %q: %v", f, v, err)
			}
			in.Weight = w
			continue
		}
		if in.Labels == nil {
			in.Labels = map[string]string{}
		}
		in.Labels[k] = v
	}
	return svc, in, nil
}

// readInstances reads an instance file: service name → list of
// {address, labels, weight, unhealthy}.
func readInstances(path string) (map[string][]discovery.Instance, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var file map[string][]struct {
		Address   string            `yaml:"address"`
		Labels    map[string]string `yaml:"labels"`
		Weight    int               `yaml:"weight"`
		Unhealthy bool              `yaml:"unhealthy"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		return nil, fmt.Errorf("%s: %v (want service: [{address: HOST:PORT, labels: {k: v}, weight: N}])", path, err)
	}
	out := map[string][]discovery.Instance{}
	for svc, list := range file {
		for i, in := range list {
			if in.Address == "" {
				return nil, fmt.Errorf("%s: %s[%d]: no address", path, svc, i)
			}
			out[svc] = append(out[svc], discovery.Instance{Address: in.Address, Labels: in.Labels, Weight: in.Weight, Unhealthy: in.Unhealthy})
		}
	}
	return out, nil
}

var _ flag.Value = (*multiFlag)(nil)
