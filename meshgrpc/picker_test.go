package meshgrpc

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/engine"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/trace"
)

// readyPicker stands in for a READY pick_first child: it picks its one
// SubConn (nil here: the picker under test only passes it on).
type readyPicker struct{ picks int }

func (p *readyPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	p.picks++
	return balancer.PickResult{}, nil
}

// pickerFor returns a picker over n READY instances of svc, half labelled
// env=staging, routed by a 100-route document like the router's benchmark.
func pickerFor(tb testing.TB, n int) (*picker, *engine.Engine) {
	tb.Helper()
	doc := "apiVersion: lightmesh/v1\nservices:\n  svc:\n    breaker: {}\n    outlierDetection: {}\n    subsets: {base: {labels: {env: base}}, staging: {labels: {env: staging}}}\n    routes:\n"
	for i := range 99 {
		doc += fmt.Sprintf("      - match: {headers: {x-env: {exact: lane-%d}}}\n        destinations: [{subset: base}]\n", i)
	}
	doc += "      - match: {headers: {x-env: {exact: staging}}}\n        destinations: [{subset: staging}]\n"
	rules, err := router.Load([]byte(doc))
	if err != nil {
		tb.Fatal(err)
	}
	var list []discovery.Instance
	var children []endpointsharding.ChildState
	for i := range n {
		env := "base"
		if i%2 == 1 {
			env = "staging"
		}
		addr := fmt.Sprintf("10.0.%d.%d:80", i/250, i%250)
		list = append(list, discovery.Instance{Address: addr, Labels: map[string]string{"env": env}})
		children = append(children, endpointsharding.ChildState{
			Endpoint: resolver.Endpoint{Addresses: []resolver.Address{{Addr: addr}}},
			State:    balancer.State{ConnectivityState: connectivity.Ready, Picker: &readyPicker{}},
		})
	}
	st := engine.NewState(router.NewTable(nil, map[string][]discovery.Instance{"svc": list})).WithRules(rules, nil)
	eng := engine.New(st, trace.New(), nil, "", nil)
	return newPicker(eng, "svc", children, nil), eng
}

// BenchmarkPick measures the picker's Pick for a call the interceptor has
// routed: the pick among ready instances, the instance breaker's
// admission and its outcome. It allocates nothing.
func BenchmarkPick(b *testing.B) {
	p, eng := pickerFor(b, 1000)
	md := metadata.MD{"x-env": {"staging"}}
	cc := newClientCall(eng, nil, "svc", "/pkg.Svc/Call")
	cc.md = md
	info := balancer.PickInfo{FullMethodName: "/pkg.Svc/Call", Ctx: context.WithValue(context.Background(), callKey{}, cc.scratch)}
	if err := cc.begin(info.Ctx, false); err != nil {
		b.Fatal(err)
	}
	cc.t, _ = cc.c.NewTry(info.Ctx)
	b.ReportAllocs()
	for b.Loop() {
		res, err := p.Pick(info)
		if err != nil {
			b.Fatal(err)
		}
		res.Done(balancer.DoneInfo{BytesSent: true})
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	p, eng := pickerFor(t, 100)
	cc := newClientCall(eng, nil, "svc", "/pkg.Svc/Call")
	cc.md = metadata.MD{"x-env": {"staging"}}
	info := balancer.PickInfo{FullMethodName: "/pkg.Svc/Call", Ctx: context.WithValue(context.Background(), callKey{}, cc.scratch)}
	if err := cc.begin(info.Ctx, false); err != nil {
		t.Fatal(err)
	}
	cc.t, _ = cc.c.NewTry(info.Ctx)
	allocs := testing.AllocsPerRun(1000, func() {
		res, err := p.Pick(info)
		if err != nil {
			t.Fatal(err)
		}
		res.Done(balancer.DoneInfo{BytesSent: true})
	})
	if allocs != 0 {
		t.Fatalf("Pick allocates %v times", allocs)
	}
	if got := cc.c.Result(); got.Subset != "staging" || got.Instance == nil || got.Instance.Labels["env"] != "staging" {
		t.Fatalf("picked %+v, want a staging instance", got)
	}
}
