package mesh

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/engine"
	"github.com/lightmesh/lightmesh/router"
)

// StatusHandler returns an http.Handler that serves the mesh's Status for
// ops: the rules in force and their source, the last rejected document
// and why, the rule watcher's state, each service's subsets and
// instances, and every circuit breaker with its state and open-until
// time.
//
// The mesh serves nothing by itself: mount the handler on an admin port,
// not on the public one, e.g.
//
//	mux.Handle("/lightmesh/status", m.StatusHandler())
//
// The handler answers GET and HEAD (anything else gets 405 Method Not
// Allowed). It serves indented JSON (the Status type's encoding) by
// default, and one small HTML page, without scripts, when the query has
// format=html or the Accept header ranks text/html above
// application/json, as browsers do; format=json forces JSON and any
// other format is a 400. Responses are never cached.
//
// Credentials never appear in the output: URL userinfo and the values of
// password, secret, token, access-key and API-key parameters in the
// rule source's name, the watcher's last error and the last rejection's
// error are replaced by REDACTED, even though rule sources are expected
// not to name them in the first place.
//
// With an explain parameter it serves the explain view instead: the
// decision a call would get now (Mesh.Explain), as JSON or HTML like the
// status, for the call the query describes:
//
//	/lightmesh/status?explain&service=user-api&header=x-env:staging&path=/v1/users&method=GET
//	/lightmesh/status?explain&service=echo&grpc=/pkg.Echo/Call&header=x-env:staging
//
// header may repeat; a missing service or a header without a colon is a
// 400. Nothing is sent and no breaker, limit or budget is touched.
//
// The handler may be called concurrently; each request reads a fresh
// Status.
func (m *Mesh) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "lightmesh: status: method not allowed", http.StatusMethodNotAllowed)
			return
		}
		asHTML, ok := wantsHTML(r)
		if !ok {
			http.Error(w, "lightmesh: status: format must be json or html", http.StatusBadRequest)
			return
		}
		h.Add("Vary", "Accept")
		var view any
		page := statusPage
		if r.URL.Query().Has("explain") {
			req, err := explainRequest(r.URL.Query())
			if err != nil {
				http.Error(w, "lightmesh: status: explain: "+err.Error(), http.StatusBadRequest)
				return
			}
			e := m.Explain(req)
			e.Source = redact(e.Source)
			view, page = explainView{Explanation: e, Request: req, Now: time.Now()}, explainPage
			if !asHTML {
				view = e
			}
		} else {
			st := redactStatus(m.Status())
			view = statusView{Status: st, Now: time.Now()}
			if !asHTML {
				view = st
			}
		}
		var body bytes.Buffer
		if asHTML {
			err := page.Execute(&body, view)
			if err != nil {
				m.cfg.logger.Error("lightmesh: status page failed", "err", err)
				http.Error(w, "lightmesh: status: rendering failed", http.StatusInternalServerError)
				return
			}
			h.Set("Content-Type", "text/html; charset=utf-8")
			h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
		} else {
			enc := json.NewEncoder(&body)
			enc.SetIndent("", "  ")
			if err := enc.Encode(view); err != nil {
				m.cfg.logger.Error("lightmesh: status encoding failed", "err", err)
				http.Error(w, "lightmesh: status: encoding failed", http.StatusInternalServerError)
				return
			}
			h.Set("Content-Type", "application/json")
		}
		h.Set("Content-Length", strconv.Itoa(body.Len()))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			w.Write(body.Bytes())
		}
	})
}

// wantsHTML reports whether r asks for the HTML page; ok is false for an
// unknown format parameter.
func wantsHTML(r *http.Request) (html, ok bool) {
	switch r.URL.Query().Get("format") {
	case "html":
		return true, true
	case "json":
		return false, true
	case "":
	default:
		return false, false
	}
	accept := r.Header.Values("Accept")
	if len(accept) == 0 {
		return false, true
	}
	return acceptQuality(accept, "text", "html") > acceptQuality(accept, "application", "json"), true
}

// acceptQuality returns the q-value the Accept header values give
// typ/sub, taken from the most specific range that matches it (RFC 9110
// section 12.5.1); 0 when none does.
func acceptQuality(header []string, typ, sub string) float64 {
	best, q := -1, 0.0
	for _, v := range header {
		for part := range strings.SplitSeq(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			t, s, _ := strings.Cut(mt, "/")
			spec := 0
			switch {
			case t == typ && s == sub:
				spec = 2
			case t == typ && s == "*":
				spec = 1
			case t == "*" && s == "*":
			default:
				continue
			}
			if spec <= best {
				continue
			}
			pq := 1.0
			if qs, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(qs, 64); err == nil && f >= 0 && f <= 1 {
					pq = f
				}
			}
			best, q = spec, pq
		}
	}
	return q
}

//go:embed status.html
var statusHTML string

//go:embed explain.html
var explainHTML string

// pageStyle defines the "style" template both pages share.
//
//go:embed page_style.html
var pageStyle string

var (
	statusPage  = template.Must(template.Must(template.New("status").Funcs(pageFuncs).Parse(statusHTML)).Parse(pageStyle))
	explainPage = template.Must(template.Must(template.New("explain").Funcs(pageFuncs).Parse(explainHTML)).Parse(pageStyle))
)

var pageFuncs = template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05.000 UTC")
	},
	"connView": func(now time.Time, w WatcherStatus) connView { return connView{Now: now, W: w} },
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return ""
		}
		d := now.Sub(t)
		if d >= 0 {
			return roundAge(d).String() + " ago"
		}
		return "in " + roundAge(-d).String()
	},
	"badge": func(state string) string {
		switch state {
		case "closed":
			return "b-ok"
		case "open":
			return "b-open"
		case "half-open":
			return "b-half"
		}
		return "b-other"
	},
	"docBadge": func(state string) string {
		switch state {
		case DocumentApplied:
			return "b-ok"
		case DocumentRejected, DocumentDeleted:
			return "b-open"
		case DocumentMissing:
			return "b-other"
		}
		return "b-half"
	},
	"deref": func(f *float64) float64 { return *f },
	"pct":   func(f float64) string { return strconv.FormatFloat(f*100, 'f', 0, 64) + "%" },
}

// roundAge rounds d for display: to the millisecond under a second, then
// to the second.
func roundAge(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}

type statusView struct {
	Status Status
	Now    time.Time
}

// connView is one watcher's status with the time the page was made.
type connView struct {
	Now time.Time
	W   WatcherStatus
}

type explainView struct {
	*Explanation
	Request ExplainRequest
	Now     time.Time
}

// explainRequest reads the call the explain view describes from q.
func explainRequest(q url.Values) (ExplainRequest, error) {
	req := ExplainRequest{Service: q.Get("service"), Method: q.Get("method"), Path: q.Get("path"), GRPCMethod: q.Get("grpc"), Header: http.Header{}}
	if req.Service == "" {
		return req, errors.New("service= is required (the logical name called)")
	}
	for _, kv := range q["header"] {
		if kv == "" {
			continue // an empty field of the status page's form
		}
		k, v, ok := strings.Cut(kv, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return req, fmt.Errorf("header=%q: want name:value", kv)
		}
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if req.Path == "" {
		req.Path = "/"
	}
	return req, nil
}

// redactStatus returns st with credentials removed from its free-text
// fields. st is a copy from Mesh.Status, so its LastRejection may be
// changed in place.
func redactStatus(st Status) Status {
	st.Rules.Source = redact(st.Rules.Source)
	st.Watcher.LastError = redact(st.Watcher.LastError)
	if st.Discovery != nil {
		d := *st.Discovery
		d.LastError = redact(d.LastError)
		st.Discovery = &d
	}
	if st.LastRejection != nil {
		st.LastRejection.Error = redact(st.LastRejection.Error)
	}
	for i := range st.Documents {
		d := &st.Documents[i]
		d.Source = redact(d.Source)
		if d.LastRejection != nil {
			d.LastRejection.Error = redact(d.LastRejection.Error)
		}
	}
	return st
}

const redacted = "REDACTED"

var (
	// urlUserinfo matches the userinfo of a URL with a scheme, up to the
	// last @ before the path.
	urlUserinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s]+@`)
	// dsnUserinfo matches user:password@ without a scheme, as in Go SQL
	// DSNs (user:pass@tcp(host)/db).
	dsnUserinfo = regexp.MustCompile(`(^|[\s"'(=,;])[^\s:/@"'()]+:[^\s/"']+@`)
	// keyValue matches key=value and key="value", as in query strings and
	// logfmt; group 1 is the key, group 2 or 3 the value.
	keyValue = regexp.MustCompile(`([A-Za-z0-9_.\-]+)[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)+)"|([^\s&;,"']+))`)
	// jsonMember matches "key": "value"; group 1 is the key, group 2 the
	// value.
	jsonMember = regexp.MustCompile(`"([A-Za-z0-9_.\-]+)"\s*:\s*"((?:[^"\\]|\\.)+)"`)
	// authScheme matches bearer tokens and the credentials of a Basic
	// Authorization header; group 1 is what precedes them.
	authScheme = regexp.MustCompile(`(?i)\b(bearer|authorization:\s*basic)\s+[A-Za-z0-9._~+/\-]+=*`)
)

// secretSuffixes are the endings, after lower-casing and dropping '-',
// '_' and '.', of the keys whose values redact hides.
var secretSuffixes = []string{
	"password", "passwd", "pwd", "secret", "secretkey", "accesskey", "token",
	"apikey", "credential", "credentials", "privatekey", "signature", "sig",
	"authorization",
}

// redact replaces credentials in s with REDACTED: URL userinfo
// (scheme://user:password@host), user:password@ in DSNs, the values of
// key=value and "key": "value" pairs whose key looks like a password,
// secret, token, access key or API key, bearer tokens and Basic
// Authorization credentials. Everything else is kept, line breaks
// included. It errs on the side of hiding too much, with one exception:
// unquoted "key: value" is left alone, because rule errors name fields
// that way (headers.authorization: must set ...).
func redact(s string) string {
	if s == "" {
		return s
	}
	s = urlUserinfo.ReplaceAllString(s, "${1}"+redacted+"@")
	s = dsnUserinfo.ReplaceAllString(s, "${1}"+redacted+"@")
	s = replaceSecretValues(s, keyValue)
	s = replaceSecretValues(s, jsonMember)
	return authScheme.ReplaceAllString(s, "${1} "+redacted)
}

// replaceSecretValues replaces the value of each match of re with
// REDACTED when its key is a secret-looking one. Group 1 of re is the key;
// the first later group that matched is the value.
func replaceSecretValues(s string, re *regexp.Regexp) string {
	matches := re.FindAllStringSubmatchIndex(s, -1)
	if matches == nil {
		return s
	}
	var b strings.Builder
	last, changed := 0, false
	for _, m := range matches {
		if !secretKey(s[m[2]:m[3]]) {
			continue
		}
		start, end := -1, -1
		for g := 4; g+1 < len(m); g += 2 {
			if m[g] >= 0 {
				start, end = m[g], m[g+1]
				break
			}
		}
		if start < 0 || s[start:end] == redacted {
			continue
		}
		b.WriteString(s[last:start])
		b.WriteString(redacted)
		last, changed = end, true
	}
	if !changed {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

func secretKey(key string) bool {
	k := strings.Map(func(r rune) rune {
		switch r {
		case '-', '_', '.':
			return -1
		}
		return r
	}, strings.ToLower(key))
	for _, suf := range secretSuffixes {
		if strings.HasSuffix(k, suf) {
			return true
		}
	}
	return false
}

// Status is what the mesh is running, for ops: see Mesh.Status.
type Status struct {
	Rules         RulesStatus `json:"rules"`
	LastRejection *Rejection  `json:"lastRejection,omitempty"`
	// Documents lists, in a per-service layout (WithRuleCatalog), every
	// document the mesh watches, by name.
	Documents []DocumentStatus `json:"documents,omitempty"`
	// Watcher is the rule source's connection (waiting, without one).
	Watcher WatcherStatus `json:"watcher"`
	// Discovery is the discovery source's connection, over all its
	// service watches; nil without WithDiscovery.
	Discovery *WatcherStatus `json:"discovery,omitempty"`
	// Services lists every known service with its subsets and instances.
	Services []ServiceStatus `json:"services,omitempty"`
	// Breakers lists every circuit breaker: per service, then per
	// instance, sorted.
	Breakers []BreakerStatus `json:"breakers,omitempty"`
	// Snapshot describes the local snapshot writer; nil without
	// WithSnapshotDir.
	Snapshot *SnapshotStatus `json:"snapshot,omitempty"`
}

// SnapshotStatus describes the writes of the local snapshot.
type SnapshotStatus struct {
	Dir string `json:"dir"`
	// Writes counts the files written (rules and instance lists); bursts
	// of changes are gathered into one write per file.
	Writes    int       `json:"writes"`
	LastWrite time.Time `json:"lastWrite,omitzero"`
	LastError string    `json:"lastError,omitempty"`
}

// ServiceStatus describes one service's routable instances.
type ServiceStatus struct {
	Name string `json:"name"`
	// Instances are the addresses of the service's healthy instances.
	Instances []string `json:"instances"`
	// Subsets maps each subset named by the rules to its instances.
	Subsets []SubsetStatus `json:"subsets,omitempty"`
}

// SubsetStatus lists the instances one subset selects.
type SubsetStatus struct {
	Name      string   `json:"name"`
	Instances []string `json:"instances"`
}

// BreakerStatus describes one circuit breaker.
type BreakerStatus struct {
	Service string `json:"service"`
	// Instance is the instance address for an outlier-detection breaker,
	// empty for the service's breaker.
	Instance  string    `json:"instance,omitempty"`
	State     string    `json:"state"`
	OpenUntil time.Time `json:"openUntil,omitzero"`
	// Trips counts consecutive trips; each makes the open period longer.
	Trips int `json:"trips,omitempty"`
}

// RulesStatus describes the rules in force.
type RulesStatus struct {
	Source    string    `json:"source,omitempty"`
	Version   string    `json:"version,omitempty"`
	AppliedAt time.Time `json:"appliedAt,omitzero"`
	// State is the state of the rule document of WithRules (DocumentApplied,
	// DocumentRejected, ...: the states a DocumentStatus has); empty with
	// WithRuleCatalog, whose documents each have theirs in
	// Status.Documents.
	State string `json:"state,omitempty"`
	// FromSnapshot is true while the rules in force came from the local
	// snapshot because the source was unreachable at startup (with
	// WithRuleCatalog: while any document in force did).
	// With WithRuleCatalog, Version is the last document applied, as
	// name@version.
	FromSnapshot bool `json:"fromSnapshot,omitempty"`
}

// Rejection describes the last rule document that failed validation.
type Rejection struct {
	Version string    `json:"version"`
	Error   string    `json:"error"`
	At      time.Time `json:"at"`
}

// Status returns a copy of the mesh's current status.
func (m *Mesh) Status() Status {
	m.mu.Lock()
	st := m.status
	if st.LastRejection != nil {
		r := *st.LastRejection
		st.LastRejection = &r
	}
	m.mu.Unlock()
	st.Watcher = m.rulesConn.status()
	if m.cfg.discovery != nil {
		d := m.discoveryConn.status()
		st.Discovery = &d
	}
	if m.saver != nil {
		ss := m.saver.status()
		ss.Dir = m.cfg.snapshotDir
		st.Snapshot = &ss
	}
	snap := m.eng.Load()
	if m.cat != nil {
		docs := m.documentStatuses(snap.Table().Rules())
		st.Rules.FromSnapshot = slices.ContainsFunc(docs, func(d DocumentStatus) bool { return d.FromSnapshot })
		if m.whole {
			st.Rules.State = docs[0].State
		} else {
			st.Documents = docs
		}
	}
	st.Services = serviceStatuses(snap.Table())
	st.Breakers = breakerStatuses(snap)
	return st
}

func serviceStatuses(t *router.Table) []ServiceStatus {
	addrs := func(list []discovery.Instance) []string {
		out := make([]string, len(list))
		for i := range list {
			out[i] = list[i].Address
		}
		return out
	}
	var out []ServiceStatus
	for _, name := range t.Services() {
		ss := ServiceStatus{Name: name, Instances: addrs(t.Instances(name, ""))}
		for _, sub := range t.Subsets(name) {
			ss.Subsets = append(ss.Subsets, SubsetStatus{Name: sub, Instances: addrs(t.Instances(name, sub))})
		}
		out = append(out, ss)
	}
	return out
}

func breakerStatuses(snap *engine.State) []BreakerStatus {
	var out []BreakerStatus
	for _, b := range snap.Breakers() {
		out = append(out, BreakerStatus{Service: b.Service, Instance: b.Instance, State: b.Breaker.State().String(),
			OpenUntil: b.Breaker.OpenUntil(), Trips: b.Breaker.Trips()})
	}
	return out
}

// LastRejection returns the error of the last rule document rejected, or
// nil when none was. A later valid document does not clear it.
func (m *Mesh) LastRejection() error {
	st := m.Status()
	if st.LastRejection == nil {
		return nil
	}
	return errors.New(st.LastRejection.Error)
}
