package nacos

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/common/logger"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
)

// appLogger is the logger an application installs in the SDK for its
// own SDK clients: it counts lines and shows them nowhere.
type appLogger struct{ lines atomic.Int64 }

func (l *appLogger) Info(...any)           { l.lines.Add(1) }
func (l *appLogger) Warn(...any)           { l.lines.Add(1) }
func (l *appLogger) Error(...any)          { l.lines.Add(1) }
func (l *appLogger) Debug(...any)          { l.lines.Add(1) }
func (l *appLogger) Infof(string, ...any)  { l.lines.Add(1) }
func (l *appLogger) Warnf(string, ...any)  { l.lines.Add(1) }
func (l *appLogger) Errorf(string, ...any) { l.lines.Add(1) }
func (l *appLogger) Debugf(string, ...any) { l.lines.Add(1) }
func (l *appLogger) Close() error          { return nil }

// TestPushesWithManySDKClients: a process that, like every real service,
// has other Nacos SDK clients besides its rule sources (a discovery
// source, a registration, a publisher, an SDK client of the application's
// own with its own logger installed in the SDK), created before or after
// the sources, applies every edit of its documents soon after its
// publish. Each second, two per-service documents of a Catalog and the
// document of a RuleSource are published at the same moment, 40 times;
// every edit must be applied by the meshes, with p99 ≤ 200 ms from the
// publish to the mesh's event. (With nacos-sdk-go's own listener a third
// of the catalog's edits waited for its 30 s re-read when another client
// was created after it: the SDK loses a push that arrives while a listen
// round is in flight, and the adapter's former way to hear them, the
// SDK's process-wide logger, was replaced by every later client.)
func TestPushesWithManySDKClients(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes for 40 s per order")
	}
	for _, order := range []string{"sources first", "sources last"} {
		t.Run(strings.ReplaceAll(order, " ", "-"), func(t *testing.T) {
			cfg := testConfig(t)
			group := unique("lm-many")
			svcA, svcB, single := unique("many-a"), unique("many-b"), unique("many-rules")
			pub := newPublisher(t, cfg, group)
			t.Cleanup(func() {
				for _, n := range []string{svcA, svcB, single} {
					pub.remove(t, n)
				}
			})
			pub.publish(t, svcA, meshtest.LaneRules(svcA))
			pub.publish(t, svcB, meshtest.LaneRules(svcB))
			pub.publish(t, single, meshtest.LaneRules(svcA))

			// The other clients: discovery watching a service, a
			// registration, the one-shot Publish, and the application's
			// SDK client with its logger installed in the SDK.
			others := func() {
				disc, err := NewDiscovery(cfg, group)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { disc.Close() })
				ctx, cancel := context.WithCancel(context.Background())
				watched := make(chan struct{})
				go disc.Watch(ctx, svcA, func([]discovery.Instance) { closeOnce(watched) })
				t.Cleanup(cancel)
				b := meshtest.NewBackend(t, "many")
				register(t, cfg, svcA, group, b, "base")
				if err := Publish(cfg, unique("many-other"), group, "x: 1"); err != nil {
					t.Fatal(err)
				}
				param, dir, err := cfg.clientParam()
				if err != nil {
					t.Fatal(err)
				}
				app, err := newConfigClient(cfg, param)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { app.close(); removeDir(dir) })
				if _, err := app.get(svcA, group); err != nil {
					t.Fatal(err)
				}
				logger.SetLogger(&appLogger{})
				<-watched
			}
			sources := func() (*Catalog, *RuleSource) {
				cat, err := NewCatalog(cfg, group)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { cat.Close() })
				src, err := NewRuleSource(cfg, single, group)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { src.Close() })
				return cat, src
			}
			var (
				cat *Catalog
				src *RuleSource
			)
			if order == "sources first" {
				cat, src = sources()
				others()
			} else {
				others()
				cat, src = sources()
			}
			catEvents, srcEvents := make(events, 512), make(events, 512)
			newMesh(t, mesh.WithRuleCatalog(cat), mesh.WithServices(svcA, svcB), catEvents.hook())
			newMesh(t, mesh.WithRules(src), srcEvents.hook())
			if order == "sources first" {
				others() // and a second round after the meshes started
			}
			// The SDK registers listeners with the server on a 5 s timer.
			time.Sleep(6 * time.Second)

			const edits = 40
			var (
				mu        sync.Mutex
				published = map[string]time.Time{} // version → publish time
				names     = map[string]string{}    // version → "document #edit"
			)
			var wg sync.WaitGroup
			for i := range edits {
				for _, item := range []struct{ dataID, service string }{{svcA, svcA}, {svcB, svcB}, {single, svcA}} {
					doc := fmt.Sprintf("%s# edit %d\n", meshtest.LaneRules(item.service), i)
					wg.Add(1)
					go func() {
						defer wg.Done()
						mu.Lock()
						published[md5hex(doc)] = time.Now()
						names[md5hex(doc)] = fmt.Sprintf("%s #%d", item.dataID, i)
						mu.Unlock()
						if ok, err := pub.client.publish(vo.ConfigParam{DataId: item.dataID, Group: group, Content: doc, Type: "yaml"}); err != nil || !ok {
							t.Errorf("publish %s: ok=%v err=%v", item.dataID, ok, err)
						}
					}()
				}
				time.Sleep(time.Second)
			}
			wg.Wait()
			time.Sleep(2 * time.Second) // the last edits
			collect := func(ch events, what string, want int) []time.Duration {
				var (
					lat  []time.Duration
					slow []string // the edits over 200 ms, to tell a stall (all of one second) from a lost push
				)
				for {
					select {
					case ev := <-ch:
						mu.Lock()
						at, ok := published[ev.Version]
						name := names[ev.Version]
						mu.Unlock()
						if ok && ev.Err == nil {
							d := ev.At.Sub(at)
							lat = append(lat, d)
							if d > 200*time.Millisecond {
								slow = append(slow, fmt.Sprintf("%s %v", name, d.Round(time.Millisecond)))
							}
						}
						continue
					default:
					}
					break
				}
				if len(slow) > 0 {
					t.Logf("%s (%s): over 200 ms: %s", what, order, strings.Join(slow, ", "))
				}
				slices.Sort(lat)
				if len(lat) != want {
					t.Errorf("%s: %d of %d edits applied within 2 s of the last publish", what, len(lat), want)
				}
				if len(lat) > 0 {
					p99 := meshtest.Percentile(lat, 0.99)
					t.Logf("%s (%s): %d edits, publish→applied min %v p50 %v p90 %v p99 %v max %v", what, order, len(lat),
						lat[0].Round(time.Millisecond), meshtest.Percentile(lat, 0.5).Round(time.Millisecond),
						meshtest.Percentile(lat, 0.9).Round(time.Millisecond), p99.Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
					if p99 > 200*time.Millisecond {
						t.Errorf("%s: p99 publish→applied %v, want ≤ 200ms", what, p99)
					}
				}
				return lat
			}
			collect(catEvents, "catalog, two documents", 2*edits)
			collect(srcEvents, "rule source", edits)
		})
	}
}

func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}
