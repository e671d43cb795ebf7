package meshtest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/router"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBackendAndFleet(t *testing.T) {
	backends, list := Fleet(t, "base-1", "staging-1")
	if len(backends) != 2 || len(list) != 2 {
		t.Fatalf("fleet: %d backends, %d instances", len(backends), len(list))
	}
	for i, want := range []struct{ name, env string }{{"base-1", "base"}, {"staging-1", "staging"}} {
		b := backends[want.name]
		if list[i].Address != b.Addr() || list[i].Labels["env"] != want.env {
			t.Fatalf("instance %d = %+v, want %s with env=%s", i, list[i], b.Addr(), want.env)
		}
	}
	b := backends["staging-1"]
	body, err := Get(context.Background(), http.DefaultClient, b.Server.URL+"/x", map[string]string{"X-Env": "staging"})
	if err != nil || body != "staging-1" {
		t.Fatalf("Get = %q, %v", body, err)
	}
	if b.Hits.Load() != 1 || b.LastHost() != b.Addr() {
		t.Fatalf("hits %d, last Host %q", b.Hits.Load(), b.LastHost())
	}
}

func TestGetNon200IsAnError(t *testing.T) {
	srv := newStatusServer(t, http.StatusTeapot, "short and stout")
	_, err := Get(context.Background(), http.DefaultClient, srv, nil)
	if err == nil || !strings.Contains(err.Error(), "418") || !strings.Contains(err.Error(), "short and stout") {
		t.Fatalf("err = %v, want the status and the body", err)
	}
}

func newStatusServer(t *testing.T, code int, body string) string {
	t.Helper()
	b := NewBackend(t, "unused")
	b.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		io.WriteString(w, body)
	})
	return b.Server.URL
}

func TestCallRoutesByServiceAndEnv(t *testing.T) {
	// A client whose transport answers with the Host and the X-Env it saw.
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader(r.Host + "/" + r.Header.Get("X-Env"))), Request: r}, nil
	})}
	if got := Routes(t, client, "svc", "staging", 3); got["svc/staging"] != 3 || len(got) != 1 {
		t.Fatalf("Routes = %v", got)
	}
	if name, err := Call(client, "svc", ""); err != nil || name != "svc/" {
		t.Fatalf("Call without env = %q, %v", name, err)
	}
	ExpectOnly(t, client, "svc", "base", 2, "svc/base", "other")
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestWaitForAndNext(t *testing.T) {
	start := time.Now()
	WaitFor(t, 5*time.Second, "50ms to pass", func() bool { return time.Since(start) > 50*time.Millisecond })

	ch := make(chan int, 3)
	ch <- 1
	ch <- 2
	ch <- 3
	if got := Next(t, ch, time.Second, "an even number", func(v int) bool { return v%2 == 0 }); got != 2 {
		t.Fatalf("Next = %d, want 2", got)
	}
}

func TestWatchList(t *testing.T) {
	static := discovery.NewStatic(map[string][]discovery.Instance{"svc": {{Address: "10.0.0.1:80"}}})
	lists, stop := WatchList(t, static, "svc")
	Next(t, lists, 5*time.Second, "the instance", func(l []discovery.Instance) bool { return len(l) == 1 })
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("stop = %v, want context.Canceled", err)
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("second stop = %v, want the same error", err)
	}
}

func TestLogBuffer(t *testing.T) {
	var logs LogBuffer
	l := logs.Logger()
	l.Debug("one")
	l.Info("one more")
	if n := logs.Count("one"); n != 2 {
		t.Fatalf("Count = %d in %q, want 2 (debug included)", n, logs.String())
	}
}

func TestRules(t *testing.T) {
	for _, doc := range []string{LaneRules("orders"), MovedRules("orders")} {
		if !strings.Contains(doc, "\n  orders:\n") {
			t.Fatalf("document not for orders:\n%s", doc)
		}
		if _, err := router.Load([]byte(doc)); err != nil {
			t.Fatalf("%v in\n%s", err, doc)
		}
	}
	_, err := router.Load([]byte(BrokenRules("orders")))
	if err == nil || !strings.Contains(err.Error(), "canary") || !strings.Contains(err.Error(), "weight") {
		t.Fatalf("BrokenRules: err = %v, want the missing subset and the negative weight", err)
	}
}

func TestExposureFindsSecrets(t *testing.T) {
	e := Exposure{}
	e.Add("log", "connected")
	e.AddErr("error", errors.New("login as root with pw-123 failed"))
	e.AddErr("no error", nil)
	if got := e.Leaks("pw-123"); len(got) != 1 || got[0] != "error" {
		t.Fatalf("leaks = %v, want [error]", got)
	}
	// Encoded forms count: JSON escapes and URL escapes.
	e.Add("json log", `{"params":{"password":"pw\u003c1\u003e"}}`)
	e.AddErr("url error", &url.Error{Op: "Get", URL: "http://h/?password=pw%3C1%3E", Err: os.ErrDeadlineExceeded})
	if got := e.Leaks("pw<1>"); len(got) != 2 || got[0] != "json log" || got[1] != "url error" {
		t.Fatalf("leaks = %v, want the JSON log and the URL error", got)
	}
}
