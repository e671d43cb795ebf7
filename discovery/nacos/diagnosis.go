package nacos

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// errLogin is wrapped into the errors of requests the server refused for
// want of a login when the credentials are the cause: a server with
// authentication on, and no Username or one whose login it refuses.
var errLogin = errors.New("check Config.Username and Password (NACOS_USERNAME, NACOS_PASSWORD)")

// errNotLoggedIn is wrapped into the errors of requests the server
// refused for want of a login although it accepts the client's
// credentials: the client's own login failed or timed out (a slow or
// unreachable server when it started), and the SDK only logs that and
// logs in again every 5 s.
var errNotLoggedIn = errors.New("the client has not logged in yet")

// checkEvery is how long a check's verdict stands: a login costs the
// server a password hash, and a client refused in a loop must not add one
// per refusal.
const checkEvery = 30 * time.Second

// A diagnosis explains the errors of a client that the SDK leaves
// unexplained, by checking for itself what the SDK does not say:
//
//   - a refusal for want of a login: the server answers a request without
//     a valid token the same way ("user not found!") whether the password
//     is wrong or the client's login has not succeeded yet, and the SDK
//     only logs its failed logins, so the diagnosis logs in itself, as
//     the SDK does, and says which it is;
//   - a client not connected: it dials the servers' HTTP and gRPC ports,
//     and says which answer (Nacos 2 clients need both, and a firewall or
//     a Kubernetes Service often opens the HTTP port only).
//
// Each check runs at most once per checkEvery. A zero diagnosis is not
// usable: use newDiagnosis.
type diagnosis struct {
	cfg    Config
	client func() (*http.Client, error)

	login, ports verdict
}

// verdict is the cached outcome of one check.
type verdict struct {
	mu  sync.Mutex
	at  time.Time // of the last check; zero before
	err error
}

// get returns the outcome of check, run at most once per checkEvery.
func (v *verdict) get(check func() error) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.at.IsZero() || time.Since(v.at) >= checkEvery {
		v.at, v.err = time.Now(), check()
	}
	return v.err
}

func newDiagnosis(cfg Config) *diagnosis {
	return &diagnosis{cfg: cfg, client: sync.OnceValues(cfg.loginClient)}
}

// explain returns err, wrapped with what a check says of it when the
// server refused the request for want of a login or permission (or
// refused a registration without saying why), or when the client is not
// connected; other errors as they are.
func (dg *diagnosis) explain(err error) error {
	switch {
	case err == nil:
		return nil
	case notConnected(err):
		return fmt.Errorf("%w; %w", err, dg.ports.get(dg.dial))
	case !(needsLogin(err) || isRefused(err) || errors.Is(err, errRegisterRefused)):
		return err
	}
	kind := refusedLogin
	switch {
	case isRefused(err):
		kind = refusedPermission
	case errors.Is(err, errRegisterRefused):
		kind = refusedUnsaid
	}
	return fmt.Errorf("%w; %w", err, dg.check(kind))
}

// refusal is what the server said when it refused a request.
type refusal int

const (
	refusedLogin      refusal = iota // no valid login token ("user not found!")
	refusedPermission                // the user's role lacks the permission ("authorization failed!")
	refusedUnsaid                    // either: the SDK dropped the reason (a registration)
)

// needsLogin reports whether err is the server's answer to a request
// without a valid login token.
func needsLogin(err error) bool {
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"user not found", "token invalid", "token expired", "unknown user"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// isRefused reports whether err is the server refusing a request for
// lack of permission ("authorization failed!"): the user's role may not
// read or write the item.
func isRefused(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "authorization failed")
}

// check returns what a login with the client's credentials says of a
// refusal of kind.
func (dg *diagnosis) check(kind refusal) error {
	user := dg.cfg.Username
	if user == "" {
		return fmt.Errorf("a server with authentication on refuses a client without a login, and Config.Username is empty: %w", errLogin)
	}
	if err := dg.login.get(dg.logIn); err != nil {
		return err
	}
	ns := dg.cfg.NamespaceID
	if ns == "" {
		ns = "public"
	}
	const notYet = "its login failed or timed out when it started, or its token expired; the SDK logs in again every 5 s and logs why to Config.Logger"
	switch kind {
	case refusedPermission:
		return fmt.Errorf("the server accepted user %q's login just now, so the credentials are right: the user's role lacks the permission in namespace %q (Nacos console: authority control)", user, ns)
	case refusedUnsaid:
		return fmt.Errorf("the server accepted user %q's login just now, so the credentials are right: either %w (%s) or the user's role may not write in namespace %q", user, errNotLoggedIn, notYet, ns)
	default:
		return fmt.Errorf("the server accepted user %q's login just now, so the credentials are right: %w (%s)", user, errNotLoggedIn, notYet)
	}
}

// logIn logs in to each server in turn, as the SDK does, and returns nil
// once one accepts the credentials, or why none did.
func (dg *diagnosis) logIn() error {
	client, err := dg.client()
	if err != nil {
		return fmt.Errorf("a login to check the credentials could not start (%v); %w", err, errLogin)
	}
	servers, err := dg.cfg.servers()
	if err != nil {
		return err
	}
	scheme := "http"
	if dg.cfg.TLS != nil {
		scheme = "https"
	}
	var last error
	for _, s := range servers {
		u := scheme + "://" + net.JoinHostPort(s.IpAddr, strconv.FormatUint(s.Port, 10)) + "/nacos/v1/auth/users/login"
		req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(url.Values{"username": {dg.cfg.Username}, "password": {dg.cfg.Password}}.Encode()))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("User-Agent", "lightmesh (login check)") // what the server's access log shows
		resp, err := client.Do(req)
		if err != nil {
			// The URL holds no secret, but the error must not say more
			// than where and why.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			last = fmt.Errorf("a login at %s to check the credentials failed (%v); %w", net.JoinHostPort(s.IpAddr, strconv.FormatUint(s.Port, 10)), err, errLogin)
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		var token struct {
			AccessToken string `json:"accessToken"`
		}
		if resp.StatusCode == http.StatusOK && json.Unmarshal(body, &token) == nil && token.AccessToken != "" {
			return nil
		}
		answer, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		if len(answer) > 200 {
			answer = answer[:200] + "..."
		}
		return fmt.Errorf("the server refuses user %q's login (%d %s): %w", dg.cfg.Username, resp.StatusCode, answer, errLogin)
	}
	return last
}

// notConnected reports whether err says the client has no connection to
// a server.
func notConnected(err error) bool {
	return errors.Is(err, errServerUnhealthy) || strings.Contains(err.Error(), "client not connected")
}

// dialTimeout bounds each dial of dial.
const dialTimeout = 2 * time.Second

// dial says which of the servers' ports answer: a client is not connected
// when no server's gRPC port (the HTTP port + 1000) does, and a server
// whose HTTP port answers while its gRPC port does not is the usual cause.
func (dg *diagnosis) dial() error {
	servers, err := dg.cfg.servers()
	if err != nil {
		return err
	}
	var httpUp, grpcDown []string
	var grpcErr error
	for _, s := range servers {
		h := net.JoinHostPort(s.IpAddr, strconv.FormatUint(s.Port, 10))
		g := net.JoinHostPort(s.IpAddr, strconv.FormatUint(s.GrpcPort, 10))
		c, err := net.DialTimeout("tcp", g, dialTimeout)
		if err == nil {
			c.Close()
			return fmt.Errorf("%w: the gRPC port %s accepts connections, so the client is still connecting (it keeps trying)", errNotConnected, g)
		}
		grpcDown, grpcErr = append(grpcDown, g), err
		if c, err := net.DialTimeout("tcp", h, dialTimeout); err == nil {
			c.Close()
			httpUp = append(httpUp, h)
		}
	}
	if len(httpUp) > 0 {
		return fmt.Errorf("%w: the HTTP port %s answers but the gRPC port %s does not (%v): Nacos 2 clients talk gRPC on the HTTP port + 1000; open it (firewall, Kubernetes Service)", errNotConnected, strings.Join(httpUp, ", "), strings.Join(grpcDown, ", "), grpcErr)
	}
	return fmt.Errorf("%w: no server answers at %s nor at its gRPC port %s (%v): is it running, and is the address right?", errNotConnected, strings.Join(dg.cfg.Addresses, ", "), strings.Join(grpcDown, ", "), grpcErr)
}

// errNotConnected is wrapped into the errors of a client not connected to
// any server, with what dialing the servers found.
var errNotConnected = errors.New("not connected to Nacos")

// loginClient returns the HTTP client a loginCheck logs in with: bounded
// by the client's request timeout, and over TLS as the SDK's login is
// when Config.TLS is set.
func (c Config) loginClient() (*http.Client, error) {
	timeout := c.TimeoutMs
	if timeout == 0 {
		timeout = DefaultTimeoutMs
	}
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	if c.TLS != nil {
		ca, err := os.ReadFile(c.TLS.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("TLS CA file %s: no PEM certificate", c.TLS.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if c.TLS.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
			if err != nil {
				return nil, err
			}
			tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
		}
	}
	return &http.Client{Transport: tr, Timeout: time.Duration(timeout) * time.Millisecond}, nil
}
