package identity

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Source supplies the local workload's X.509 SVID and the trust bundles
// peers are verified against. Implementations are safe for concurrent
// use; each call returns the current material, so a rotation shows at the
// next handshake. *FileSource and the Workload API source of package
// identity/workload are Sources.
type Source interface {
	x509svid.Source
	x509bundle.Source
}

var (
	_ Source = (*FileSource)(nil)
)

// Files names the PEM files a FileSource reads.
type Files struct {
	// Cert is the SVID certificate chain, leaf first.
	Cert string
	// Key is the SVID's private key (PKCS#8).
	Key string
	// Bundle holds the trust domain's CA certificates.
	Bundle string
	// Interval is how often the files are checked for a change; zero
	// means one second.
	Interval time.Duration
	// Logger receives reload failures; nil means slog.Default().
	Logger *slog.Logger
}

type material struct {
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
	raw    [3][]byte
}

// FileSource is a Source read from files on disk and reloaded when their
// content changes. A change that does not load (a half-written file, a
// key that does not match the certificate) is logged and the previous
// material keeps serving until the files are whole again. An SVID that
// expires because the files were not renewed is logged as an error, once.
type FileSource struct {
	files  Files
	logger *slog.Logger
	cur    atomic.Pointer[material]
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// NewFileSource loads the files and watches them until ctx ends or Close
// is called. It fails when the first load fails, naming the file.
func NewFileSource(ctx context.Context, f Files) (*FileSource, error) {
	if f.Interval <= 0 {
		f.Interval = time.Second
	}
	s := &FileSource{files: f, logger: f.Logger, done: make(chan struct{})}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	m, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(m)
	ctx, s.cancel = context.WithCancel(ctx)
	go s.watch(ctx)
	return s, nil
}

func (s *FileSource) load() (*material, error) {
	var raw [3][]byte
	for i, name := range []string{s.files.Cert, s.files.Key, s.files.Bundle} {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("identity: %w", err)
		}
		raw[i] = b
	}
	svid, err := x509svid.Parse(raw[0], raw[1])
	if err != nil {
		return nil, fmt.Errorf("identity: %s with %s: %w", s.files.Cert, s.files.Key, err)
	}
	bundle, err := x509bundle.Parse(svid.ID.TrustDomain(), raw[2])
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w", s.files.Bundle, err)
	}
	if bundle.Empty() {
		return nil, fmt.Errorf("identity: %s: no CA certificate", s.files.Bundle)
	}
	// The SVID must chain to the bundle it comes with; otherwise a
	// certificate written before its new CA would be served and refused.
	if _, _, err := x509svid.Verify(svid.Certificates, bundle); err != nil {
		return nil, fmt.Errorf("identity: %s does not chain to %s: %w", s.files.Cert, s.files.Bundle, err)
	}
	return &material{svid: svid, bundle: bundle, raw: raw}, nil
}

func (s *FileSource) watch(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.files.Interval)
	defer t.Stop()
	var lastErr string
	var warned bool
	var expiredLogged *material // the SVID whose expiry was logged
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		old := s.cur.Load()
		// Peers refuse an expired SVID: say so here, once per SVID, or
		// the only trace is in their handshake errors.
		if leaf := old.svid.Certificates[0]; old != expiredLogged && time.Now().After(leaf.NotAfter) {
			s.logger.Error("identity: the SVID has expired and the files were not renewed; peers refuse it",
				"id", old.svid.ID.String(), "not_after", leaf.NotAfter, "cert", s.files.Cert)
			expiredLogged = old
		}
		same := true
		for i, name := range []string{s.files.Cert, s.files.Key, s.files.Bundle} {
			b, err := os.ReadFile(name)
			if err != nil || !bytes.Equal(b, old.raw[i]) {
				same = false
				break
			}
		}
		if same {
			continue
		}
		m, err := s.load()
		if err != nil {
			// A writer replacing the files one by one leaves them
			// inconsistent for a moment: warn when the same failure is
			// still there at the next poll, once.
			switch msg := err.Error(); {
			case msg != lastErr:
				lastErr, warned = msg, false
			case !warned:
				s.logger.Warn("identity: files changed but do not load; the previous SVID keeps serving", "error", err)
				warned = true
			}
			continue
		}
		lastErr, warned = "", false
		s.cur.Store(m)
		s.logger.Info("identity: SVID reloaded", "id", m.svid.ID.String(), "not_after", m.svid.Certificates[0].NotAfter)
	}
}

// GetX509SVID returns the current SVID.
func (s *FileSource) GetX509SVID() (*x509svid.SVID, error) {
	return s.cur.Load().svid, nil
}

// GetX509BundleForTrustDomain returns the current bundle when td is the
// SVID's trust domain, and an error otherwise.
func (s *FileSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	m := s.cur.Load()
	if m.bundle.TrustDomain() != td {
		return nil, fmt.Errorf("identity: no bundle for trust domain %q (this workload trusts %q)", td, m.bundle.TrustDomain())
	}
	return m.bundle, nil
}

// Close stops watching the files. It is safe to call more than once.
func (s *FileSource) Close() error {
	s.once.Do(func() { s.cancel(); <-s.done })
	return nil
}

// IDFromChains returns the SPIFFE ID of the leaf of a verified peer
// certificate chain, as crypto/tls reports it.
func IDFromChains(certs []*x509.Certificate) (spiffeid.ID, error) {
	if len(certs) == 0 {
		return spiffeid.ID{}, errors.New("identity: no peer certificate")
	}
	return x509svid.IDFromCert(certs[0])
}
