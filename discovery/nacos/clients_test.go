package nacos

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
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
// document of a RuleSource are published at the same moment, 40 times
// (a round not yet applied holds the next back, for up to 2 s); every
// edit must be applied by the meshes, each within 2 s of its publish: a lost push waits for the 30 s re-read and cannot meet that.
// (With nacos-sdk-go's own listener a third of the catalog's edits waited
// for that re-read when another client was created after it: the SDK
// loses a push that arrives while a listen round is in flight, and the
// adapter's former way to hear them, the SDK's process-wide logger, was
// replaced by every later client.) How fast edits are applied is a
// figure, not a contract of a unit test on a shared machine:
// BenchmarkPushesWithManySDKClients reports it.
func TestPushesWithManySDKClients(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes for 40 s per order")
	}
	for _, order := range []string{"sources first", "sources last"} {
		t.Run(strings.ReplaceAll(order, " ", "-"), func(t *testing.T) {
			for _, r := range pushesWithManySDKClients(t, order == "sources first") {
				if len(r.lat) != r.want {
					t.Errorf("%s: %d of %d edits applied within 2 s of the last publish\n%s", r.what, len(r.lat), r.want, r.state)
				}
				if len(r.slow) > 0 {
					t.Errorf("%s (%s): edits applied more than %v after their publish (a lost push waits for the 30 s re-read): %s",
						r.what, order, lostPushBound, strings.Join(r.slow, ", "))
				}
				if len(r.lat) > 0 {
					lat := r.lat
					t.Logf("%s (%s): %d edits, publish→applied min %v p50 %v p90 %v p99 %v max %v", r.what, order, len(lat),
						lat[0].Round(time.Millisecond), meshtest.Percentile(lat, 0.5).Round(time.Millisecond),
						meshtest.Percentile(lat, 0.9).Round(time.Millisecond), meshtest.Percentile(lat, 0.99).Round(time.Millisecond),
						lat[len(lat)-1].Round(time.Millisecond))
				}
			}
		})
	}
}

// BenchmarkPushesWithManySDKClients measures publish → applied in the
// process of TestPushesWithManySDKClients, for each creation order
// (sub-benchmarks sources-first and sources-last): 40 rounds, one a
// second, of two catalog documents and a rule source's document
// published at the same moment. It reports the median, the 99th
// percentile and the maximum for the catalog (metrics suffixed -catalog)
// and the rule source (-source), whatever b.N: each order publishes for
// about 50 s.
func BenchmarkPushesWithManySDKClients(b *testing.B) {
	for _, order := range []string{"sources first", "sources last"} {
		b.Run(strings.ReplaceAll(order, " ", "-"), func(b *testing.B) {
			rs := pushesWithManySDKClients(b, order == "sources first")
			b.StopTimer()
			for _, r := range rs {
				if len(r.lat) != r.want {
					b.Errorf("%s: %d of %d edits applied", r.what, len(r.lat), r.want)
				}
				if len(r.lat) > 0 {
					meshtest.ReportLatency(b, r.lat, "-"+r.suffix)
				}
			}
		})
	}
}

// lostPushBound is the longest publish → applied an edit may take in
// TestPushesWithManySDKClients: far above a push heard on a loaded
// machine, far below the 30 s re-read a lost push waits for.
const lostPushBound = 2 * time.Second

// pushResult is what one layout of pushesWithManySDKClients applied.
type pushResult struct {
	what, suffix string
	want         int
	lat          []time.Duration // publish → applied of each edit applied, sorted
	slow         []string        // the edits over lostPushBound, named
	state        string          // the catalog's items and its warnings, for a failure's message
}

// pushesWithManySDKClients builds the process of
// TestPushesWithManySDKClients (the sources made before the other SDK
// clients, which are made again after the meshes start, or after them),
// publishes 40 rounds of edits one second apart (or up to lostPushBound,
// while a round is not applied) and returns, for the
// catalog and the rule source, how long each edit took to be applied.
func pushesWithManySDKClients(tb testing.TB, sourcesFirst bool) []pushResult {
	cfg := testConfig(tb)
	var logged meshtest.LogBuffer // the catalogs' warnings, for a failure's message
	cfg.Logger = slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn}))
	group := unique("lm-many")
	svcA, svcB, single := unique("many-a"), unique("many-b"), unique("many-rules")
	pub := newPublisher(tb, cfg, group)
	tb.Cleanup(func() {
		for _, n := range []string{svcA, svcB, single} {
			pub.remove(tb, n)
		}
	})
	pub.publish(tb, svcA, meshtest.LaneRules(svcA))
	pub.publish(tb, svcB, meshtest.LaneRules(svcB))
	pub.publish(tb, single, meshtest.LaneRules(svcA))

	// The other clients: discovery watching a service, a
	// registration, the one-shot Publish, and the application's
	// SDK client with its logger installed in the SDK.
	others := func() {
		disc, err := NewDiscovery(cfg, group)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { disc.Close() })
		watched := make(chan struct{})
		keepWatching(tb, disc, svcA, func([]discovery.Instance) { closeOnce(watched) })
		b := meshtest.NewBackend(tb, "many")
		register(tb, cfg, svcA, group, b, "base")
		eventually(tb, "the one-shot Publish", func() error { return Publish(cfg, unique("many-other"), group, "x: 1") })
		param, dir, err := cfg.clientParam()
		if err != nil {
			tb.Fatal(err)
		}
		app, err := newConfigClient(cfg, param)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { app.close(); removeDir(dir) })
		eventually(tb, "the application's first read", func() error { _, err := app.get(svcA, group); return err })
		logger.SetLogger(&appLogger{})
		select {
		case <-watched:
		case <-time.After(settleBound):
			tb.Fatal("the discovery delivered no list")
		}
	}
	sources := func() (*Catalog, *RuleSource) {
		cat, err := NewCatalog(cfg, group)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { cat.Close() })
		src, err := NewRuleSource(cfg, single, group)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { src.Close() })
		return cat, src
	}
	var (
		cat *Catalog
		src *RuleSource
	)
	if sourcesFirst {
		cat, src = sources()
		others()
	} else {
		others()
		cat, src = sources()
	}
	var (
		mu        sync.Mutex
		published = map[string]time.Time{} // version → publish time
		names     = map[string]string{}    // version → "document #edit"
		// the versions each mesh applied, for pacing the rounds
		catApplied, srcApplied = map[string]bool{}, map[string]bool{}
	)
	catEvents, srcEvents := make(events, 512), make(events, 512)
	recording := func(ch events, applied map[string]bool) mesh.Option {
		return mesh.WithOnRulesChange(func(ev mesh.RulesEvent) {
			mu.Lock()
			applied[ev.Version] = true
			mu.Unlock()
			select {
			case ch <- ev:
			default:
			}
		})
	}
	newMesh(tb, mesh.WithRuleCatalog(cat), mesh.WithServices(svcA, svcB), recording(catEvents, catApplied))
	newMesh(tb, mesh.WithRules(src), recording(srcEvents, srcApplied))
	if sourcesFirst {
		others() // and a second round after the meshes started
	}
	type item struct{ dataID, service string }
	items := []item{{svcA, svcA}, {svcB, svcB}, {single, svcA}}
	docOf := func(it item, edit string) string {
		return fmt.Sprintf("%s# edit %s\n", meshtest.LaneRules(it.service), edit)
	}
	// applied reports whether both meshes applied edit of every item.
	applied := func(edit string) bool {
		mu.Lock()
		defer mu.Unlock()
		return catApplied[md5hex(docOf(items[0], edit))] && catApplied[md5hex(docOf(items[1], edit))] && srcApplied[md5hex(docOf(items[2], edit))]
	}
	// The SDK registers listeners with the server on a 5 s timer; an edit
	// made before would wait for the 30 s re-read. Once a warm-up edit
	// of each document has been applied, the listeners are in place.
	time.Sleep(6 * time.Second)
	for _, it := range items {
		pub.publish(tb, it.dataID, docOf(it, "warm-up"))
	}
	meshtest.WaitFor(tb, 40*time.Second, "the warm-up edits applied", func() bool { return applied("warm-up") })

	const edits = 40
	var wg sync.WaitGroup
	for i := range edits {
		round := time.Now()
		for _, it := range items {
			doc := docOf(it, strconv.Itoa(i))
			wg.Add(1)
			go func() {
				defer wg.Done()
				mu.Lock()
				published[md5hex(doc)] = time.Now()
				names[md5hex(doc)] = fmt.Sprintf("%s #%d", it.dataID, i)
				mu.Unlock()
				if ok, err := pub.client.publish(vo.ConfigParam{DataId: it.dataID, Group: group, Content: doc, Type: "yaml"}); err != nil || !ok {
					tb.Errorf("publish %s: ok=%v err=%v", it.dataID, ok, err)
				}
			}()
		}
		// A round a second, but the next waits until this one is
		// applied, up to lostPushBound: a later edit replaces one not yet
		// read, which would count as lost although it might have met
		// the bound.
		for el := time.Since(round); el < lostPushBound && (el < time.Second || !applied(strconv.Itoa(i))); el = time.Since(round) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	wg.Wait()
	time.Sleep(lostPushBound) // the last edits
	collect := func(ch events, what, suffix string, want int, c *Catalog) pushResult {
		r := pushResult{what: what, suffix: suffix, want: want, state: catalogState(c, logged.String())}
		for {
			select {
			case ev := <-ch:
				mu.Lock()
				at, ok := published[ev.Version]
				name := names[ev.Version]
				mu.Unlock()
				if ok && ev.Err == nil {
					d := ev.At.Sub(at)
					r.lat = append(r.lat, d)
					if d > lostPushBound {
						r.slow = append(r.slow, fmt.Sprintf("%s %v", name, d.Round(time.Millisecond)))
					}
				}
				continue
			default:
			}
			break
		}
		slices.Sort(r.lat)
		return r
	}
	return []pushResult{
		collect(catEvents, "catalog, two documents", "catalog", 2*edits, cat),
		collect(srcEvents, "rule source", "source", edits, src.cat),
	}
}

func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// catalogState describes c's items and the lightmesh lines of log.
func catalogState(c *Catalog, log string) string {
	var b strings.Builder
	c.mu.Lock()
	for _, id := range slices.Sorted(maps.Keys(c.items)) {
		it := c.items[id]
		fmt.Fprintf(&b, "item %s: known %v version %s reading %v again %v listening %v last read %v ago, %d pushes heard, the last %v ago\n",
			id, it.known, it.version, it.reading, it.again, it.listening, time.Since(it.lastRead).Round(time.Millisecond),
			it.pushes, time.Since(it.lastPush).Round(time.Millisecond))
	}
	c.mu.Unlock()
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "lightmesh:") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
