package identity_test

import (
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/identity/identitytest"
)

// Permissive mode serves plaintext callers, never a TLS caller whose
// certificate does not verify: a client presenting a certificate from
// another CA (of the same or another trust domain) fails the handshake
// instead of being served as a caller without a certificate, and nothing
// reaches the handler.
func TestPermissiveRefusesUntrustedCertificate(t *testing.T) {
	ca := newCA(t)
	api, _ := workload(t, ca, "/api")
	addr, hits := serve(t, api, identity.Permissive, (*identity.Guard)(nil).Handler(echoCaller))
	for _, td := range []string{"example.org", "evil.org"} {
		other, err := identitytest.NewCA(td)
		if err != nil {
			t.Fatal(err)
		}
		_, dir := workload(t, other, "/front")
		cert, err := tls.LoadX509KeyPair(dir+"/svid.pem", dir+"/svid_key.pem")
		if err != nil {
			t.Fatal(err)
		}
		// The client skips its own check of the server: only the
		// server's check of the client is tested.
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, //nolint:gosec // see above
		}}}
		if code, body, err := get(t, c, "https://"+addr+"/orders/1"); err == nil {
			t.Errorf("a client certificate from another %s CA: %d %q; want the handshake refused", td, code, body)
		}
	}
	// The same client without a certificate is a TLS caller without one:
	// refused too (plaintext is what permissive mode serves).
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec
	if code, body, err := get(t, c, "https://"+addr+"/orders/1"); err == nil {
		t.Errorf("TLS without a client certificate: %d %q; want the handshake refused", code, body)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the handler; want 0", n)
	}
}
