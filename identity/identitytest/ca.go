// Package identitytest makes a throwaway SPIFFE certificate authority for
// tests and examples: it issues X.509 SVIDs and writes them, with the
// trust bundle, as the PEM files identity.FileSource reads.
package identitytest

import (
	"cmp"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// CA is a certificate authority for one trust domain.
type CA struct {
	TrustDomain spiffeid.TrustDomain
	// SVIDTTL is how long the SVIDs issued from now on are valid; zero
	// means an hour.
	SVIDTTL time.Duration
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
}

// NewCA makes a CA for the trust domain td (as "example.org").
func NewCA(td string) (*CA, error) {
	t, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "lightmesh test CA " + td},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{t.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{TrustDomain: t, cert: cert, key: key}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}

// BundlePEM returns the CA certificate as PEM.
func (ca *CA) BundlePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// Issue returns a new SVID for the path (as "/front") in PEM: certificate
// and PKCS#8 key. Every call makes a new key and serial number.
func (ca *CA) Issue(path string) (certPEM, keyPEM []byte, err error) {
	id, err := spiffeid.FromPath(ca.TrustDomain, path)
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(cmp.Or(ca.SVIDTTL, time.Hour)),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{id.URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// Paths are the files WriteFiles writes in a directory.
type Paths struct{ Cert, Key, Bundle string }

// WriteFiles issues an SVID for path and writes svid.pem, svid_key.pem and
// bundle.pem in dir, each by an atomic rename, key before certificate.
// extraBundle PEM, if given, is appended to the bundle (to trust a next
// CA during its rollover).
func (ca *CA) WriteFiles(dir, path string, extraBundle ...[]byte) (Paths, error) {
	p := Paths{Cert: filepath.Join(dir, "svid.pem"), Key: filepath.Join(dir, "svid_key.pem"), Bundle: filepath.Join(dir, "bundle.pem")}
	c, k, err := ca.Issue(path)
	if err != nil {
		return p, err
	}
	b := ca.BundlePEM()
	for _, e := range extraBundle {
		b = append(b, e...)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{p.Bundle, b}, {p.Key, k}, {p.Cert, c}} {
		tmp := f.name + ".tmp"
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			return p, err
		}
		if err := os.Rename(tmp, f.name); err != nil {
			return p, fmt.Errorf("identitytest: %w", err)
		}
	}
	return p, nil
}
