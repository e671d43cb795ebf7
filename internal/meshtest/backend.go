package meshtest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/lightmesh/lightmesh/discovery"
)

// Backend is a real HTTP server that answers every request with 200 and
// its name, counts the requests and records the Host header of the last.
// NewBackend starts one.
type Backend struct {
	// Name is what the backend answers with.
	Name string
	// Server is the running server; it is closed when the test ends.
	Server *httptest.Server
	// Hits counts the requests the backend has received.
	Hits atomic.Int64

	lastHost atomic.Value // string
}

// NewBackend starts a Backend answering with name and closes it when tb
// ends.
func NewBackend(tb testing.TB, name string) *Backend {
	tb.Helper()
	b := &Backend{Name: name}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.Hits.Add(1)
		b.lastHost.Store(r.Host)
		io.WriteString(w, name)
	}))
	tb.Cleanup(b.Server.Close)
	return b
}

// Addr returns the backend's host:port.
func (b *Backend) Addr() string {
	u, _ := url.Parse(b.Server.URL)
	return u.Host
}

// LastHost returns the Host header of the last request, or "" before the
// first.
func (b *Backend) LastHost() string {
	h, _ := b.lastHost.Load().(string)
	return h
}

// Instance returns the backend as a discovery instance labelled env=env.
func (b *Backend) Instance(env string) discovery.Instance {
	return discovery.Instance{Address: b.Addr(), Labels: map[string]string{"env": env}}
}

// Fleet starts a Backend for each of names, labelled with the part of its
// name before the first "-" as env ("staging-2" is env=staging). It
// returns the backends by name and their instances in the order of names.
func Fleet(tb testing.TB, names ...string) (map[string]*Backend, []discovery.Instance) {
	tb.Helper()
	backends := make(map[string]*Backend, len(names))
	list := make([]discovery.Instance, 0, len(names))
	for _, n := range names {
		b := NewBackend(tb, n)
		backends[n] = b
		env, _, _ := strings.Cut(n, "-")
		list = append(list, b.Instance(env))
	}
	return backends, list
}
