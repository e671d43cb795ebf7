// Command identity shows service identity without a sidecar: three
// workloads with SPIFFE IDs from their own throwaway CA (nothing to
// install), an api served over mutual TLS whose rule document says front
// may read orders and nobody else may, an allowed call, a denied call,
// and a rotation of every certificate while calls keep flowing.
//
//	go run ./examples/identity
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/identity/identitytest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// The api's rules: its callers must be front (reads only); callers of
// api must find a server presenting spiffe://example.org/api.
const document = `apiVersion: lightmesh/v1
services:
  api:
    serverID: spiffe://example.org/api
    authorization:
      default: deny
      rules:
        - action: allow
          callers: [spiffe://example.org/front]
          paths: [/orders*]
          methods: [GET]
`

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir, err := os.MkdirTemp("", "lightmesh-identity")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	ca, err := identitytest.NewCA("example.org")
	if err != nil {
		return err
	}
	sources := map[string]*identity.FileSource{}
	for _, name := range []string{"api", "front", "batch"} {
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
		p, err := ca.WriteFiles(d, "/"+name)
		if err != nil {
			return err
		}
		src, err := identity.NewFileSource(ctx, identity.Files{Cert: p.Cert, Key: p.Key, Bundle: p.Bundle, Interval: 100 * time.Millisecond, Logger: logger})
		if err != nil {
			return err
		}
		defer src.Close()
		sources[name] = src
	}

	// api: a mesh holding the rule document, its authorization enforced
	// by a Guard in front of the handler, served over strict mTLS.
	apiMesh, err := mesh.New(ctx, mesh.WithRules(rules.NewMemory([]byte(document))), mesh.WithLocalService("api"), mesh.WithLogger(logger))
	if err != nil {
		return err
	}
	defer apiMesh.Close()
	guard, err := identity.NewGuard(apiMesh, identity.GuardOptions{Service: "api"})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: guard.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := identity.CallerID(r.Context())
		fmt.Fprintf(w, "order 7 for %s (certificate %x)\n", id, r.TLS.PeerCertificates[0].SerialNumber.Bytes()[:4])
	})), ConnContext: identity.ConnContext}
	go srv.Serve(identity.Listen(ln, identity.ServerTLSConfig(sources["api"]), identity.Strict))
	defer srv.Close()

	// Callers: each a mesh with its own identity and the same rules.
	client := func(name string) (*http.Client, error) {
		m, err := mesh.New(ctx, mesh.WithRules(rules.NewMemory([]byte(document))), mesh.WithLogger(logger),
			mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"api": {{Address: ln.Addr().String()}}})),
			mesh.WithServices("api"), mesh.WithIdentity(sources[name]))
		if err != nil {
			return nil, err
		}
		go func() { <-ctx.Done(); m.Close() }()
		// New connections each call, to show each handshake's certificate.
		return &http.Client{Timeout: 5 * time.Second, Transport: m.Transport(&http.Transport{DisableKeepAlives: true})}, nil
	}
	front, err := client("front")
	if err != nil {
		return err
	}
	batch, err := client("batch")
	if err != nil {
		return err
	}
	show := func(who string, c *http.Client) {
		resp, err := c.Get("http://api/orders/7")
		if err != nil {
			fmt.Printf("%-6s -> %v\n", who, err)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		fmt.Printf("%-6s -> %d %s", who, resp.StatusCode, b)
	}
	fmt.Println("== an allowed call and a denied call")
	show("front", front)
	show("batch", batch)

	fmt.Println("== rotation: new certificates for every workload, calls keep flowing")
	serial := func(name string) string {
		svid, _ := sources[name].GetX509SVID()
		return fmt.Sprintf("%x", svid.Certificates[0].SerialNumber.Bytes()[:4])
	}
	for round := 1; round <= 2; round++ {
		before := serial("front")
		for _, name := range []string{"api", "front", "batch"} {
			if _, err := ca.WriteFiles(filepath.Join(dir, name), "/"+name); err != nil {
				return err
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for serial("front") == before && time.Now().Before(deadline) {
			show("front", front) // served by the old certificate meanwhile
			time.Sleep(100 * time.Millisecond)
		}
		fmt.Printf("rotation %d: front's certificate %s -> %s\n", round, before, serial("front"))
		show("front", front)
	}
	return nil
}
