package nacos

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// TestServerListWithADeadServer gives the adapters two server addresses,
// one of which has nothing listening: whichever the SDK tries first (it
// picks at random), it ends on the live one and the mesh gets its rules
// and instances from it.
func TestServerListWithADeadServer(t *testing.T) {
	live := testConfig(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String() // a port surely free of Nacos: closed below
	ln.Close()
	cfg := live
	cfg.Addresses = append([]string{dead}, live.Addresses...)

	service, dataID := unique("lm-two-servers"), unique("lightmesh-two-servers")
	pub := newPublisher(t, live, "")
	defer pub.remove(t, dataID)
	register(t, live, service, "", meshtest.NewBackend(t, "base-1"), "base")
	register(t, live, service, "", meshtest.NewBackend(t, "staging-1"), "staging")
	v := pub.publish(t, dataID, meshtest.LaneRules(service))

	src, err := NewRuleSource(cfg, dataID, "")
	if err != nil {
		t.Fatal(err)
	}
	disc, err := NewDiscovery(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	m := newMesh(t, mesh.WithRules(src), mesh.WithDiscovery(disc))
	meshtest.WaitFor(t, 20*time.Second, "the rules from the live server", func() bool { return m.Status().Rules.Version == v })
	waitInstances(t, m, service, 2)
	client := &http.Client{Transport: m.Transport(nil)}
	meshtest.ExpectOnly(t, client, service, "staging", 5, "staging-1")
	meshtest.ExpectOnly(t, client, service, "", 5, "base-1")
}

// TestPublicNamespaceEitherWay: the public namespace written "" (Nacos
// 2.x) or "public" (its id since Nacos 3.0) is the same namespace: a
// catalog and a discovery configured with "public" see what was
// published and registered with "", pushes included.
func TestPublicNamespaceEitherWay(t *testing.T) {
	blank := testConfig(t)
	named := blank
	named.NamespaceID = "public"
	group, service := unique("lm-public"), unique("lm-public-svc")
	pub := newPublisher(t, blank, group)
	t.Cleanup(func() { pub.remove(t, service) })
	pub.publish(t, service, "v: 1")
	c := newTestCatalog(t, named, group)
	w := watchCatalog(t, c, service)
	w.next(t, "v: 1", 5*time.Second)
	pub.publish(t, service, "v: 2")
	w.next(t, "v: 2", 8*time.Second) // the first push waits for the SDK's 5 s listen timer
	start := time.Now()
	pub.publish(t, service, "v: 3")
	w.next(t, "v: 3", 5*time.Second) // a push: the re-read comes 30 s after the last read
	t.Logf("an edit in namespace \"\" reached a catalog of namespace \"public\" %v after its publish", time.Since(start).Round(time.Millisecond))

	disc, err := NewDiscovery(named, group)
	if err != nil {
		t.Fatal(err)
	}
	defer disc.Close()
	addrs := watchAddresses(t, disc, service)
	var reg *Registration
	eventually(t, "register", func() (err error) {
		reg, err = Register(blank, service, group, discovery.Instance{Address: "10.42.0.8:8080"})
		return err
	})
	defer reg.Close()
	waitAddresses(t, addrs, "10.42.0.8:8080")
}

// TestWrongCredentials: against a server with authentication on (the one
// .ci/run starts; skipped when the tests have no credentials), a rule
// source, a publish and a registration with a wrong password fail with
// an error that says to check the credentials, and never show them.
func TestWrongCredentials(t *testing.T) {
	cfg := testConfig(t)
	if cfg.Password == "" {
		t.Skip("the server has no authentication: LIGHTMESH_NACOS_PASSWORD is not set")
	}
	const wrong = "not-the-Pw-9x"
	bad := cfg
	bad.Password = wrong
	src, err := NewRuleSource(bad, unique("lm-wrong-pw"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	errs := []error{whileConnecting(func() error {
		return src.Watch(ctx, func(rules.Document) { t.Error("delivered without a login") })
	})}
	errs = append(errs, whileConnecting(func() error { return Publish(bad, unique("lm-wrong-pw"), "", "x: 1") }))
	var reg *Registration
	if err := whileConnecting(func() (err error) {
		reg, err = Register(bad, unique("lm-wrong-pw"), "", discovery.Instance{Address: "10.42.0.9:80"})
		return err
	}); err == nil {
		reg.Close()
		t.Error("registered without a login")
	} else {
		errs = append(errs, err)
	}
	for i, err := range errs {
		// The SDK drops the server's reason for a refused registration:
		// its error can only mention the credentials.
		if (i < 2 && !errors.Is(err, errLogin)) || !strings.Contains(err.Error(), "Username") || strings.Contains(err.Error(), wrong) {
			t.Errorf("got %v, want an error saying to check the credentials, without them", err)
		}
	}
	t.Logf("with a wrong password: %v", errs[0])
}
