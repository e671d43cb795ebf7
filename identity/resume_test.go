package identity_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/identity/identitytest"
)

// A server checks every new connection's client certificate against the
// bundle in force: after the trust bundle drops a CA, a caller whose
// certificate that CA signed is refused even when it resumes a TLS
// session from before the rotation (a resumed handshake carries the old
// certificate without verifying it again).
func TestServerRefusesResumedSessionAfterBundleRotation(t *testing.T) {
	ca1 := newCA(t)
	ca2, err := identitytest.NewCA("example.org")
	if err != nil {
		t.Fatal(err)
	}
	api, apiDir := workload(t, ca1, "/api")
	front, _ := workload(t, ca1, "/front")
	addr, hits := serve(t, api, identity.Strict, echoCaller)

	cfg := identity.ClientTLSConfig(front, spiffeid.RequireFromString("spiffe://example.org/api"))
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
	for i := 0; i < 2; i++ { // the second connection can resume the first's session
		if code, body, err := get(t, c, "https://"+addr+"/"); err != nil || code != 200 || body != "spiffe://example.org/front" {
			t.Fatalf("before the rotation: %d %q %v", code, body, err)
		}
	}

	// api's CA rolls over and the old CA is dropped from its bundle.
	if _, err := ca2.WriteFiles(apiDir, "/api"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "api never loaded the new bundle", func() bool {
		b, err := api.GetX509BundleForTrustDomain(ca2.TrustDomain)
		return err == nil && b.HasX509Authority(mustParseCert(t, ca2.BundlePEM()))
	})
	before := hits.Load()
	code, body, err := get(t, c, "https://"+addr+"/")
	if err == nil && code == 200 {
		t.Fatalf("a caller whose CA api no longer trusts was served (%q) on a resumed session", body)
	}
	if n := hits.Load() - before; n != 0 {
		t.Fatalf("%d requests reached the handler; want 0", n)
	}
}

func mustParseCert(t *testing.T, pemBytes []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(pemBytes)
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
