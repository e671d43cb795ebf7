package mesh_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/rules"
)

// twoMistakes is a rule document with two problems the validator reports
// together.
const twoMistakes = `apiVersion: lightmesh/v1
services:
  user-api:
    subsets:
      base: {labels: {env: base}}
    routes:
      - destinations: [{subset: bsae}]
    timeout: -2s
`

func writeRules(t *testing.T, doc string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLoudByDefault: without WithLogger a rejected rule document is
// logged through slog.Default, with every problem, and the log does not
// claim that last good rules keep serving when there are none.
func TestLoudByDefault(t *testing.T) {
	logs := meshtest.CaptureDefaultLog(t)
	path := writeRules(t, twoMistakes)
	_, err := mesh.New(context.Background(), mesh.WithRules(rules.NewFile(path, 0)), mesh.WithStartTimeout(3*time.Second))
	if err == nil {
		t.Fatal("New accepted a broken document")
	}
	out := logs.String()
	for _, want := range []string{"level=ERROR", "rejected", path, "services.user-api.timeout", "bsae"} {
		if !strings.Contains(out, want) {
			t.Errorf("default log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "last good rules keep serving") {
		t.Errorf("default log claims last good rules keep serving with none applied:\n%s", out)
	}
}

// TestStartErrorGivesTheReason: New returns why it has no rules whichever
// ends first, the caller's context or the start timeout, and it returns
// as soon as the only document was rejected rather than waiting out the
// start timeout.
func TestStartErrorGivesTheReason(t *testing.T) {
	t.Run("rejected document fails at once", func(t *testing.T) {
		path := writeRules(t, twoMistakes)
		start := time.Now()
		_, err := mesh.New(context.Background(), mesh.WithRules(rules.NewFile(path, 0)), mesh.WithStartTimeout(20*time.Second),
			mesh.WithLogger(slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))))
		if err == nil || !strings.Contains(err.Error(), "no valid rules from file:"+path) || !strings.Contains(err.Error(), "services.user-api.timeout") {
			t.Fatalf("err = %v", err)
		}
		if waited := time.Since(start); waited > 10*time.Second {
			t.Fatalf("New waited %v for a document it had already rejected", waited)
		}
	})
	t.Run("caller's deadline first, document rejected", func(t *testing.T) {
		path := writeRules(t, twoMistakes)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := mesh.New(ctx, mesh.WithRules(rules.NewFile(path, 0)),
			mesh.WithLogger(slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))))
		if err == nil || !strings.Contains(err.Error(), "services.user-api.timeout") {
			t.Fatalf("err = %v, want the rejection's reason", err)
		}
	})
	t.Run("caller's deadline first, source unreachable", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nope.yaml")
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, err := mesh.New(ctx, mesh.WithRules(rules.NewFile(missing, 0)),
			mesh.WithLogger(slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))))
		if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no valid rules from file:"+missing) ||
			!strings.Contains(err.Error(), "no such file") {
			t.Fatalf("err = %v, want the deadline with the reason", err)
		}
	})
}

// TestLastRejectionIsATypedError: LastRejection returns a
// *mesh.RejectionError naming the version, through which errors.As
// reaches the validator's *router.ValidationError and each problem's
// place.
func TestLastRejectionIsATypedError(t *testing.T) {
	_, list := fleet(t)
	src := rules.NewMemory([]byte(laneRules))
	m := newMesh(t, src, discovery.NewStatic(map[string][]discovery.Instance{"user-api": list}))
	if err := m.LastRejection(); err != nil {
		t.Fatalf("LastRejection before any = %v", err)
	}
	src.Set([]byte(twoMistakes))
	meshtest.WaitFor(t, 5*time.Second, "the rejection", func() bool { return m.LastRejection() != nil })
	var rej *mesh.RejectionError
	if !errors.As(m.LastRejection(), &rej) || rej.Version != "2" || rej.Source != "memory" || rej.At.IsZero() {
		t.Fatalf("LastRejection = %#v, want a *mesh.RejectionError for version 2 of memory", m.LastRejection())
	}
	var verr *router.ValidationError
	if !errors.As(m.LastRejection(), &verr) || len(verr.Problems) < 2 || verr.Problems[0].Line == 0 {
		t.Fatalf("the validator's error is not reachable: %v", m.LastRejection())
	}
}
