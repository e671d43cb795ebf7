package nacos

import (
	"context"
	"errors"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/model"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// TestDiscoveryFollowsRegistrations registers and deregisters real
// backends in Nacos naming and checks the mesh's routing follows, down to
// the fallback when the last staging instance leaves.
func TestDiscoveryFollowsRegistrations(t *testing.T) {
	cfg := testConfig(t)
	service, group := unique("lm-disc"), "LIGHTMESH_TEST"
	register(t, cfg, service, group, meshtest.NewBackend(t, "base-1"), "base")
	disc, err := NewDiscovery(cfg, group)
	if err != nil {
		t.Fatal(err)
	}
	defer disc.Close()
	m := newMesh(t, mesh.WithRules(rules.NewMemory([]byte(meshtest.LaneRules(service)))), mesh.WithDiscovery(disc))
	defer m.Close()
	waitInstances(t, m, service, 1)
	client := &http.Client{Transport: m.Transport(nil)}
	meshtest.ExpectOnly(t, client, service, "staging", 5, "base-1") // no staging instance: the fallback

	s1 := register(t, cfg, service, group, meshtest.NewBackend(t, "staging-1"), "staging")
	s2 := register(t, cfg, service, group, meshtest.NewBackend(t, "staging-2"), "staging")
	waitInstances(t, m, service, 3)
	got := meshtest.Routes(t, client, service, "staging", 20)
	if got["staging-1"] == 0 || got["staging-2"] == 0 || got["base-1"] != 0 {
		t.Fatalf("staging calls went to %v, want both staging instances", got)
	}
	meshtest.ExpectOnly(t, client, service, "", 10, "base-1")

	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	waitInstances(t, m, service, 2)
	meshtest.ExpectOnly(t, client, service, "staging", 10, "staging-2")
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	waitInstances(t, m, service, 1)
	meshtest.ExpectOnly(t, client, service, "staging", 5, "base-1")
}

// TestDiscoveryDirect checks the Watch contract without a mesh: weights,
// labels and health arrive converted, two watchers of one service share the
// subscription and both see the last instance leave (an empty list), and
// cancellation returns ctx.Err().
func TestDiscoveryDirect(t *testing.T) {
	cfg := testConfig(t)
	service, group := unique("lm-direct"), "LIGHTMESH_TEST"
	disc, err := NewDiscovery(cfg, group)
	if err != nil {
		t.Fatal(err)
	}
	defer disc.Close()
	waitConnected(t, disc) // these Watches run once: their return is checked
	a, stopA := meshtest.WatchList(t, disc, service)
	b, stopB := meshtest.WatchList(t, disc, service)
	nextList(t, a, "empty", func(l []discovery.Instance) bool { return len(l) == 0 })
	nextList(t, b, "empty", func(l []discovery.Instance) bool { return len(l) == 0 })

	var r, sick *Registration
	eventually(t, "register", func() (err error) {
		r, err = Register(cfg, service, group, discovery.Instance{Address: "127.0.0.1:18080", Weight: 3, Labels: map[string]string{"env": "staging", "zone": "a"}})
		return err
	})
	eventually(t, "register the unhealthy instance", func() (err error) {
		sick, err = Register(cfg, service, group, discovery.Instance{Address: "127.0.0.1:18081", Unhealthy: true})
		return err
	})
	want := []discovery.Instance{
		{Address: "127.0.0.1:18080", Weight: 300, Labels: map[string]string{"env": "staging", "zone": "a"}},
		{Address: "127.0.0.1:18081", Weight: 100, Unhealthy: true},
	}
	for _, ch := range []<-chan []discovery.Instance{a, b} {
		l := nextList(t, ch, "the registered instances", func(l []discovery.Instance) bool { return len(l) == 2 })
		if !slices.EqualFunc(l, want, sameInstance) {
			t.Fatalf("instances = %+v, want %+v", l, want)
		}
	}
	if err := sick.Close(); err != nil {
		t.Fatal(err)
	}
	if err := stopB(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch returned %v, want context.Canceled", err)
	}
	// a still follows the service after b left.
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	// The last instance leaving must be seen (UpdateCacheWhenEmpty).
	nextList(t, a, "empty again", func(l []discovery.Instance) bool { return len(l) == 0 })
	stopA()

	if err := disc.Watch(context.Background(), "", func([]discovery.Instance) {}); err == nil {
		t.Fatal("Watch of an empty service name succeeded")
	}
	disc.Close()
	if err := disc.Watch(context.Background(), service, func([]discovery.Instance) {}); !errors.Is(err, errClosed) {
		t.Fatalf("Watch after Close: %v", err)
	}
}

// nextList waits for a list satisfying ok.
func nextList(t *testing.T, lists <-chan []discovery.Instance, what string, ok func([]discovery.Instance) bool) []discovery.Instance {
	t.Helper()
	return meshtest.Next(t, lists, 15*time.Second, "instance list with "+what, ok)
}

// TestToInstance covers the conversion from the SDK's instances,
// hostile values included.
func TestToInstance(t *testing.T) {
	long := strings.Repeat("v", discovery.MaxLabelValueLen+1)
	many := map[string]string{}
	for i := range discovery.MaxLabels + 6 {
		many[string(rune('A'+i/26))+string(rune('a'+i%26))] = "x"
	}
	cases := []struct {
		name    string
		in      model.Instance
		want    discovery.Instance
		dropped int
		err     string
	}{
		{"default weight", model.Instance{Ip: "10.0.0.1", Port: 80, Weight: 1, Healthy: true, Enable: true},
			discovery.Instance{Address: "10.0.0.1:80", Weight: 100}, 0, ""},
		{"fraction", model.Instance{Ip: "10.0.0.1", Port: 80, Weight: 0.255, Healthy: true, Enable: true},
			discovery.Instance{Address: "10.0.0.1:80", Weight: 26}, 0, ""},
		{"tiny weight still gets traffic", model.Instance{Ip: "10.0.0.1", Port: 80, Weight: 0.001, Healthy: true, Enable: true},
			discovery.Instance{Address: "10.0.0.1:80", Weight: 1}, 0, ""},
		{"huge weight capped", model.Instance{Ip: "10.0.0.1", Port: 80, Weight: 1e300, Healthy: true, Enable: true},
			discovery.Instance{Address: "10.0.0.1:80", Weight: maxWeight}, 0, ""},
		{"weight zero", model.Instance{Ip: "10.0.0.1", Port: 80, Weight: 0, Healthy: true, Enable: true},
			discovery.Instance{Address: "10.0.0.1:80", Unhealthy: true}, 0, ""},
		{"unhealthy", model.Instance{Ip: "10.0.0.1", Port: 80, Weight: 1, Enable: true},
			discovery.Instance{Address: "10.0.0.1:80", Weight: 100, Unhealthy: true}, 0, ""},
		{"disabled", model.Instance{Ip: "10.0.0.1", Port: 80, Weight: 1, Healthy: true},
			discovery.Instance{Address: "10.0.0.1:80", Weight: 100, Unhealthy: true}, 0, ""},
		{"ipv6", model.Instance{Ip: "::1", Port: 80, Weight: 1, Healthy: true, Enable: true},
			discovery.Instance{Address: "[::1]:80", Weight: 100}, 0, ""},
		{"metadata", model.Instance{Ip: "10.0.0.1", Port: 80, Weight: 1, Healthy: true, Enable: true, Metadata: map[string]string{"env": "staging", "": "x", "big": long}},
			discovery.Instance{Address: "10.0.0.1:80", Weight: 100, Labels: map[string]string{"env": "staging"}}, 2, ""},
		{"too much metadata", model.Instance{Ip: "10.0.0.1", Port: 80, Weight: 1, Healthy: true, Enable: true, Metadata: many},
			discovery.Instance{}, 6, ""},
		{"negative weight", model.Instance{Ip: "10.0.0.1", Port: 80, Weight: -1}, discovery.Instance{}, 0, "invalid weight"},
		{"NaN weight", model.Instance{Ip: "10.0.0.1", Port: 80, Weight: math.NaN()}, discovery.Instance{}, 0, "invalid weight"},
		{"no port", model.Instance{Ip: "10.0.0.1", Weight: 1}, discovery.Instance{}, 0, "invalid port"},
		{"port too big", model.Instance{Ip: "10.0.0.1", Port: 70000, Weight: 1}, discovery.Instance{}, 0, "invalid port"},
		{"no ip", model.Instance{Port: 80, Weight: 1}, discovery.Instance{}, 0, "want host:port"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, dropped, err := toInstance(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if dropped != tc.dropped {
				t.Errorf("dropped %d metadata entries, want %d", dropped, tc.dropped)
			}
			if tc.name == "too much metadata" {
				if len(got.Labels) != discovery.MaxLabels {
					t.Fatalf("%d labels kept, want %d", len(got.Labels), discovery.MaxLabels)
				}
				return
			}
			if !sameInstance(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestRegisterValidation refuses instances Nacos or discovery would not
// take, before connecting.
func TestRegisterValidation(t *testing.T) {
	cfg := Config{Addresses: []string{"127.0.0.1:1"}}
	for _, tc := range []struct {
		service string
		in      discovery.Instance
	}{
		{"", discovery.Instance{Address: "127.0.0.1:80"}},
		{"s", discovery.Instance{Address: "nope"}},
		{"s", discovery.Instance{Address: "127.0.0.1:80", Weight: maxNacosWeight + 1}},
	} {
		if r, err := Register(cfg, tc.service, "", tc.in); err == nil {
			r.Close()
			t.Errorf("Register(%q, %+v) succeeded", tc.service, tc.in)
		}
	}
}
