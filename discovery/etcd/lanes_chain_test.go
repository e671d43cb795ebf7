package etcd_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/discovery/etcd"
	"github.com/lightmesh/lightmesh/discovery/etcd/etcdtest"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
	"github.com/lightmesh/lightmesh/rules"
)

// laneChain is A (HTTP) → B (gRPC) → C (HTTP), every instance registered
// in a real etcd, each answering with its name: a call's reply is the
// names of the three instances it went through, "a-base>b-feat-3>c-base".
type laneChain struct {
	t      *testing.T
	cli    *clientv3.Client
	m      *mesh.Mesh
	client *http.Client // the callers': through the mesh to http://a/
	b      map[string]*grpctest.Server
	regs   map[string]*etcd.Registration
}

const lanePrefix = "/lightmesh/lanes"

// laneRulesDoc gives every service lanes by env, with base the instances
// labelled env=base, and B an outlier breaker that one failure in three
// calls opens, with a retry so that the calls that open it do not fail.
const laneRulesDoc = `apiVersion: lightmesh/v1
defaults:
  lanes: {label: env, base: {labels: {env: base}}}
services:
  b:
    retry: {attempts: 2, backoff: 1ms}
    outlierDetection: {minRequests: 3, failureRatio: 0.5, window: 60s, openBase: 60s}
`

// hasLane says at which hops lane feat-i has an instance: a mix of every
// pattern, so that a call falls back at some hops and not at others.
func hasLane(hop string, i int) bool {
	switch hop {
	case "a":
		return i%2 == 0
	case "b":
		return i%3 != 0
	default:
		return i%4 != 1
	}
}

func startLaneChain(t *testing.T, lanes int) *laneChain {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	lc := &laneChain{t: t, cli: cli, b: map[string]*grpctest.Server{}, regs: map[string]*etcd.Registration{}}
	m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, mesh.WithRules(rules.NewMemory([]byte(laneRulesDoc))),
			mesh.WithDiscovery(etcd.NewDiscovery(cli, lanePrefix)), mesh.WithServices("a", "b", "c"))
	})
	lc.m = m
	lc.client = &http.Client{Transport: m.Transport(nil)}
	register := func(service, name, addr string) {
		env := strings.TrimPrefix(name, service+"-")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := etcd.Register(ctx, cli, lanePrefix, service, name, discovery.Instance{Address: addr, Labels: map[string]string{"env": env}}, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		lc.regs[name] = r
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // etcd may be down
			defer cancel()
			r.Close(ctx)
		})
	}
	toB, err := grpc.NewClient("lightmesh:///b", append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, meshgrpc.DialOptions(m)...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { toB.Close() })
	envs := []string{"base"}
	for i := 1; i <= lanes; i++ {
		envs = append(envs, fmt.Sprintf("feat-%d", i))
	}
	for i, env := range envs {
		if i == 0 || hasLane("c", i) {
			name := "c-" + env
			c := httptest.NewServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })))
			t.Cleanup(c.Close)
			register("c", name, strings.TrimPrefix(c.URL, "http://"))
		}
		if i == 0 || hasLane("b", i) {
			b := grpctest.Start(t, "b-"+env, meshgrpc.ServerOptions(m)...)
			fwd := func(ctx context.Context) (string, error) { return meshtest.Get(ctx, lc.client, "http://c/", nil) }
			b.Forward.Store(&fwd)
			lc.b[b.Name] = b
			register("b", b.Name, b.Addr)
		}
		if i == 0 || hasLane("a", i) {
			name := "a-" + env
			a := httptest.NewServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				next, err := grpctest.Call(r.Context(), toB)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadGateway)
					return
				}
				io.WriteString(w, name+">"+next)
			})))
			t.Cleanup(a.Close)
			register("a", name, strings.TrimPrefix(a.URL, "http://"))
		}
	}
	meshtest.WaitFor(t, 10*time.Second, "every instance discovered", func() bool {
		tb := m.Table()
		for _, hop := range []string{"a", "b", "c"} {
			n := 1
			for i := 1; i <= lanes; i++ {
				if hasLane(hop, i) {
					n++
				}
			}
			if len(tb.Instances(hop, "")) != n {
				return false
			}
		}
		return true
	})
	return lc
}

// want is the reply a call in lane env gets when the lane has instances
// at the hops hasLane says.
func want(env string, i int) string {
	var parts []string
	for _, hop := range []string{"a", "b", "c"} {
		if i > 0 && hasLane(hop, i) {
			parts = append(parts, hop+"-"+env)
		} else {
			parts = append(parts, hop+"-base")
		}
	}
	return strings.Join(parts, ">")
}

// The chain A → B → C (HTTP → gRPC → HTTP) with 20 lanes at once, 8
// callers per lane: every call lands on its lane's instance at each hop
// that has one and on base at the others, never on another lane's; no
// call fails.
func TestLanesChainTwentyLanes(t *testing.T) {
	const lanes, callers, calls = 20, 8, 4
	lc := startLaneChain(t, lanes)
	var failed, wrong atomic.Int64
	var firstWrong atomic.Value
	var wg sync.WaitGroup
	for i := 0; i <= lanes; i++ {
		env := fmt.Sprintf("feat-%d", i)
		if i == 0 {
			env = ""
		}
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range calls {
					got, err := meshtest.Call(lc.client, "a", env)
					switch {
					case err != nil:
						failed.Add(1)
						firstWrong.CompareAndSwap(nil, fmt.Sprintf("lane %q: %v", env, err))
					case got != want(env, i):
						wrong.Add(1)
						firstWrong.CompareAndSwap(nil, fmt.Sprintf("lane %q: %s, want %s", env, got, want(env, i)))
					}
				}
			}()
		}
	}
	wg.Wait()
	if failed.Load() != 0 || wrong.Load() != 0 {
		t.Fatalf("%d calls failed and %d went astray; first: %v", failed.Load(), wrong.Load(), firstWrong.Load())
	}
}

// A lane whose only instance at B has an open breaker falls back to base
// at B and still reaches its instance at C; no call fails (the calls
// that open the breaker are retried on base).
func TestLanesChainOpenBreakerAtB(t *testing.T) {
	lc := startLaneChain(t, 4)
	const i = 2 // a lane with instances at A, B and C
	env := fmt.Sprintf("feat-%d", i)
	if got, err := meshtest.Call(lc.client, "a", env); err != nil || got != want(env, i) {
		t.Fatalf("before: %q %v, want %s", got, err, want(env, i))
	}
	lc.b["b-"+env].Code.Store(uint32(codes.Unavailable))
	for n := range 30 {
		got, err := meshtest.Call(lc.client, "a", env)
		if err != nil {
			t.Fatalf("call %d while b-%s fails: %v", n, env, err)
		}
		if n >= 10 && got != "a-"+env+">b-base>c-"+env {
			t.Fatalf("call %d: %s, want a-%s>b-base>c-%s", n, got, env, env)
		}
	}
}

// A lane's instance at C registered while the lane's calls flow takes
// them at once, and when it is removed they go back to base; no call
// fails.
func TestLanesChainInstancesComeAndGo(t *testing.T) {
	lc := startLaneChain(t, 4)
	const env = "feat-1" // no instance at C: hasLane("c", 1) is false
	stop := make(chan struct{})
	var failed atomic.Int64
	var lastErr atomic.Value
	var sawLane, sawBaseAfter atomic.Bool
	var removed atomic.Bool
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := meshtest.Call(lc.client, "a", env)
				if err != nil {
					failed.Add(1)
					lastErr.Store(err.Error())
					continue
				}
				if strings.HasSuffix(got, ">c-"+env) {
					sawLane.Store(true)
				} else if removed.Load() && strings.HasSuffix(got, ">c-base") {
					sawBaseAfter.Store(true)
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	c := httptest.NewServer(lc.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "c-"+env) })))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reg, err := etcd.Register(ctx, lc.cli, lanePrefix, "c", "c-"+env, discovery.Instance{Address: strings.TrimPrefix(c.URL, "http://"), Labels: map[string]string{"env": env}}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	meshtest.WaitFor(t, 10*time.Second, "calls reaching c-"+env, sawLane.Load)
	if err := reg.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	meshtest.WaitFor(t, 10*time.Second, "c-"+env+" gone from discovery", func() bool {
		_, lanes := lc.m.Table().Lanes("c")
		for _, l := range lanes {
			if l.Lane == env {
				return false
			}
		}
		return true
	})
	removed.Store(true)
	meshtest.WaitFor(t, 10*time.Second, "calls back on c-base", sawBaseAfter.Load)
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d calls failed; last: %v", n, lastErr.Load())
	}
}

// A lane whose only instance at B cannot be connected to (nothing
// listens at its address) falls back to base at B over gRPC and keeps
// its lane for C; no call fails.
func TestLanesChainUnreachableLaneInstanceAtB(t *testing.T) {
	lc := startLaneChain(t, 4)
	const env = "feat-3" // no instance at B (hasLane("b", 3) is false); one at C
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reg, err := etcd.Register(ctx, lc.cli, lanePrefix, "b", "b-"+env, discovery.Instance{Address: meshtest.ClosedAddr(t), Labels: map[string]string{"env": env}}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(context.Background())
	meshtest.WaitFor(t, 10*time.Second, "b-"+env+" discovered", func() bool {
		_, lanes := lc.m.Table().Lanes("b")
		for _, l := range lanes {
			if l.Lane == env {
				return true
			}
		}
		return false
	})
	for n := range 20 {
		got, err := meshtest.Call(lc.client, "a", env)
		if err != nil || got != "a-base>b-base>c-"+env {
			t.Fatalf("call %d: %q %v, want a-base>b-base>c-%s", n, got, err, env)
		}
	}
}
