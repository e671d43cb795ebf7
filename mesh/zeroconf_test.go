package mesh_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// A service no rule names is protected with no configuration: its
// calls are balanced by p2c-ewma (an instance slowed by 50ms loses most
// of its calls; 50ms so that a loaded runner's own stalls, a few ms, do
// not hide it) and an adaptive breaker spares a backend that fails
// every call; the defaults document turns both off.
func TestUnnamedServiceGetsBuiltinProtection(t *testing.T) {
	const doc = "apiVersion: lightmesh/v1\nservices:\n  other: {timeout: 1s}\n"
	a, b, slow, down := newFlaky(t, "a"), newFlaky(t, "b"), newFlaky(t, "slow"), newFlaky(t, "down")
	m := newMesh(t, rules.NewMemory([]byte(doc)),
		discovery.NewStatic(map[string][]discovery.Instance{"svc": {a.instance(), b.instance(), slow.instance()}, "down": {down.instance()}}), mesh.WithServices("svc", "down"))
	client := &http.Client{Transport: m.Transport(nil)}
	for range 300 { // warm up: connections made, first calls forgotten
		send(client, "GET", "http://svc/")
	}
	slow.delay.Store(int64(50 * time.Millisecond))
	before := slow.hits.Load()
	for range 300 {
		if code, _, err := send(client, "GET", "http://svc/"); err != nil || code != 200 {
			t.Fatalf("%d %v", code, err)
		}
	}
	if share := float64(slow.hits.Load()-before) / 300; share > 0.2 {
		t.Errorf("slowed instance took %.2f of the calls, want < 0.2 (round-robin: 0.33)", share)
	}
	slow.delay.Store(0)

	down.status.Store(http.StatusInternalServerError)
	refused := 0
	for range 400 {
		if _, _, err := send(client, "GET", "http://down/"); errors.Is(err, mesh.ErrCircuitOpen) {
			refused++
		}
	}
	if refused < 200 {
		t.Errorf("failing service: %d of 400 calls refused by the built-in adaptive breaker, want most", refused)
	}
	if in := m.Table().Rules().InForce("svc"); in.Breaker == nil || in.Breaker.Mode != "adaptive" || in.LoadBalancer != "p2c-ewma" || len(in.Builtin) != 3 {
		t.Errorf("InForce(svc): breaker %+v, loadBalancer %s, builtin %v", in.Breaker, in.LoadBalancer, in.Builtin)
	}

	off := newMesh(t, rules.NewMemory([]byte("apiVersion: lightmesh/v1\ndefaults:\n  breaker: {mode: off}\n  loadBalancer: round-robin\n")),
		discovery.NewStatic(map[string][]discovery.Instance{"down": {down.instance()}}), mesh.WithServices("down"))
	offClient := &http.Client{Transport: off.Transport(nil)}
	for range 400 {
		if code, _, err := send(offClient, "GET", "http://down/"); err != nil || code != 500 {
			t.Fatalf("with the built-in breaker off: %d %v, want every call to reach the failing backend", code, err)
		}
	}
}

// explain's text says which settings of a service no rule names come
// from the built-in defaults, as it says "(from defaults)" of the
// defaults document's: an operator reading "breaker: adaptive" for a
// service nobody configured otherwise cannot tell where it came from.
func TestExplainTextNamesBuiltinDefaults(t *testing.T) {
	a := newFlaky(t, "a")
	m := newMesh(t, rules.NewMemory([]byte("apiVersion: lightmesh/v1\nservices:\n  other: {timeout: 1s}\n")),
		discovery.NewStatic(map[string][]discovery.Instance{"svc": {a.instance()}}), mesh.WithServices("svc"))
	var text strings.Builder
	m.Explain(mesh.ExplainRequest{Service: "svc", Path: "/"}).WriteText(&text)
	for _, want := range []string{"  breaker: adaptive, k 1.5, window 10s (built-in default)\n", "  load balancer: p2c-ewma (built-in default)\n"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("explain lacks %q:\n%s", want, text.String())
		}
	}
}
