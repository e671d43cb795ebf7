package nacos

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/common/constant"
)

// selfSigned writes a self-signed CA certificate and its key as PEM files
// in dir and returns their paths.
func selfSigned(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return certFile, keyFile
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestTLSClientParam: Config.TLS reaches the SDK's client config, fixed
// against the environment, with https:// for the servers; bad files fail
// at once, naming the problem.
func TestTLSClientParam(t *testing.T) {
	dir := t.TempDir()
	ca, _ := selfSigned(t, dir, "ca")
	cert, key := selfSigned(t, dir, "client")
	_, otherKey := selfSigned(t, dir, "other")
	notPEM := filepath.Join(dir, "not.pem")
	writeFile(t, notPEM, []byte("not a certificate"))

	c := Config{Addresses: []string{"10.0.0.1:8848", "10.0.0.2:8848"}, LogDir: dir, CacheDir: dir, TLS: &TLSConfig{CAFile: ca, CertFile: cert, KeyFile: key}}
	param, _, err := c.clientParam()
	if err != nil {
		t.Fatal(err)
	}
	want := constant.TLSConfig{Appointed: true, Enable: true, CaFile: ca, CertFile: cert, KeyFile: key}
	if param.ClientConfig.TLSCfg != want {
		t.Fatalf("TLSCfg = %+v, want %+v", param.ClientConfig.TLSCfg, want)
	}
	for _, s := range param.ServerConfigs {
		if s.Scheme != "https" {
			t.Fatalf("server %s scheme %q, want https", s.IpAddr, s.Scheme)
		}
	}
	if !strings.Contains(c.String(), " tls}") {
		t.Errorf("String() = %s, want TLS shown", c)
	}

	c.TLS = &TLSConfig{CAFile: ca}
	if param, _, err = c.clientParam(); err != nil || param.ClientConfig.TLSCfg != (constant.TLSConfig{Appointed: true, Enable: true, CaFile: ca}) {
		t.Fatalf("CA only: %v, %+v", err, param.ClientConfig.TLSCfg)
	}
	// Without TLS: plaintext, appointed, so the SDK's environment cannot
	// turn TLS on with TrustAll.
	c.TLS = nil
	if param, _, err = c.clientParam(); err != nil || param.ClientConfig.TLSCfg != (constant.TLSConfig{Appointed: true}) || param.ServerConfigs[0].Scheme != "" {
		t.Fatalf("without TLS: %v, %+v, scheme %q", err, param.ClientConfig.TLSCfg, param.ServerConfigs[0].Scheme)
	}

	for _, tc := range []struct {
		tls  TLSConfig
		want string
	}{
		{TLSConfig{}, "needs a CA file"},
		{TLSConfig{CAFile: filepath.Join(dir, "missing.pem")}, "no such file"},
		{TLSConfig{CAFile: notPEM}, "no PEM certificate"},
		{TLSConfig{CAFile: ca, CertFile: cert}, "both CertFile and KeyFile"},
		{TLSConfig{CAFile: ca, CertFile: cert, KeyFile: otherKey}, "private key does not match"},
	} {
		c.TLS = &tc.tls
		if _, _, err := c.clientParam(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("TLS %+v: %v, want an error containing %q", tc.tls, err, tc.want)
		}
	}
}

// loginServer is an HTTPS server imitating Nacos's login endpoint; it
// records the logins it receives.
type loginServer struct {
	*httptest.Server
	mu     sync.Mutex
	logins []string // user:password of each login, all over TLS
}

func newLoginServer(t *testing.T) *loginServer {
	t.Helper()
	ls := &loginServer{}
	ls.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/nacos/v1/auth/users/login" || r.TLS == nil {
			http.NotFound(w, r)
			return
		}
		ls.mu.Lock()
		ls.logins = append(ls.logins, r.FormValue("username")+":"+r.FormValue("password"))
		ls.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"accessToken": "test-token", "tokenTtl": 18000})
	}))
	ls.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	ls.StartTLS()
	t.Cleanup(ls.Close)
	return ls
}

func (ls *loginServer) seen() []string {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return append([]string(nil), ls.logins...)
}

// TestTLSLogin: with Config.TLS, the SDK logs in over https:// and
// verifies the server against CAFile. This is the SDK's HTTP half of TLS,
// against a server imitating Nacos's login endpoint; there is no
// TLS-enabled Nacos here to test the gRPC half against.
func TestTLSLogin(t *testing.T) {
	ls := newLoginServer(t)
	dir := t.TempDir()
	ca := filepath.Join(dir, "server-ca.pem")
	writeFile(t, ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ls.Certificate().Raw}))
	otherCA, _ := selfSigned(t, dir, "other-ca")
	addr := strings.TrimPrefix(ls.URL, "https://")

	login := func(tlsCfg *TLSConfig) {
		t.Helper()
		// A generous timeout: the refused logins fail at once, and the
		// good one may be slow on a loaded machine.
		cfg := Config{Addresses: []string{addr}, Username: "ops", Password: "tls-pw", TimeoutMs: 10000, TLS: tlsCfg}
		src, err := NewRuleSource(cfg, "x.yaml", "")
		if err != nil {
			t.Fatal(err)
		}
		src.Close()
	}
	login(&TLSConfig{CAFile: otherCA})
	if got := ls.seen(); len(got) != 0 {
		t.Fatalf("logged in to a server the CA does not vouch for: %v", got)
	}
	login(nil) // plaintext to an HTTPS server: no login arrives
	if got := ls.seen(); len(got) != 0 {
		t.Fatalf("logged in without TLS: %v", got)
	}
	login(&TLSConfig{CAFile: ca})
	if got := ls.seen(); len(got) == 0 || got[0] != "ops:tls-pw" {
		t.Fatalf("logins over TLS = %v, want ops:tls-pw", got)
	}

	// The adapter's own login check (diagnosis), which explains a
	// refusal, verifies the server the same way.
	check := func(tlsCfg *TLSConfig) error {
		return newDiagnosis(Config{Addresses: []string{addr}, Username: "ops", Password: "check-pw", TimeoutMs: 10000, TLS: tlsCfg}).logIn()
	}
	if err := check(&TLSConfig{CAFile: otherCA}); err == nil || slices.Contains(ls.seen(), "ops:check-pw") {
		t.Fatalf("the login check trusted a server the CA does not vouch for: %v, logins %v", err, ls.seen())
	}
	if err := check(&TLSConfig{CAFile: ca}); err != nil || !slices.Contains(ls.seen(), "ops:check-pw") {
		t.Fatalf("the login check over TLS: %v, logins %v; want ops:check-pw accepted", err, ls.seen())
	}
}
