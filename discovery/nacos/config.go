package nacos

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
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
// out Password and SecretKey, so printing or logging a Config is safe.
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
	// at Debug, its warnings at Warn and its errors at Error. Nil discards
	// it. See the package documentation about the SDK's single logger.
	Logger *slog.Logger
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
// namespace and the user names.
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
		b.WriteString(" accessKey=")
		b.WriteString(c.AccessKey)
	}
	if c.SecretKey != "" {
		b.WriteString(" secretKey=***")
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

// logger returns c.Logger or a logger that discards everything.
func (c Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// secrets lists the strings the SDK's log output must not show.
func (c Config) secrets() []string {
	var s []string
	for _, v := range []string{c.Password, c.SecretKey} {
		if v != "" {
			s = append(s, v)
		}
	}
	return s
}
