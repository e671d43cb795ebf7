package etcd

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery/etcd/etcdtest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
)

// load sends calls through client until stop, counting them and keeping
// the first errors.
type load struct {
	calls, failed, duringOutage atomic.Int64
	outage                      atomic.Bool
	mu                          sync.Mutex
	errs                        []error
	stopCh                      chan struct{}
	stopOnce                    sync.Once
	done                        chan struct{}
}

func startLoad(client *http.Client) *load {
	l := &load{stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for i := 0; ; i++ {
			select {
			case <-l.stopCh:
				return
			default:
			}
			env := ""
			if i%2 == 1 {
				env = "staging"
			}
			_, err := meshtest.Call(client, "user-api", env)
			l.calls.Add(1)
			if l.outage.Load() {
				l.duringOutage.Add(1)
			}
			if err != nil {
				l.failed.Add(1)
				l.mu.Lock()
				if len(l.errs) < 5 {
					l.errs = append(l.errs, err)
				}
				l.mu.Unlock()
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return l
}

// stop ends the calls and waits for the last one; it may be called again.
func (l *load) stop() {
	l.stopOnce.Do(func() { close(l.stopCh) })
	<-l.done
}

// TestControlPlaneRestart stops etcd while calls flow and starts it again
// on the same data: no call fails because of it (the mesh keeps routing
// with the last rules and instances), the rule watch resumes and applies
// a document published after the restart, and the discovery watch sees
// an instance registered after it.
func TestControlPlaneRestart(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	registerFleet(t, cli)
	const key = "/lightmesh-test/rules/restart"
	rev := put(t, cli, key, laneRules)
	evs := make(events, 64)
	m := newMesh(t, mesh.WithRules(NewRuleSource(cli, key)), mesh.WithDiscovery(NewDiscovery(cli, testPrefix)), evs.hook())
	evs.wait(t, strconv.FormatInt(rev, 10))
	waitInstances(t, m, 2)
	client := &http.Client{Transport: m.Transport(nil)}

	l := startLoad(client)
	defer l.stop()
	time.Sleep(200 * time.Millisecond)
	l.outage.Store(true)
	srv.Stop()
	time.Sleep(time.Second)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	l.outage.Store(false)

	// Publish as soon as the client has reconnected.
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := cli.Put(ctx, key, movedRules)
		cancel()
		if err == nil {
			rev = resp.Header.Revision
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("put after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ev := evs.wait(t, strconv.FormatInt(rev, 10)); ev.Err != nil {
		t.Fatalf("rules published after the restart rejected: %v", ev.Err)
	}
	base2 := meshtest.NewBackend(t, "base-2")
	reg, err := Register(context.Background(), cli, testPrefix, "user-api", "base-2", base2.Instance("base"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(context.Background())
	waitInstances(t, m, 3)
	time.Sleep(100 * time.Millisecond)
	l.stop()

	t.Logf("%d calls, %d while etcd was down, %d failed", l.calls.Load(), l.duringOutage.Load(), l.failed.Load())
	if l.failed.Load() != 0 {
		t.Fatalf("%d calls failed: %v", l.failed.Load(), l.errs)
	}
	if l.duringOutage.Load() < 50 {
		t.Fatalf("only %d calls while etcd was down", l.duringOutage.Load())
	}
	meshtest.ExpectOnly(t, client, "user-api", "", 10, "staging-1")
}
