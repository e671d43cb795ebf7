package nacos

import (
	"errors"
	"net/http"
	"testing"

	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
)

// TestSoak runs meshtest.RunSoak against the real Nacos server in
// LIGHTMESH_NACOS_ADDR for LIGHTMESH_SOAK (skipped without it):
//
//	LIGHTMESH_SOAK=10m LIGHTMESH_NACOS_ADDR=127.0.0.1:8848 go test -run TestSoak -timeout 20m -v ./discovery/nacos/
func TestSoak(t *testing.T) {
	d := meshtest.SoakDuration(t)
	cfg := testConfig(t)
	service, dataID := unique("soak-api"), unique("soak-rules")
	pub := newPublisher(t, cfg, "")
	pub.publish(t, dataID, meshtest.LaneRules(service))
	rules, err := NewRuleSource(cfg, dataID, "")
	if err != nil {
		t.Fatal(err)
	}
	disc, err := NewDiscovery(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	m := newMesh(t, mesh.WithRules(rules), mesh.WithDiscovery(disc), mesh.WithServices(service))
	client := &http.Client{Transport: m.Transport(nil)}
	meshtest.RunSoak(t, d, client, service, meshtest.SoakPlane{
		Publish: func(doc string) error {
			ok, err := pub.client.PublishConfig(vo.ConfigParam{DataId: dataID, Group: pub.group, Content: doc, Type: "yaml"})
			if err == nil && !ok {
				err = errors.New("server refused")
			}
			return err
		},
		Join: func(b *meshtest.Backend, env string) (func() error, error) {
			reg, err := Register(cfg, service, "", b.Instance(env))
			if err != nil {
				return nil, err
			}
			return reg.Close, nil
		},
		Applied: func(doc string) bool { return m.Status().Rules.Version == md5hex(doc) },
	})
}
