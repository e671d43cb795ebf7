//go:build fault

package nacos

import (
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/lightmesh/lightmesh/discovery"
)

// TestFaultRegistrationsSurviveRestart: registrations made with Register
// (a naming client of its own) and with Discovery.Register (the
// discovery's client) are not closed while Nacos is killed and
// restarted: the SDK registers them again once it reconnects, as the
// Registration doc says, and a watcher sees both again within 20 s of
// the server being ready.
func TestFaultRegistrationsSurviveRestart(t *testing.T) {
	srv := startFaultServer(t)
	cfg := Config{Addresses: []string{srv.addr}, TimeoutMs: 3000}
	group := "LIGHTMESH_TEST"
	service := unique("fault-redo")
	disc, err := NewDiscovery(cfg, group)
	if err != nil {
		t.Fatal(err)
	}
	defer disc.Close()
	own, err := Register(cfg, service, group, discovery.Instance{Address: "10.42.0.7:18084"})
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	shared, err := disc.Register(service, discovery.Instance{Address: "10.42.0.8:18084"})
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	watcher, err := NewDiscovery(cfg, group)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	want := []string{"10.42.0.7:18084", "10.42.0.8:18084"}
	list := func() []string {
		ins, err := watcher.client.SelectAllInstances(vo.SelectAllInstancesParam{ServiceName: service, GroupName: group})
		if err != nil {
			return nil
		}
		var a []string
		for _, in := range ins {
			a = append(a, net.JoinHostPort(in.Ip, strconv.FormatUint(in.Port, 10)))
		}
		slices.Sort(a)
		return a
	}
	waitList(t, list, want, 10*time.Second)

	srv.run(t, "kill")
	time.Sleep(3 * time.Second)
	srv.run(t, "start")
	start := time.Now()
	waitList(t, list, want, 20*time.Second)
	t.Logf("both registrations back %v after the server was ready", time.Since(start).Round(time.Millisecond))
}

func waitList(t *testing.T, list func() []string, want []string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := list()
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server lists %v, want %v", got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
