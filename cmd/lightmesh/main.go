// Command lightmesh is the operator's tool for lightmesh rule documents:
// it validates them with the mesh's own validation, prints their JSON
// Schema, explains where a call would go, shows what a change does to
// traffic, reads and publishes them in Nacos and etcd (refusing invalid
// ones), and converts Istio VirtualService and DestinationRule YAML.
//
//	go install github.com/lightmesh/lightmesh/cmd/lightmesh@latest
//	lightmesh validate rules.yaml
//	lightmesh explain -f rules.yaml --instances instances.yaml --service user-api --header x-env=staging
//	lightmesh help
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/lightmesh/lightmesh/discovery/nacos"
)

func main() {
	// Ctrl-C ends ctx: get and push stop waiting on a store at once. A
	// second Ctrl-C ends the process, as without the handler.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	context.AfterFunc(ctx, stop)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// env is what the command reads of its environment: credentials, never
// flags, so they stay out of shell history and process lists.
type env func(string) string

// command is one subcommand.
type command struct {
	summary string
	usage   string // the synopsis after "lightmesh <name> "
	run     func(ctx context.Context, c *cli, args []string) error
}

// cli is one invocation: its output streams, environment and commands.
type cli struct {
	stdout, stderr io.Writer
	env            env
	commands       map[string]command
	etcdTLS        etcdTLS // from the --etcd-* flags
	// nacosFetch and nacosPublish are nacos.Fetch and nacos.PublishIfMD5
	// (tests stand in for a server).
	nacosFetch   func(cfg nacos.Config, dataID, group string) (string, error)
	nacosPublish func(cfg nacos.Config, dataID, group, content, casMD5 string) error
}

// allCommands returns the subcommands by name.
func allCommands() map[string]command {
	return map[string]command{
		"validate": {"check rule documents with the mesh's own validation", "[--service NAME] [-o text|json|yaml] FILE...", runValidate},
		"schema":   {"print the JSON Schema of the rule document", "", runSchema},
		"explain":  {"show where a call would go and why (and whether its caller is authorized), on given rules and instances", "-f RULES --instances INSTANCES --service NAME [--header k=v]... [--path P] [--method M | --grpc-method /pkg.Svc/M] [--caller SPIFFE-ID|none] [-o text|json|yaml]", runExplain},
		"diff":     {"show what changing the rules does to traffic, in force (exit 1 on changes, like diff(1))", "[--service NAME [--defaults FILE]] [-o text|json|yaml] OLD NEW", runDiff},
		"get":      {"print the rule document stored in Nacos or etcd, with the version read", "[-o yaml|json] LOCATION", runGet},
		"push":     {"validate a rule document and publish it to Nacos or etcd over the version it was read from", "-f FILE [--dry-run] [--force] [--service NAME] LOCATION", runPush},
		"import":   {"convert other meshes' configuration (istio)", "istio [--strict] FILE...", runImport},
	}
}

// exitError carries an exit status other than 1 (the default for errors).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// errReported means the problem has been printed already: exit 1 quietly.
var errReported = errors.New("reported")

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) int {
	c := &cli{stdout: stdout, stderr: stderr, env: getenv, commands: allCommands(), nacosFetch: nacos.Fetch, nacosPublish: nacos.PublishIfMD5}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if cmd, ok := c.commands[args[1]]; ok {
				fmt.Fprintf(stdout, "usage: lightmesh %s %s\n\n%s.\n", args[1], cmd.usage, cmd.summary)
				return 0
			}
		}
		c.usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := c.commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "lightmesh: unknown command %q\n", args[0])
		c.usage(stderr)
		return 2
	}
	err := cmd.run(ctx, c, args[1:])
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, errReported):
		return 1
	}
	fmt.Fprintf(stderr, "lightmesh %s: %v\n", args[0], err)
	return 1
}

func (c *cli) usage(w io.Writer) {
	fmt.Fprintln(w, "usage: lightmesh <command> [flags] [args]")
	fmt.Fprintln(w)
	names := make([]string, 0, len(c.commands))
	for name := range c.commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-9s %s\n", name, c.commands[name].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'lightmesh <command> -h' for a command's flags. A LOCATION is")
	fmt.Fprintln(w, "  nacos://HOST:PORT/GROUP/DATA_ID[?namespace=NS]   (credentials: NACOS_USERNAME, NACOS_PASSWORD, NACOS_ACCESS_KEY, NACOS_SECRET_KEY)")
	fmt.Fprintln(w, "  etcd://HOST:PORT[,HOST:PORT...]/KEY              (credentials: ETCD_USERNAME, ETCD_PASSWORD; TLS: --etcd-cacert, --etcd-cert, --etcd-key)")
}

// newFlags returns the flag set of a subcommand, with its usage.
func newFlags(c *cli, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("lightmesh "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	cmd := c.commands[name]
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "usage: lightmesh %s %s\n\n%s.\n\nflags:\n", name, cmd.usage, cmd.summary)
		fs.PrintDefaults()
	}
	return fs
}

// outputFlag adds -o/--output to fs.
func outputFlag(fs *flag.FlagSet, formats ...string) *string {
	o := formats[0]
	help := "output format: " + strings.Join(formats, ", ")
	fs.StringVar(&o, "o", o, help)
	fs.StringVar(&o, "output", o, help)
	return &o
}

// writeStructured writes v as JSON or YAML (YAML through v's JSON form,
// so both use the same field names).
func writeStructured(w io.Writer, format string, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	if format == "json" {
		_, err := w.Write(b.Bytes())
		return err
	}
	var tree any
	if err := json.Unmarshal(b.Bytes(), &tree); err != nil {
		return err
	}
	out, err := yaml.Marshal(tree)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// checkOutput returns an error unless o is one of formats.
func checkOutput(o string, formats ...string) error {
	for _, f := range formats {
		if o == f {
			return nil
		}
	}
	return fmt.Errorf("-o %s: want one of %s", o, strings.Join(formats, ", "))
}

// parseInterspersed parses args with fs, flags and positional arguments in
// any order (kubectl style), and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return rest, nil
		}
		if args[0] == "--" {
			return append(rest, args[1:]...), nil
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
}
