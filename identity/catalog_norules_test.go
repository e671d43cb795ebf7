package identity_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// slowCatalog answers for _defaults at once (a timeout) and for pay
// only once release is closed: a control plane slow for one document.
type slowCatalog struct {
	release <-chan struct{}
	pay     []byte
}

func (c slowCatalog) Watch(ctx context.Context, name string, update func(rules.Document)) error {
	if name == "pay" {
		select {
		case <-c.release:
			update(rules.Document{Data: c.pay, Version: "1"})
		case <-ctx.Done():
			return ctx.Err()
		}
	} else {
		update(rules.Document{Data: []byte("apiVersion: lightmesh/v1\ndefaults: {timeout: 2s}\n"), Version: "1"})
	}
	<-ctx.Done()
	return ctx.Err()
}

func (c slowCatalog) Describe(name string) string { return "slow:" + name }
func (c slowCatalog) String() string              { return "slow" }

// With a rule catalog, a mesh with an identity sends nothing to a service
// whose own document has not arrived (the defaults have): whether it
// needs mutual TLS is not known (it went in plaintext); once the document
// arrives, its serverID decides.
func TestTransportSendsNothingBeforeTheServiceDocument(t *testing.T) {
	ca := newCA(t)
	pay, _ := workload(t, ca, "/pay")
	front, _ := workload(t, ca, "/front")
	payAddr, hits := serve(t, pay, identity.Permissive, (*identity.Guard)(nil).Handler(echoCaller))
	release := make(chan struct{})
	events := make(chan mesh.RulesEvent, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := mesh.New(ctx, mesh.WithRuleCatalog(slowCatalog{release: release, pay: []byte("apiVersion: lightmesh/v1\nservices:\n  pay:\n    serverID: spiffe://example.org/pay\n")}),
		mesh.WithStartEmpty(), mesh.WithStartTimeout(100*time.Millisecond),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"pay": {{Address: payAddr}}})),
		mesh.WithServices("pay"), mesh.WithIdentity(front),
		mesh.WithOnRulesChange(func(e mesh.RulesEvent) { events <- e }))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c := &http.Client{Timeout: 5 * time.Second, Transport: m.Transport(nil)}
	if _, _, err := get(t, c, "http://pay/charge"); !errors.Is(err, mesh.ErrNoRules) {
		t.Fatalf("before pay's document: %v; want mesh.ErrNoRules", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d requests reached pay before its rules said how to call it; want 0", n)
	}
	close(release)
	for e := range events {
		if e.Document == "pay" {
			if e.Err != nil {
				t.Fatal(e.Err)
			}
			break
		}
	}
	if code, body, err := get(t, c, "http://pay/charge"); err != nil || code != 200 || body != "spiffe://example.org/front" {
		t.Fatalf("after pay's document: %d %q %v; want 200 over mutual TLS to spiffe://example.org/front", code, body, err)
	}
}
