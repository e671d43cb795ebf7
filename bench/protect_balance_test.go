package bench

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	kselector "github.com/go-kratos/kratos/v2/selector"
	kp2c "github.com/go-kratos/kratos/v2/selector/p2c"
	"github.com/zeromicro/go-zero/zrpc"

	"github.com/lightmesh/lightmesh/discovery"
)

// lbDoc is the client document of the slow-instance and slow-start
// scenarios: service svc with the balancer named by %s and the extra
// lines of %s.
const lbDoc = `apiVersion: lightmesh/v1
services:
  svc:
    loadBalancer: %s
%s`

// slowInstanceScenario: three instances answering in 2 ms, one of them
// slowed by 20 ms (variant: the slow one stalls 200 ms every second
// instead). Four callers each start a call every 10 ms. Rows:
// lightmesh round-robin and p2c-ewma over HTTP and p2c-ewma over gRPC,
// kratos' selector/p2c (its default EWMA nodes) choosing the address of
// each HTTP call, and go-zero's p2c_ewma balancer inside a zrpc client
// over gRPC (the balancer is internal to go-zero, so it runs as go-zero
// users run it: zrpc.NewClient with direct endpoints and no
// middlewares).
func slowInstanceScenario(t *testing.T, p scenarioParams) string {
	type variant struct {
		name       string
		slow       func(*backend)
		pauseEvery time.Duration
	}
	variants := []variant{
		{name: "+20 ms", slow: func(b *backend) { b.delay.Store(int64(22 * time.Millisecond)) }},
		{name: "200 ms pause every 1 s", slow: func(b *backend) { b.pauseEvery, b.pauseFor = time.Second, 200*time.Millisecond }},
	}
	type row struct {
		name string
		grpc bool
		// client returns the call of this row against the three backends.
		client func(t *testing.T, bs []*backend) func(context.Context) error
	}
	lightmeshHTTP := func(lb string) func(t *testing.T, bs []*backend) func(context.Context) error {
		return func(t *testing.T, bs []*backend) func(context.Context) error {
			m, _, err := startMesh(t, fmt.Sprintf(lbDoc, lb, ""), map[string][]discovery.Instance{"svc": instances(bs, false)})
			if err != nil {
				t.Fatal(err)
			}
			c := &http.Client{Transport: m.Transport(protectTransport(t))}
			return func(ctx context.Context) error { return statusErr(get(ctx, c, "http://svc/")) }
		}
	}
	rows := []row{
		{name: "lightmesh round-robin (HTTP)", client: lightmeshHTTP("round-robin")},
		{name: "lightmesh p2c-ewma (HTTP)", client: lightmeshHTTP("p2c-ewma")},
		{name: "kratos selector/p2c (HTTP)", client: func(t *testing.T, bs []*backend) func(context.Context) error {
			sel := kp2c.New()
			var nodes []kselector.Node
			for _, b := range bs {
				nodes = append(nodes, kselector.NewNode("http", b.addr, nil))
			}
			sel.Apply(nodes)
			c := &http.Client{Transport: protectTransport(t)}
			return func(ctx context.Context) error {
				n, done, err := sel.Select(ctx)
				if err != nil {
					return err
				}
				err = statusErr(get(ctx, c, "http://"+n.Address()+"/"))
				done(ctx, kselector.DoneInfo{Err: err})
				return err
			}
		}},
		{name: "lightmesh p2c-ewma (gRPC)", grpc: true, client: func(t *testing.T, bs []*backend) func(context.Context) error {
			m, _, err := startMesh(t, fmt.Sprintf(lbDoc, "p2c-ewma", ""), map[string][]discovery.Instance{"svc": instances(bs, true)})
			if err != nil {
				t.Fatal(err)
			}
			return healthCall(meshGRPC(t, m))
		}},
		{name: "go-zero zrpc p2c_ewma (gRPC)", grpc: true, client: func(t *testing.T, bs []*backend) func(context.Context) error {
			var eps []string
			for _, b := range bs {
				eps = append(eps, b.gaddr)
			}
			cli, err := zrpc.NewClient(zrpc.RpcClientConf{Endpoints: eps, NonBlock: true, Timeout: 2000, BalancerName: "p2c_ewma"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cli.Conn().Close() })
			return healthCall(cli.Conn())
		}},
	}
	var out string
	for _, v := range variants {
		var cells [][]string
		for _, r := range rows {
			bs := make([]*backend, 3)
			for i := range bs {
				b := &backend{}
				b.delay.Store(int64(2 * time.Millisecond))
				if i == 2 {
					v.slow(b)
				}
				bs[i] = startBackend(t, b, nil, r.grpc)
			}
			call := r.client(t, bs)
			pacedCalls(4, 10*time.Millisecond, p.warmup, call)
			var before [3]int64
			for i, b := range bs {
				before[i] = b.calls.Load()
			}
			lat, failed := pacedCalls(4, 10*time.Millisecond, p.slowRun, call)
			var total, slow int64
			for i, b := range bs {
				n := b.calls.Load() - before[i]
				total += n
				if i == 2 {
					slow = n
				}
			}
			cells = append(cells, []string{r.name, fmt.Sprint(len(lat)), fmt.Sprint(failed),
				ms(percentile(lat, 50)), ms(percentile(lat, 99)), pct(slow, total)})
		}
		out += table("Slow instance: "+v.name,
			fmt.Sprintf("3 instances answering in 2 ms; the third %s. 4 callers each starting a call every 10 ms for %s (after %s of warm-up). Loopback, shared 2-core machine.", v.name, p.slowRun, p.warmup),
			[]string{"row", "calls ok", "failed", "p50", "p99", "share to the slow one"}, cells) + "\n"
	}
	return out
}

// slowStartScenario: two instances busy with four callers each calling
// every 10 ms; a third joins (discovery adds it). It is cold: for the
// first third of the slowStart window it answers 20 ms slower, and it
// always answers 503 to a call beyond the second it has in flight at
// once. The table gives its share of calls in each third of the window
// from the join, and the error rate of its calls against the others'.
// kratos' p2c, which has no slow start, is the peer row (go-zero's p2c
// has none either, and its zrpc client takes its endpoints once).
func slowStartScenario(t *testing.T, p scenarioParams) string {
	slowStart := fmt.Sprintf("    slowStart: {window: %s, minPercent: 10}\n", p.rampWindow)
	// client returns a row's call over the first two backends and the
	// function that adds the third.
	type client func(t *testing.T, bs []*backend) (call func(context.Context) error, join func())
	lightmesh := func(lb, extra string) client {
		return func(t *testing.T, bs []*backend) (func(context.Context) error, func()) {
			m, src, err := startMesh(t, fmt.Sprintf(lbDoc, lb, extra), map[string][]discovery.Instance{"svc": instances(bs[:2], false)})
			if err != nil {
				t.Fatal(err)
			}
			c := &http.Client{Transport: m.Transport(protectTransport(t))}
			return func(ctx context.Context) error { return statusErr(get(ctx, c, "http://svc/")) },
				func() { src.Set("svc", instances(bs, false)) }
		}
	}
	rows := []struct {
		name   string
		client client
	}{
		{"lightmesh round-robin, no slowStart", lightmesh("round-robin", "")},
		{"lightmesh round-robin, slowStart", lightmesh("round-robin", slowStart)},
		{"lightmesh p2c-ewma, slowStart", lightmesh("p2c-ewma", slowStart)},
		{"kratos selector/p2c (no slow start)", func(t *testing.T, bs []*backend) (func(context.Context) error, func()) {
			sel := kp2c.New()
			nodes := func(bs []*backend) []kselector.Node {
				var out []kselector.Node
				for _, b := range bs {
					out = append(out, kselector.NewNode("http", b.addr, nil))
				}
				return out
			}
			sel.Apply(nodes(bs[:2]))
			c := &http.Client{Transport: protectTransport(t)}
			return func(ctx context.Context) error {
				n, done, err := sel.Select(ctx)
				if err != nil {
					return err
				}
				err = statusErr(get(ctx, c, "http://"+n.Address()+"/"))
				done(ctx, kselector.DoneInfo{Err: err})
				return err
			}, func() { sel.Apply(nodes(bs)) }
		}},
	}
	bucket := p.rampWindow / 3
	const buckets = 5
	var cells [][]string
	for _, r := range rows {
		bs := make([]*backend, 3)
		for i := range bs {
			b := &backend{}
			b.delay.Store(int64(2 * time.Millisecond))
			if i == 2 {
				b.delay.Store(int64(22 * time.Millisecond))
				b.maxInFlight = 2
			}
			bs[i] = startBackend(t, b, nil, false)
		}
		call, join := r.client(t, bs)
		pacedCalls(4, 10*time.Millisecond, p.warmup, call)

		done := make(chan struct{})
		go func() {
			defer close(done)
			pacedCalls(4, 10*time.Millisecond, buckets*bucket, call)
		}()
		join()
		joined := time.Now()
		go func() { // the cold instance warms up after a third of the window
			time.Sleep(bucket)
			bs[2].delay.Store(int64(2 * time.Millisecond))
		}()
		row := []string{r.name}
		var prev [3]int64
		var prevFail [3]int64
		for i, b := range bs {
			prev[i], prevFail[i] = b.calls.Load(), b.failed.Load()
		}
		start := prev
		startFail := prevFail
		for k := 1; k <= buckets; k++ {
			time.Sleep(time.Until(joined.Add(time.Duration(k) * bucket)))
			var total, fresh int64
			for i, b := range bs {
				n := b.calls.Load()
				total += n - prev[i]
				if i == 2 {
					fresh = n - prev[i]
				}
				prev[i] = n
			}
			row = append(row, pct(fresh, total))
		}
		<-done
		var oldCalls, oldFail int64
		for i := range 2 {
			oldCalls += bs[i].calls.Load() - start[i]
			oldFail += bs[i].failed.Load() - startFail[i]
		}
		row = append(row, pct(bs[2].failed.Load()-startFail[2], bs[2].calls.Load()-start[2]), pct(oldFail, oldCalls))
		cells = append(cells, row)
	}
	header := []string{"row"}
	for k := 1; k <= buckets; k++ {
		header = append(header, fmt.Sprintf("share %s–%s", time.Duration(k-1)*bucket, time.Duration(k)*bucket))
	}
	header = append(header, "errors, new", "errors, others")
	return table("Slow start: a third instance joins a busy subset",
		fmt.Sprintf("Two instances (2 ms), 4 callers each calling every 10 ms; a third joins, cold: 20 ms slower for its first %s and always 503 beyond 2 calls in flight. Its full share is 33%%. slowStart: {window: %s, minPercent: 10}. Columns: its share of calls in each %s after the join; error rates from the join to the end.", bucket, p.rampWindow, bucket),
		header, cells)
}
