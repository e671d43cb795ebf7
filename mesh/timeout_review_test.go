package mesh_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/rules"
)

// stallServer answers after the request's context ends (or 5s).
func stallServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestReviewConcurrentRouteTimeouts: 60 concurrent calls on three routes
// with timeouts 100ms, 250ms and 400ms to a server that never answers in
// time each end with DeadlineExceeded at their own route's timeout.
func TestReviewConcurrentRouteTimeouts(t *testing.T) {
	srv := stallServer(t)
	u, _ := url.Parse(srv.URL)
	doc := `apiVersion: lightmesh/v1
services:
  svc:
    subsets: {all: {labels: {}}}
    routes:
      - {name: a, match: {path: {prefix: /a}}, destinations: [{subset: all}], timeout: 100ms}
      - {name: b, match: {path: {prefix: /b}}, destinations: [{subset: all}], timeout: 250ms}
      - {name: c, match: {path: {prefix: /c}}, destinations: [{subset: all}], timeout: 400ms}
`
	m := newMesh(t, rules.NewMemory([]byte(doc)), discovery.NewStatic(map[string][]discovery.Instance{"svc": {{Address: u.Host}}}))
	client := &http.Client{Transport: m.Transport(&http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: 100})}
	timeouts := map[string]time.Duration{"a": 100 * time.Millisecond, "b": 250 * time.Millisecond, "c": 400 * time.Millisecond}
	var wg sync.WaitGroup
	errs := make(chan error, 60)
	for i := range 60 {
		route := []string{"a", "b", "c"}[i%3]
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			resp, err := client.Get("http://svc/" + route)
			took := time.Since(start)
			if err == nil {
				resp.Body.Close()
			}
			d := timeouts[route]
			if !errors.Is(err, context.DeadlineExceeded) || took < d || took > d+time.Second {
				errs <- fmt.Errorf("route %s (timeout %v): err %v after %v", route, d, err, took)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestReviewPerTryTimeoutRetries: a per-try timeout with retries ends
// each try at its own deadline and the call at the call's timeout.
func TestReviewPerTryTimeoutRetries(t *testing.T) {
	srv := stallServer(t)
	u, _ := url.Parse(srv.URL)
	doc := svcDoc("    timeout: 1s\n    retry: {attempts: 2, perTryTimeout: 100ms, backoff: 1ms}\n")
	m := newMesh(t, rules.NewMemory([]byte(doc)), discovery.NewStatic(map[string][]discovery.Instance{"svc": {{Address: u.Host}}}))
	client := &http.Client{Transport: m.Transport(nil)}
	start := time.Now()
	resp, err := client.Get("http://svc/")
	took := time.Since(start)
	if err == nil {
		resp.Body.Close()
	}
	if !errors.Is(err, context.DeadlineExceeded) || took < 300*time.Millisecond || took > 900*time.Millisecond {
		t.Fatalf("err %v after %v, want DeadlineExceeded after three 100ms tries", err, took)
	}
}

// TestReviewHTTP2BodyCut: over HTTP/2 the rule's timeout cuts a stalled
// response body with DeadlineExceeded too.
func TestReviewHTTP2BodyCut(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.Write([]byte("head"))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	m := newMesh(t, rules.NewMemory([]byte(svcDoc("    timeout: 200ms\n"))), discovery.NewStatic(map[string][]discovery.Instance{"svc": {{Address: u.Host}}}))
	base := srv.Client().Transport.(*http.Transport).Clone()
	base.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	base.ForceAttemptHTTP2 = true
	client := &http.Client{Transport: m.Transport(base)}
	start := time.Now()
	resp, err := client.Get("https://svc/")
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Fatalf("proto %s", resp.Proto)
	}
	_, err = io.ReadAll(resp.Body)
	took := time.Since(start)
	resp.Body.Close()
	if !errors.Is(err, context.DeadlineExceeded) || took < 200*time.Millisecond || took > 2*time.Second {
		t.Fatalf("body read: err = %v after %v, want DeadlineExceeded after 200ms", err, took)
	}
}

// TestReviewUpgradeOutlivesTheTimeout: a 101 upgrade's connection is not
// cut by the rule's timeout.
func TestReviewUpgradeOutlivesTheTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, err := brw.ReadString('\n')
		if err != nil {
			return
		}
		brw.WriteString("echo " + line)
		brw.Flush()
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	m := newMesh(t, rules.NewMemory([]byte(svcDoc("    timeout: 100ms\n"))), discovery.NewStatic(map[string][]discovery.Instance{"svc": {{Address: u.Host}}}))
	client := &http.Client{Transport: m.Transport(nil)}
	req, _ := http.NewRequest("GET", "http://svc/", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	rw, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("101 body is %T, not an io.ReadWriteCloser", resp.Body)
	}
	time.Sleep(300 * time.Millisecond) // past the rule's timeout
	if _, err := io.WriteString(rw, "hi\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(rw).ReadString('\n')
	if err != nil || line != "echo hi\n" {
		t.Fatalf("after the timeout: %q %v", line, err)
	}
}
