package nacos

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
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
