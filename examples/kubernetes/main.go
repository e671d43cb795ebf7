// Kubernetes is a service as it runs in a pod (see configmap.yaml and
// deployment.yaml beside this file):
//
//   - its rules come from a ConfigMap mounted as a directory; kubelet
//     updates it by writing a new directory and swapping the ..data
//     symlink, and the file source follows the swap;
//
//   - the last good rules are kept in a snapshot on a volume
//     (WithSnapshotDir), so a restart while the ConfigMap is missing or
//     broken starts from them;
//
//   - the admin port answers liveness (/healthz) at once and readiness
//     (/readyz) only once New has returned with its first rules, so the
//     pod gets no traffic before it can route; the status page is behind
//     a bearer token;
//
//   - on SIGTERM it turns unready, keeps serving for -unready-delay so
//     the endpoints controller takes the pod out of the Service first,
//     then drains, then closes the mesh.
//
//     go run ./examples/kubernetes -rules examples/kubernetes/rules.yaml -snapshots /tmp/lm-snap
package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// Config is what the pod gives the program: flags for the paths and
// ports, an environment variable (from a Secret) for the admin token.
type Config struct {
	Rules     string // the rules file in the ConfigMap's mount
	Snapshots string // a directory on a volume (emptyDir survives restarts of the container)
	Admin     string // admin listen address: probes and status page
	Addr      string // the service's own listen address
	Token     string // bearer token for the status page; empty: status page off
	// StartTimeout bounds how long New waits for the first rules.
	StartTimeout time.Duration
	// UnreadyDelay is how long the service keeps accepting requests
	// after SIGTERM turned readiness off: the endpoints controller
	// learns of it only at the next failed probe, and until then it
	// keeps sending requests, which a closed port would refuse. Zero:
	// no wait (tests).
	UnreadyDelay time.Duration
}

func main() {
	var c Config
	flag.StringVar(&c.Rules, "rules", "/etc/lightmesh/rules.yaml", "the rules file (a ConfigMap key)")
	flag.StringVar(&c.Snapshots, "snapshots", "/var/cache/lightmesh", "where the last good rules are kept")
	flag.StringVar(&c.Admin, "admin", ":9901", "admin address: /healthz, /readyz, /lightmesh/status")
	flag.StringVar(&c.Addr, "addr", ":8080", "the service's address")
	flag.DurationVar(&c.StartTimeout, "start-timeout", 30*time.Second, "how long to wait for the first rules")
	flag.DurationVar(&c.UnreadyDelay, "unready-delay", 5*time.Second, "how long to keep serving after SIGTERM turned readiness off (longer than the readiness probe's period × failureThreshold)")
	flag.Parse()
	c.Token = os.Getenv("LIGHTMESH_ADMIN_TOKEN")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, c, slog.Default(), nil); err != nil {
		log.Fatal(err)
	}
}

// Run serves the admin port at once and the service once the mesh has
// its rules, until ctx ends; then it shuts down in order. listening, when
// not nil, is told the admin address as soon as it listens and the
// service address once it serves.
func Run(ctx context.Context, c Config, logger *slog.Logger, listening func(admin, app string)) error {
	var ready atomic.Bool
	var mp atomic.Pointer[mesh.Mesh]
	admin := http.NewServeMux()
	admin.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	admin.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "waiting for the first rules", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	admin.Handle("/lightmesh/status", bearer(c.Token, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := mp.Load()
		if m == nil {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		m.StatusHandler().ServeHTTP(w, r)
	})))
	adminLn, err := net.Listen("tcp", c.Admin)
	if err != nil {
		return err
	}
	adminSrv := &http.Server{Handler: admin, ReadHeaderTimeout: 5 * time.Second}
	go adminSrv.Serve(adminLn)
	defer adminSrv.Close()
	if listening != nil {
		listening(adminLn.Addr().String(), "")
	}

	// New waits for the first rules (or the snapshot, at the start
	// timeout); meanwhile /healthz says alive and /readyz not ready.
	m, err := mesh.New(ctx,
		mesh.WithRules(rules.NewFile(c.Rules, 0)),
		mesh.WithSnapshotDir(c.Snapshots),
		mesh.WithStartTimeout(c.StartTimeout),
		mesh.WithLogger(logger),
	)
	if err != nil {
		return err
	}
	mp.Store(m)

	app := http.NewServeMux()
	app.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "hello") })
	appLn, err := net.Listen("tcp", c.Addr)
	if err != nil {
		m.Close()
		return err
	}
	appSrv := &http.Server{Handler: m.Handler(app), ReadHeaderTimeout: 5 * time.Second}
	go appSrv.Serve(appLn)
	ready.Store(true)
	if listening != nil {
		listening(adminLn.Addr().String(), appLn.Addr().String())
	}

	<-ctx.Done()
	// Shutdown order: unready first, and keep serving until the
	// endpoints controller has seen it and stopped sending traffic; then
	// drain the service, then close the mesh (calls in flight still need
	// it), the admin port last.
	ready.Store(false)
	time.Sleep(c.UnreadyDelay)
	drain, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = appSrv.Shutdown(drain)
	return errors.Join(err, m.Close())
}

// bearer serves h only to requests with "Authorization: Bearer <token>";
// with an empty token, to none.
func bearer(token string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("Authorization")
		if token == "" || subtle.ConstantTimeCompare([]byte(got), []byte("Bearer "+token)) != 1 {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
