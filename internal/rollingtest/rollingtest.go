// Package rollingtest restarts the instances of an HTTP and a gRPC
// service one after another, each stopped with lifecycle.Shutdown, while
// a mesh calls both at 200 requests a second each; the control plane's
// tests run it against their real servers. No request may fail.
package rollingtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/lifecycle"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
	"github.com/lightmesh/lightmesh/rules"
)

// Plane is the control plane under test.
type Plane struct {
	// Name names the plane in the figures.
	Name string
	// Discovery is the callers' discovery source.
	Discovery discovery.Source
	// Register registers the instances of one process (in, for each
	// service) and returns what deregisters them all.
	Register func(ins map[string]discovery.Instance) (func(context.Context) error, error)
	// Settle is lifecycle.Shutdown's wait.
	Settle time.Duration
}

// rate is each protocol's request rate, and work how long a request
// takes in the server.
const (
	rate = 200
	work = 20 * time.Millisecond
)

// instance is one process: an HTTP and a gRPC server, registered.
type instance struct {
	name       string
	httpSrv    *http.Server
	httpAddr   string
	grpcSrv    *grpctest.Server
	deregister func(context.Context) error
}

// Run starts 3 instances, a mesh calling both services at 200 requests a
// second each, then stops and starts each instance in turn, and fails t
// if any request failed. It logs how long each instance took to leave
// the callers' view and to come back.
func Run(t *testing.T, p Plane, httpService, grpcService string) {
	doc := fmt.Sprintf(`apiVersion: lightmesh/v1
services:
  %s:
    subsets: {base: {labels: {env: base}}}
    routes: [{destinations: [{subset: base}]}]
    retry: {attempts: 0}
  %s:
    subsets: {base: {labels: {env: base}}}
    routes: [{destinations: [{subset: base}]}]
    retry: {attempts: 0}
`, httpService, grpcService)
	var seq atomic.Int64
	start := func() *instance {
		t.Helper()
		n := seq.Add(1)
		in := &instance{name: fmt.Sprintf("i%d", n)}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		in.httpAddr = lis.Addr().String()
		// Each request takes 20 ms, so that some are in flight whenever
		// an instance stops.
		in.httpSrv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(work)
			io.WriteString(w, in.name)
		})}
		go in.httpSrv.Serve(lis)
		if in.grpcSrv, err = grpctest.Serve(in.name); err != nil {
			t.Fatal(err)
		}
		in.grpcSrv.Delay.Store(int64(work))
		labels := map[string]string{"env": "base"}
		in.deregister, err = p.Register(map[string]discovery.Instance{
			httpService: {Address: in.httpAddr, Labels: labels},
			grpcService: {Address: in.grpcSrv.Addr, Labels: labels},
		})
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	var live []*instance
	for range 3 {
		live = append(live, start())
	}
	t.Cleanup(func() {
		for _, in := range live {
			in.deregister(context.Background())
			in.httpSrv.Close()
			in.grpcSrv.Stop()
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := mesh.New(ctx, mesh.WithRules(rules.NewMemory([]byte(doc))), mesh.WithDiscovery(p.Discovery),
		mesh.WithServices(httpService, grpcService), mesh.WithReconnectBackoff(100*time.Millisecond, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	known := func(service, addr string) bool {
		return slices.ContainsFunc(m.Table().Instances(service, ""), func(in discovery.Instance) bool { return in.Address == addr })
	}
	waitFor := func(what string, cond func() bool) time.Duration {
		t.Helper()
		began := time.Now()
		for !cond() {
			if time.Since(began) > 20*time.Second {
				t.Fatalf("%s: not within 20 s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(began)
	}
	for _, in := range live {
		waitFor("instance "+in.name+" known", func() bool { return known(httpService, in.httpAddr) && known(grpcService, in.grpcSrv.Addr) })
	}
	httpClient := &http.Client{Transport: m.Transport(nil), Timeout: 5 * time.Second}
	conn, err := grpc.NewClient("lightmesh:///"+grpcService, append(meshgrpc.DialOptions(m), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// The load: each protocol at rate requests a second, each request on
	// a goroutine of its own, at most 100 in flight per protocol.
	var (
		sent, failed atomic.Int64
		failMu       sync.Mutex
		failures     []string
		loadWG       sync.WaitGroup
	)
	fail := func(s string) {
		failed.Add(1)
		failMu.Lock()
		if len(failures) < 20 {
			failures = append(failures, time.Now().Format("15:04:05.000")+" "+s)
		}
		failMu.Unlock()
	}
	loadCtx, stopLoad := context.WithCancel(context.Background())
	shoot := func(call func(context.Context) error) {
		defer loadWG.Done()
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		sem := make(chan struct{}, 100)
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			select {
			case <-loadCtx.Done():
				return
			case <-tick.C:
			}
			select {
			case sem <- struct{}{}:
			default:
				fail("more than 100 requests in flight")
				continue
			}
			sent.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := call(cctx); err != nil {
					fail(err.Error())
				}
			}()
		}
	}
	loadWG.Add(2)
	go shoot(func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpService+"/", nil)
		resp, err := httpClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	})
	go shoot(func(ctx context.Context) error {
		_, err := grpctest.Call(ctx, conn)
		return err
	})
	time.Sleep(time.Second) // load before the first stop

	began := time.Now()
	for i, old := range slices.Clone(live) {
		stopped := make(chan error, 1)
		t0 := time.Now()
		go func() {
			stopped <- lifecycle.Shutdown{
				Deregister: []func(context.Context) error{old.deregister},
				Settle:     p.Settle,
				Drain:      []func(context.Context) error{lifecycle.HTTP(old.httpSrv), lifecycle.GRPC(old.grpcSrv)},
			}.Run(context.Background())
		}()
		left := waitFor("instance "+old.name+" gone", func() bool { return !known(httpService, old.httpAddr) && !known(grpcService, old.grpcSrv.Addr) })
		if err := <-stopped; err != nil {
			t.Errorf("shutdown of %s: %v", old.name, err)
		}
		down := time.Since(t0)
		fresh := start()
		back := waitFor("instance "+fresh.name+" known", func() bool {
			return known(httpService, fresh.httpAddr) && known(grpcService, fresh.grpcSrv.Addr)
		})
		live[i] = fresh
		t.Logf("%s: %s left the callers' view %v after deregistering (shutdown took %v); its replacement %s was in it %v after registering",
			p.Name, old.name, left.Round(time.Millisecond), down.Round(time.Millisecond), fresh.name, back.Round(time.Millisecond))
	}
	time.Sleep(time.Second) // load after the last start
	stopLoad()
	loadWG.Wait()
	t.Logf("%s: rolling restart of 3 instances in %v under %d req/s of HTTP and %d of gRPC: %d requests, %d failed",
		p.Name, time.Since(began).Round(time.Millisecond), rate, rate, sent.Load(), failed.Load())
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed; first ones:\n%s", n, sent.Load(), strings.Join(failures, "\n"))
	}
	if sent.Load() == 0 {
		t.Error(errors.New("no request sent"))
	}
}
