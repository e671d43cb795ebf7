package identity_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/identity"
)

// syncBuffer is a log destination the source's goroutine and the test
// share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// When the files stop being renewed, the SVID a FileSource serves
// expires and every peer refuses it; the operator must read that in the
// workload's own log, once, not only in its peers' handshake errors.
func TestFileSourceLogsExpiredSVID(t *testing.T) {
	ca := newCA(t)
	ca.SVIDTTL = 1500 * time.Millisecond
	dir := t.TempDir()
	p, err := ca.WriteFiles(dir, "/api")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	src, err := identity.NewFileSource(context.Background(), identity.Files{
		Cert: p.Cert, Key: p.Key, Bundle: p.Bundle, Interval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	deadline := time.Now().Add(4 * time.Second)
	for !strings.Contains(logs.String(), "expired") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // several more polls: still one line
	out := logs.String()
	if n := strings.Count(out, "expired"); n != 1 {
		t.Fatalf("log after the SVID expired (%d lines about it; want 1):\n%s", n, out)
	}
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "spiffe://example.org/api") || !strings.Contains(out, p.Cert) {
		t.Fatalf("log: %s; want an error naming the SPIFFE ID and the file", out)
	}
}
