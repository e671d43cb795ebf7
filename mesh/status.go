package mesh

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"html/template"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// StatusHandler returns an http.Handler that serves the mesh's Status for
// ops: the rules in force and their source, the last rejected document
// and why, the rule watcher's state, each service's route table with the
// shares in force, its instances with labels, weight and state, the
// defaults it takes and its traffic per subset, and every circuit breaker
// with its state and open-until time.
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
	"instBadge": func(state string) string {
		switch state {
		case InstanceServing:
			return "b-ok"
		case InstanceEjected:
			return "b-open"
		}
		return "b-half"
	},
	"rate":  func(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) },
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
