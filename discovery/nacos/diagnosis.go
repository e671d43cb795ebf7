package nacos

import (
	"context"
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
// Each check runs at most once per checkEvery, on a goroutine of its own
// that its own timeouts end; a caller waits for it only while its
// context lasts. A zero diagnosis is not usable: use newDiagnosis.
type diagnosis struct {
	cfg       Config
	tlsConfig func() (*tls.Config, error) // nil config when Config.TLS is nil
	client    func() (*http.Client, error)

	login, ports verdict
}

// verdict is the cached outcome of one check.
type verdict struct {
	mu      sync.Mutex
	at      time.Time     // of the last check's end; zero before
	err     error         // its outcome
	running chan struct{} // closed when the check in flight ends; nil when none is
}

// get returns the outcome of check (why), started when the last is older
// than checkEvery; done is false when ctx ended before it.
func (v *verdict) get(ctx context.Context, check func() error) (done bool, why error) {
	v.mu.Lock()
	if v.running == nil && (v.at.IsZero() || time.Since(v.at) >= checkEvery) {
		done := make(chan struct{})
		v.running = done
		go func() {
			err := check()
			v.mu.Lock()
			v.at, v.err, v.running = time.Now(), err, nil
			v.mu.Unlock()
			close(done)
		}()
	}
	running := v.running
	v.mu.Unlock()
	if running != nil {
		select {
		case <-running:
		case <-ctx.Done():
			return false, nil
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return true, v.err
}

func newDiagnosis(cfg Config) *diagnosis {
	tlsConfig := sync.OnceValues(cfg.tlsConfig)
	return &diagnosis{cfg: cfg, tlsConfig: tlsConfig, client: sync.OnceValues(func() (*http.Client, error) {
		tc, err := tlsConfig()
		if err != nil {
			return nil, err
		}
		return cfg.loginClient(tc), nil
	})}
}

// explain returns err, wrapped with what a check says of it when the
// server refused the request for want of a login or permission (or
// refused a registration without saying why), or when the client is not
// connected; other errors as they are, and err as it is when ctx ends
// before the check does.
func (dg *diagnosis) explain(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case notConnected(err):
		if done, why := dg.ports.get(ctx, dg.dial); done {
			return fmt.Errorf("%w; %w", err, why)
		}
		return err
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
	if done, why := dg.check(ctx, kind); done {
		return fmt.Errorf("%w; %w", err, why)
	}
	return err
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
// refusal of kind (why); done is false when ctx ended first.
func (dg *diagnosis) check(ctx context.Context, kind refusal) (done bool, why error) {
	user := dg.cfg.Username
	switch {
	case user == "" && dg.cfg.AccessKey != "":
		return true, errors.New("the client signs its requests with Config.AccessKey (Alibaba Cloud MSE) and no Username: check AccessKey and SecretKey, and the key's permissions")
	case user == "":
		return true, fmt.Errorf("a server with authentication on refuses a client without a login, and Config.Username is empty: %w", errLogin)
	}
	if done, err := dg.login.get(ctx, dg.logIn); !done || err != nil {
		return done, err
	}
	ns := dg.cfg.NamespaceID
	if ns == "" {
		ns = "public"
	}
	const notYet = "its login failed or timed out when it started, or its token expired; the SDK logs in again every 5 s and logs why to Config.Logger"
	switch kind {
	case refusedPermission:
		return true, fmt.Errorf("the server accepted user %q's login just now, so the credentials are right: the user's role lacks the permission in namespace %q (Nacos console: authority control)", user, ns)
	case refusedUnsaid:
		return true, fmt.Errorf("the server accepted user %q's login just now, so the credentials are right: either %w (%s) or the user's role may not write in namespace %q", user, errNotLoggedIn, notYet, ns)
	default:
		return true, fmt.Errorf("the server accepted user %q's login just now, so the credentials are right: %w (%s)", user, errNotLoggedIn, notYet)
	}
}

// logIn logs in to each server in turn, as the SDK does, and returns nil
// once one accepts the credentials, or why none did: a refusal (403, or
// Nacos's answer for an unknown user) wraps errLogin; a server that
// cannot answer (a 5xx of its own, no connection) is passed over for the
// next, and when none answers the credentials are not blamed.
func (dg *diagnosis) logIn() error {
	client, err := dg.client()
	if err != nil {
		return fmt.Errorf("a login to check the credentials could not start: %v", err)
	}
	servers, err := dg.cfg.servers()
	if err != nil {
		return err
	}
	scheme := "http"
	if dg.cfg.TLS != nil {
		scheme = "https"
	}
	var refused, last error
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
			last = fmt.Errorf("%s: %v", net.JoinHostPort(s.IpAddr, strconv.FormatUint(s.Port, 10)), err)
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
		answer := dg.quote(body)
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden ||
			resp.StatusCode == http.StatusInternalServerError && strings.Contains(answer, "not found") { // Nacos 2.3: "caused: User x not found;"
			refused = fmt.Errorf("the server refuses user %q's login (%d %s): %w", dg.cfg.Username, resp.StatusCode, answer, errLogin)
			continue // another server may hold other users (a cluster split, say); its acceptance wins
		}
		last = fmt.Errorf("%s: %d %s", net.JoinHostPort(s.IpAddr, strconv.FormatUint(s.Port, 10)), resp.StatusCode, answer)
	}
	if refused != nil {
		return refused
	}
	return fmt.Errorf("no server answered a login to check the credentials (%v)", last)
}

// quote returns the first line of a server's answer, at most 200 bytes,
// with the client's secrets masked: what answers at a server's port (a
// gateway, a firewall's page) may quote the request, password included.
func (dg *diagnosis) quote(body []byte) string {
	answer, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	for _, secret := range dg.cfg.secrets() {
		answer = strings.ReplaceAll(answer, secret, "***")
	}
	if len(answer) > 200 {
		answer = answer[:200] + "..."
	}
	return answer
}

// notConnected reports whether err says the client has no connection to
// a server.
func notConnected(err error) bool {
	return errors.Is(err, errServerUnhealthy) || strings.Contains(err.Error(), "client not connected")
}

// dialTimeout bounds each dial of dial.
const dialTimeout = 2 * time.Second

// dial says, server by server, which ports answer: a client is not
// connected when no server's gRPC port (the HTTP port + 1000) takes its
// connection, and a server whose HTTP port answers while its gRPC port
// does not is the usual cause; a gRPC port that accepts TCP but fails the
// TLS handshake the client would make (Config.TLS) is named as such. The servers are dialed at once, each dial
// bounded by dialTimeout.
func (dg *diagnosis) dial() error {
	servers, err := dg.cfg.servers()
	if err != nil {
		return err
	}
	tc, err := dg.tlsConfig()
	if err != nil {
		return err
	}
	says := make([]string, len(servers))
	connecting := make([]bool, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() {
			h := net.JoinHostPort(s.IpAddr, strconv.FormatUint(s.Port, 10))
			g := net.JoinHostPort(s.IpAddr, strconv.FormatUint(s.GrpcPort, 10))
			grpcErr := dialPort(g, tc)
			switch {
			case grpcErr == nil:
				connecting[i] = true
				says[i] = fmt.Sprintf("the gRPC port %s takes connections, so the client is still connecting (it keeps trying)", g)
			case errors.Is(grpcErr, errTLSMismatch):
				says[i] = fmt.Sprintf("the gRPC port %s takes connections but %v: check Config.TLS against the server's", g, grpcErr)
			case dialPort(h, nil) == nil:
				says[i] = fmt.Sprintf("the HTTP port %s answers but the gRPC port %s does not (%v): Nacos 2 clients talk gRPC on the HTTP port + 1000; open it (firewall, Kubernetes Service)", h, g, grpcErr)
			default:
				says[i] = fmt.Sprintf("neither %s nor its gRPC port %s answers (%v): is the server running, and is the address right?", h, g, grpcErr)
			}
		})
	}
	wg.Wait()
	for i := range servers {
		if connecting[i] {
			return fmt.Errorf("%w: %s", errNotConnected, says[i])
		}
	}
	return fmt.Errorf("%w: %s", errNotConnected, strings.Join(says, "; "))
}

// errTLSMismatch is a gRPC port that takes connections but whose TLS does
// not match the client's.
var errTLSMismatch = errors.New("TLS does not match")

// dialPort connects to addr within dialTimeout and, with tc, makes the
// TLS handshake the client would, a failure of which wraps
// errTLSMismatch.
func dialPort(addr string, tc *tls.Config) error {
	c, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	if tc == nil {
		return nil
	}
	host, _, _ := net.SplitHostPort(addr)
	tc = tc.Clone()
	tc.ServerName = host
	tc.NextProtos = []string{"h2"}
	tlsConn := tls.Client(c, tc)
	tlsConn.SetDeadline(time.Now().Add(dialTimeout))
	if err := tlsConn.Handshake(); err != nil {
		return fmt.Errorf("%w: the TLS handshake fails (%v)", errTLSMismatch, err)
	}
	return nil
}

// errNotConnected is wrapped into the errors of a client not connected to
// any server, with what dialing the servers found.
var errNotConnected = errors.New("not connected to Nacos")

// loginClient returns the HTTP client a diagnosis logs in with: bounded
// by the client's request timeout, and over TLS (tc) as the SDK's login
// is when Config.TLS is set.
func (c Config) loginClient(tc *tls.Config) *http.Client {
	timeout := c.TimeoutMs
	if timeout == 0 {
		timeout = DefaultTimeoutMs
	}
	return &http.Client{
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, TLSClientConfig: tc},
		Timeout:   time.Duration(timeout) * time.Millisecond,
	}
}

// tlsConfig returns the TLS configuration of Config.TLS, as the SDK
// builds it from the same files, or nil without Config.TLS.
func (c Config) tlsConfig() (*tls.Config, error) {
	if c.TLS == nil {
		return nil, nil
	}
	ca, err := os.ReadFile(c.TLS.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("TLS CA file %s: no PEM certificate", c.TLS.CAFile)
	}
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if c.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
