package nacos

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/nacos-group/nacos-sdk-go/v2/common/constant"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"
)

// DefaultPort is the Nacos HTTP port assumed when an address has none.
// The SDK talks gRPC on the HTTP port + 1000 (9848).
const DefaultPort = 8848

// DefaultTimeoutMs bounds each request to the server when
// Config.TimeoutMs is zero.
const DefaultTimeoutMs = 5000

// Config says how to reach a Nacos server. The zero value is not usable:
// Addresses is required. Config's String, GoString and LogValue leave
// out Password, AccessKey and SecretKey, so printing or logging a Config
// is safe.
type Config struct {
	// Addresses are the servers' HTTP addresses, "host:port" (port 8848
	// when missing); the SDK uses gRPC on port + 1000.
	Addresses []string
	// NamespaceID is the namespace's ID; "" is the public namespace.
	// "public" is taken as "": on Nacos 2.x, config reads and listeners
	// given the literal "public" address a different namespace from the
	// one the console shows as public.
	NamespaceID string
	// Username and Password log in to a server with auth enabled.
	Username string
	Password string
	// AccessKey and SecretKey sign requests for Alibaba Cloud MSE / ACM.
	AccessKey string
	SecretKey string
	// TimeoutMs bounds each request to the server (DefaultTimeoutMs when
	// zero).
	TimeoutMs uint64
	// LogDir and CacheDir are where the SDK writes its log file and its
	// caches. When empty, each client gets a fresh directory under
	// os.UserCacheDir()/lightmesh/nacos (os.TempDir()/lightmesh/nacos when
	// there is no user cache directory), removed when it is closed.
	LogDir   string
	CacheDir string
	// Logger receives the SDK's own log output: its info and debug lines
	// at Debug, its warnings at Warn and its errors at Error; nil discards
	// it. It also receives this package's own lines (a rule document that
	// cannot be read, an instance skipped), which go to slog.Default()
	// when it is nil. See the package documentation about the SDK's
	// single logger.
	Logger *slog.Logger
	// TLS, when not nil, makes the client talk TLS to the servers: gRPC,
	// and HTTP (https://) for logging in. Nil is plaintext, unless the
	// SDK's nacos_remote_client_rpc_tls_* environment variables turn TLS
	// on for gRPC; a non-nil TLS ignores them.
	TLS *TLSConfig
}

// TLSConfig says how a client verifies the Nacos servers and proves who
// it is to them; the files are PEM. The client checks the files when it
// is created (the SDK would otherwise ignore an unreadable CA file and
// exit the process on a bad key pair).
//
// It is passed to the SDK's TLS support (constant.TLSConfig) and checked
// against HTTPS servers that imitate Nacos's login endpoint; it has not
// been run against a TLS-enabled Nacos server.
type TLSConfig struct {
	// CAFile holds the certificates the servers' certificates must chain
	// to. It is required: without one the SDK's HTTP client would skip
	// verification. Its gRPC connections trust the system's roots too.
	// The servers' certificates must be valid for the hosts in
	// Config.Addresses.
	CAFile string
	// CertFile and KeyFile are the client's certificate and key, for
	// servers that require one; both or neither.
	CertFile, KeyFile string
}

// sdk checks the files and returns the SDK's form of t.
func (t *TLSConfig) sdk() (constant.TLSConfig, error) {
	ca, err := os.ReadFile(t.CAFile)
	switch {
	case t.CAFile == "":
		return constant.TLSConfig{}, errors.New("nacos: TLS needs a CA file")
	case err != nil:
		return constant.TLSConfig{}, fmt.Errorf("nacos: TLS CA file: %w", err)
	case !x509.NewCertPool().AppendCertsFromPEM(ca):
		return constant.TLSConfig{}, fmt.Errorf("nacos: TLS CA file %s: no PEM certificate", t.CAFile)
	case (t.CertFile == "") != (t.KeyFile == ""):
		return constant.TLSConfig{}, errors.New("nacos: TLS client certificate: give both CertFile and KeyFile, or neither")
	}
	if t.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			return constant.TLSConfig{}, fmt.Errorf("nacos: TLS client certificate: %w", err)
		}
	}
	return constant.TLSConfig{
		// Appointed: the environment does not override this.
		Appointed: true,
		Enable:    true,
		CaFile:    t.CAFile,
		CertFile:  t.CertFile,
		KeyFile:   t.KeyFile,
	}, nil
}

// ConfigFromEnv reads a Config from NACOS_SERVER_ADDR (comma-separated
// host:port list, required), NACOS_NAMESPACE, NACOS_USERNAME,
// NACOS_PASSWORD, NACOS_ACCESS_KEY and NACOS_SECRET_KEY.
func ConfigFromEnv() (Config, error) {
	var c Config
	for _, a := range strings.Split(os.Getenv("NACOS_SERVER_ADDR"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			c.Addresses = append(c.Addresses, a)
		}
	}
	if len(c.Addresses) == 0 {
		return c, errors.New("nacos: NACOS_SERVER_ADDR is not set (want host:port[,host:port...], e.g. 127.0.0.1:8848)")
	}
	c.NamespaceID = os.Getenv("NACOS_NAMESPACE")
	c.Username = os.Getenv("NACOS_USERNAME")
	c.Password = os.Getenv("NACOS_PASSWORD")
	c.AccessKey = os.Getenv("NACOS_ACCESS_KEY")
	c.SecretKey = os.Getenv("NACOS_SECRET_KEY")
	if _, err := c.servers(); err != nil {
		return c, err
	}
	return c, nil
}

// String describes the config without secrets: the addresses, the
// namespace, the user names and whether TLS is on.
func (c Config) String() string {
	var b strings.Builder
	b.WriteString("nacos{addresses=")
	b.WriteString(strings.Join(c.Addresses, ","))
	if c.NamespaceID != "" {
		b.WriteString(" namespace=")
		b.WriteString(c.NamespaceID)
	}
	if c.Username != "" {
		b.WriteString(" username=")
		b.WriteString(c.Username)
	}
	if c.Password != "" {
		b.WriteString(" password=***")
	}
	if c.AccessKey != "" {
		b.WriteString(" accessKey=***")
	}
	if c.SecretKey != "" {
		b.WriteString(" secretKey=***")
	}
	if c.TLS != nil {
		b.WriteString(" tls")
	}
	b.WriteString("}")
	return b.String()
}

// GoString is String, so %#v does not print secrets either.
func (c Config) GoString() string { return c.String() }

// LogValue implements slog.LogValuer with the same redaction as String.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// servers parses Addresses.
func (c Config) servers() ([]constant.ServerConfig, error) {
	if len(c.Addresses) == 0 {
		return nil, errors.New("nacos: no server address")
	}
	out := make([]constant.ServerConfig, 0, len(c.Addresses))
	for _, a := range c.Addresses {
		host, port := a, DefaultPort
		if h, p, err := net.SplitHostPort(a); err == nil {
			n, err := strconv.Atoi(p)
			if err != nil || n <= 0 || n+constant.RpcPortOffset > 65535 {
				return nil, fmt.Errorf("nacos: server address %q: invalid port", a)
			}
			host, port = h, n
		}
		if host == "" || strings.ContainsAny(host, "/ ") {
			return nil, fmt.Errorf("nacos: server address %q: want host:port", a)
		}
		out = append(out, constant.ServerConfig{
			IpAddr:   host,
			Port:     uint64(port),
			GrpcPort: uint64(port + constant.RpcPortOffset),
		})
	}
	return out, nil
}

// clientParam builds the SDK's parameters. dir is the private directory
// it created for logs and caches ("" when the caller gave both); the
// owner removes it on close.
func (c Config) clientParam() (param vo.NacosClientParam, dir string, err error) {
	servers, err := c.servers()
	if err != nil {
		return param, "", err
	}
	var tlsCfg constant.TLSConfig
	if c.TLS != nil {
		if tlsCfg, err = c.TLS.sdk(); err != nil {
			return param, "", err
		}
		for i := range servers {
			servers[i].Scheme = "https" // the login, which carries the password
		}
	}
	logDir, cacheDir := c.LogDir, c.CacheDir
	if logDir == "" || cacheDir == "" {
		dir, err = privateDir()
		if err != nil {
			return param, "", err
		}
		if logDir == "" {
			logDir = filepath.Join(dir, "log")
		}
		if cacheDir == "" {
			cacheDir = filepath.Join(dir, "cache")
		}
	}
	timeout := c.TimeoutMs
	if timeout == 0 {
		timeout = DefaultTimeoutMs
	}
	ns := c.NamespaceID
	if ns == "public" {
		ns = ""
	}
	cc := constant.NewClientConfig(
		constant.WithNamespaceId(ns),
		constant.WithTimeoutMs(timeout),
		constant.WithUsername(c.Username),
		constant.WithPassword(c.Password),
		constant.WithAccessKey(c.AccessKey),
		constant.WithSecretKey(c.SecretKey),
		constant.WithLogDir(logDir),
		constant.WithCacheDir(cacheDir),
		constant.WithLogLevel("warn"),
		constant.WithAppName("lightmesh"),
		// A fresh process must not act on another's leftovers, and a
		// failed read must fail rather than serve a stale snapshot file.
		constant.WithNotLoadCacheAtStart(true),
		constant.WithDisableUseSnapShot(true),
		// Without it the SDK ignores an empty instance list, so the last
		// instance of a service would never go away.
		constant.WithUpdateCacheWhenEmpty(true),
	)
	if c.TLS != nil {
		cc.TLSCfg = tlsCfg
	} else {
		// Plaintext, appointed: the SDK's environment variables must not
		// turn on a TLS that trusts every certificate.
		cc.TLSCfg = constant.TLSConfig{Appointed: true}
	}
	return vo.NacosClientParam{ClientConfig: cc, ServerConfigs: servers}, dir, nil
}

// privateDir creates a fresh directory for one client's logs and caches.
func privateDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	base = filepath.Join(base, "lightmesh", "nacos")
	if err := os.MkdirAll(base, 0o700); err != nil {
		base = filepath.Join(os.TempDir(), "lightmesh", "nacos")
		if err := os.MkdirAll(base, 0o700); err != nil {
			return "", fmt.Errorf("nacos: cache directory: %w", err)
		}
	}
	dir, err := os.MkdirTemp(base, fmt.Sprintf("client-%d-*", os.Getpid()))
	if err != nil {
		return "", fmt.Errorf("nacos: cache directory: %w", err)
	}
	return dir, nil
}

// logger returns the logger of this package's own lines: c.Logger, or
// slog.Default(), as the mesh's.
func (c Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

// sdkLogger returns the logger of the SDK's output: c.Logger, or one
// that discards everything (the SDK logs every request at info level).
func (c Config) sdkLogger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// secrets lists the strings the SDK's log output must not show: the
// password and the secret key as they are and as the SDK's log lines may
// encode them (it logs request parameters as JSON, which escapes <, > and
// &; URLs escape more), longest first.
func (c Config) secrets() []string {
	var s []string
	for _, v := range []string{c.Password, c.AccessKey, c.SecretKey} {
		if v == "" {
			continue
		}
		js, _ := json.Marshal(v)
		for _, f := range []string{v, string(js[1 : len(js)-1]), url.QueryEscape(v), url.PathEscape(v)} {
			if !slices.Contains(s, f) {
				s = append(s, f)
			}
		}
	}
	slices.SortStableFunc(s, func(a, b string) int { return len(b) - len(a) })
	return s
}
