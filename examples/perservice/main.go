// Perservice shows rules per service, on one machine with nothing
// installed: each service's rules in a file of its own in a directory
// (rules.NewDir; etcd and Nacos catalogs work the same way), plus a
// _defaults file. It publishes a broken user-api document and a valid
// order-api one at the same moment, and shows that order-api's update
// applies while user-api keeps its last good rules, then prints what
// the status reports for each document.
//
//	go run ./examples/perservice
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// lanes is the document of service: calls with X-Env: staging go to its
// staging instances, the others to base.
func lanes(service string) string {
	return `apiVersion: lightmesh/v1
services:
  ` + service + `:
    subsets: {base: {labels: {env: base}}, staging: {labels: {env: staging}}}
    routes:
      - match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
      - destinations: [{subset: base}]
`
}

// allStaging is the document of service that sends every call to staging.
func allStaging(service string) string {
	return `apiVersion: lightmesh/v1
services:
  ` + service + `:
    subsets: {staging: {labels: {env: staging}}}
    routes: [{destinations: [{subset: staging}]}]
`
}

// broken is a user-api document with a typo: a subset that does not exist.
const broken = `apiVersion: lightmesh/v1
services:
  user-api:
    subsets: {base: {labels: {env: base}}}
    routes: [{destinations: [{subset: bsae}]}]
`

const defaults = "apiVersion: lightmesh/v1\ndefaults:\n  timeout: 2s\n  retry: {attempts: 2}\n"

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, out io.Writer) error {
	dir, err := os.MkdirTemp("", "lightmesh-perservice-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	write := func(name, doc string) error {
		tmp := filepath.Join(dir, "."+name)
		if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, filepath.Join(dir, name+".yaml"))
	}
	for name, doc := range map[string]string{rules.DefaultsName: defaults, "user-api": lanes("user-api"), "order-api": lanes("order-api")} {
		if err := write(name, doc); err != nil {
			return err
		}
	}

	// Two instances per service, labelled env=base and env=staging.
	lists := map[string][]discovery.Instance{}
	for _, svc := range []string{"user-api", "order-api"} {
		for _, env := range []string{"base", "staging"} {
			name := svc + "/" + env
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) }))
			defer srv.Close()
			lists[svc] = append(lists[svc], discovery.Instance{Address: strings.TrimPrefix(srv.URL, "http://"), Labels: map[string]string{"env": env}})
		}
	}

	m, err := mesh.New(ctx,
		mesh.WithRuleCatalog(rules.NewDir(dir, 50*time.Millisecond)),
		mesh.WithDiscovery(discovery.NewStatic(lists)),
		mesh.WithServices("user-api", "order-api"))
	if err != nil {
		return err
	}
	defer m.Close()
	client := &http.Client{Transport: m.Transport(nil)}
	call := func(service, env string) (string, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+service+"/", nil)
		if env != "" {
			req.Header.Set("X-Env", env)
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return string(body), err
	}
	show := func(when string) (user, order string, err error) {
		if user, err = call("user-api", ""); err != nil {
			return "", "", err
		}
		if order, err = call("order-api", ""); err != nil {
			return "", "", err
		}
		fmt.Fprintf(out, "%-44s user-api -> %-18s order-api -> %s\n", when+":", user, order)
		return user, order, nil
	}
	if _, _, err := show("start, both on their lane rules"); err != nil {
		return err
	}

	var firstOrder string
	for _, d := range m.Status().Documents {
		if d.Name == "order-api" {
			firstOrder = d.Version
		}
	}
	fmt.Fprintln(out, "publishing a broken user-api document and a new order-api document at once")
	if err := write("user-api", broken); err != nil {
		return err
	}
	if err := write("order-api", allStaging("order-api")); err != nil {
		return err
	}
	// Wait until the mesh has handled both: user-api's rejected, and
	// order-api's applied (a version other than the one at start).
	handled := func() bool {
		var rejected, applied bool
		for _, d := range m.Status().Documents {
			switch d.Name {
			case "user-api":
				rejected = d.LastRejection != nil
			case "order-api":
				applied = d.Version != firstOrder
			}
		}
		return rejected && applied
	}
	for !handled() {
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("the two documents were not both handled: %w", ctx.Err())
		}
	}
	user, order, err := show("after")
	if err != nil {
		return err
	}
	if user != "user-api/base" || order != "order-api/staging" {
		return fmt.Errorf("user-api went to %s (want its last good rules: base), order-api to %s (want its update: staging)", user, order)
	}
	fmt.Fprintln(out, "\nm.Status().Documents:")
	for _, d := range m.Status().Documents {
		takes := "takes nothing from _defaults"
		switch {
		case d.Name == rules.DefaultsName:
			takes = "the defaults of every service"
		case len(d.Defaulted) > 0:
			takes = "takes " + strings.Join(d.Defaulted, ", ") + " from _defaults"
		}
		fmt.Fprintf(out, "  %-10s %-8s version %-20s %s\n", d.Name, d.State, d.Version, takes)
		if r := d.LastRejection; r != nil {
			when := "current: its last good version keeps serving"
			if r.At.Before(d.AppliedAt) {
				when = "history: a later version applied"
			}
			fmt.Fprintf(out, "             rejected %s (%s):\n             %s\n", r.Version, when, strings.ReplaceAll(r.Error, "\n", "\n             "))
		}
	}
	return nil
}
