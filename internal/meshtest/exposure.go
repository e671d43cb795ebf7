package meshtest

import (
	"encoding/json"
	"html"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Exposure gathers everything a run shows an operator or a log pipeline,
// by where it came from, so a test can search it for secrets.
type Exposure map[string]string

// Add appends s to what was gathered from where.
func (e Exposure) Add(where, s string) { e[where] += s + "\n" }

// AddErr adds err's text, when err is not nil.
func (e Exposure) AddErr(where string, err error) {
	if err != nil {
		e.Add(where, err.Error())
	}
}

// AddStatus gathers a mesh's views for ops: its status (Mesh.Status,
// encoded as JSON), what its status handler serves — JSON, the HTML page
// and the explain view of service — and the metrics reg serves. name
// tells meshes apart.
func (e Exposure) AddStatus(tb testing.TB, name string, status any, statusHandler http.Handler, reg prometheus.Gatherer, service string) {
	tb.Helper()
	js, err := json.Marshal(status)
	if err != nil {
		tb.Fatal(err)
	}
	e.Add(name+" Status()", string(js))
	get := func(h http.Handler, target string) string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		if rec.Code != http.StatusOK {
			tb.Fatalf("%s %s: status %d: %s", name, target, rec.Code, rec.Body)
		}
		return rec.Body.String()
	}
	e.Add(name+" status handler", get(statusHandler, "/lightmesh/status"))
	e.Add(name+" status page", get(statusHandler, "/lightmesh/status?format=html"))
	e.Add(name+" explain", get(statusHandler, "/lightmesh/status?explain&service="+url.QueryEscape(service)+"&header=x-env:staging"))
	e.Add(name+" metrics", get(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), "/metrics"))
}

// AddFiles gathers the content of every file under dir and returns how
// many there were.
func (e Exposure) AddFiles(tb testing.TB, dir string) (n int) {
	tb.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		e.Add("file "+path, string(data))
		n++
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// SecretForms returns secret as it is and as the encoders that log lines
// and pages pass it through would write it: JSON, Go quoting (slog's text
// handler), HTML, URL query and path.
func SecretForms(secret string) []string {
	js, _ := json.Marshal(secret)
	return []string{secret, strings.Trim(string(js), `"`), strings.Trim(strconv.Quote(secret), `"`),
		html.EscapeString(secret), url.QueryEscape(secret), url.PathEscape(secret)}
}

// Leaks returns where any form of any of secrets shows.
func (e Exposure) Leaks(secrets ...string) []string {
	var out []string
	for where, s := range e {
		if slices.ContainsFunc(secrets, func(secret string) bool {
			return slices.ContainsFunc(SecretForms(secret), func(f string) bool { return strings.Contains(s, f) })
		}) {
			out = append(out, where)
		}
	}
	slices.Sort(out)
	return out
}

// Check fails tb when a secret shows anywhere.
func (e Exposure) Check(tb testing.TB, secrets ...string) {
	tb.Helper()
	for _, where := range e.Leaks(secrets...) {
		tb.Errorf("a secret shows in %s:\n%s", where, e[where])
	}
}
