package mesh_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/rules"
)

// derivingTransport is a base RoundTripper that runs the request on a
// context of its own derived from the request's (as wrappers that add a
// span, a hedge or their own cancel do) and reports that context's error
// when it ends.
type derivingTransport struct{ next http.RoundTripper }

func (d derivingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	type result struct {
		resp *http.Response
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		resp, err := d.next.RoundTrip(req.WithContext(context.WithoutCancel(ctx)))
		ch <- result{resp, err}
	}()
	select {
	case r := <-ch:
		return r.resp, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestReviewTimeoutThroughADerivingBase: the rule's timeout ends a call
// whose base RoundTripper derives its own context: the caller's error is
// still context.DeadlineExceeded (errors.Is), as with a
// context.WithDeadline try context.
func TestReviewTimeoutThroughADerivingBase(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(500 * time.Millisecond) // longer than the rule's timeout
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	m := newMesh(t, rules.NewMemory([]byte(svcDoc("    timeout: 100ms\n"))), discovery.NewStatic(map[string][]discovery.Instance{"svc": {{Address: u.Host}}}))
	client := &http.Client{Transport: m.Transport(derivingTransport{next: http.DefaultTransport})}
	resp, err := client.Get("http://svc/")
	if err == nil {
		resp.Body.Close()
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
}
