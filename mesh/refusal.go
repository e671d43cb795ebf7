package mesh

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/felixge/httpsnoop"

	"github.com/lightmesh/lightmesh/internal/engine"
)

// Refusal describes a request the mesh answered itself instead of passing
// it to the service's handler: today an inbound rate limit
// (WithLocalService's inbound routes), with the reason, the route that
// refused it and how long the caller should wait. A service that answers
// errors in an envelope of its own gives WithRefusalWriter (HTTP) and
// meshgrpc.WithRefusalStatus (gRPC) a function that turns a Refusal into
// that envelope. Refusal.HTTPStatus is the status the mesh answers with
// by default.
type Refusal = engine.Refusal

// WithRefusalWriter makes mesh.Handler call write for every request it
// answers itself (see Refusal), instead of answering with the default
// plain-text body ("lightmesh: rate limited", with the status
// Refusal.HTTPStatus).
// Before write is called the response already carries a Retry-After
// header (whole seconds, at least 1); write sets the status and the body
// (a JSON error envelope, say) and may change the headers. A write that
// writes the body without calling WriteHeader, or writes nothing, answers
// with Refusal.HTTPStatus, not 200: a refusal never reads as success. A
// write that panics before writing anything is logged as an error and
// the default answer goes out. The request's lane, trace context and
// request id have not been read yet when the mesh refuses it: read them
// from r.Header if the envelope needs them. A nil write keeps the
// default.
func WithRefusalWriter(write func(w http.ResponseWriter, r *http.Request, refusal Refusal)) Option {
	return optionFunc(func(c *config) { c.refusalWriter = write })
}

// writeRefusal calls the refusal writer and reports whether it returned;
// a panic, which net/http would turn into a dropped connection without
// Retry-After, is logged as an error instead (http.ErrAbortHandler is
// passed on: it asks for exactly that).
func (m *Mesh) writeRefusal(w http.ResponseWriter, r *http.Request, rf Refusal) (ok bool) {
	defer func() {
		if !ok {
			p := recover()
			if p == http.ErrAbortHandler {
				panic(p)
			}
			m.cfg.logger.Error("lightmesh: the refusal writer (WithRefusalWriter) panicked; answering with the default refusal",
				"service", rf.Service, "route", rf.Route, "panic", p)
		}
	}()
	m.cfg.refusalWriter(w, r, rf)
	return true
}

// refuse answers r, which the engine refused with err, with a
// Retry-After header and the service's refusal writer or the default
// plain-text body.
func (m *Mesh) refuse(w http.ResponseWriter, r *http.Request, err error, wait time.Duration) {
	retryAfter := strconv.Itoa(retryAfterSeconds(wait))
	w.Header().Set("Retry-After", retryAfter)
	rf := engine.NewRefusal(err, wait)
	if m.cfg.refusalWriter != nil {
		status := rf.HTTPStatus()
		wrote := false
		sw := httpsnoop.Wrap(w, httpsnoop.Hooks{
			WriteHeader: func(next httpsnoop.WriteHeaderFunc) httpsnoop.WriteHeaderFunc {
				return func(c int) { wrote = true; next(c) }
			},
			Write: func(next httpsnoop.WriteFunc) httpsnoop.WriteFunc {
				return func(b []byte) (int, error) {
					if !wrote {
						wrote = true
						w.WriteHeader(status)
					}
					return next(b)
				}
			},
			ReadFrom: func(next httpsnoop.ReadFromFunc) httpsnoop.ReadFromFunc {
				return func(src io.Reader) (int64, error) {
					if !wrote {
						wrote = true
						w.WriteHeader(status)
					}
					return next(src)
				}
			},
			Hijack: func(next httpsnoop.HijackFunc) httpsnoop.HijackFunc {
				return func() (net.Conn, *bufio.ReadWriter, error) { wrote = true; return next() }
			},
		})
		if m.writeRefusal(sw, r, rf) || wrote {
			if !wrote {
				w.WriteHeader(status)
			}
			return
		}
		w.Header().Set("Retry-After", retryAfter) // the writer may have changed it before it panicked
	}
	http.Error(w, "lightmesh: "+strings.ReplaceAll(rf.Reason, "_", " "), rf.HTTPStatus())
}
