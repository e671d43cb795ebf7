package main

import (
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/discovery/etcd/etcdtest"
)

// TestEtcdAuth: against an etcd with authentication on, push and get
// work with the password from the environment, and fail with a wrong
// one; neither password is ever printed.
func TestEtcdAuth(t *testing.T) {
	const password, wrong = "Cl1-Root-Pw-3e8a", "Cl1-Wr0ng-Pw-6c0d"
	srv := etcdtest.Start(t)
	srv.EnableAuth(t, password)
	location := "etcd://" + srv.Endpoint() + "/lightmesh/rules"
	pushGetRoundTrip(t, location, map[string]string{"ETCD_USERNAME": etcdtest.RootUser, "ETCD_PASSWORD": password}, password)

	for _, env := range []map[string]string{
		{"ETCD_USERNAME": etcdtest.RootUser, "ETCD_PASSWORD": wrong},
		{}, // no credentials at all
	} {
		for _, args := range [][]string{{"get", location}, {"push", "-f", "testdata/rules.yaml", location}} {
			code, out, errs := lightmesh(t, env, args...)
			if code != 1 || out != "" {
				t.Errorf("%v with %v: exit %d, stdout %q", args, env, code, out)
			}
			if strings.Contains(out+errs, wrong) || strings.Contains(out+errs, password) {
				t.Errorf("%v: output shows a password:\n%s", args, errs)
			}
			want := "authentication failed"
			if len(env) == 0 {
				want = "user name is empty"
			}
			if !strings.Contains(errs, want) {
				t.Errorf("%v with %v: stderr %q, want %q", args, env, errs, want)
			}
		}
	}
}

// TestEtcdTLS: against an etcd that serves TLS only and requires client
// certificates, the --etcd-* flags make push, get and explain work, with
// credentials too; without them, or with the wrong CA or no client
// certificate, the command fails and says what is wrong with TLS.
func TestEtcdTLS(t *testing.T) {
	const password = "Cl1-Tls-Pw-0b5f"
	srv := etcdtest.StartTLS(t, etcdtest.TLSOptions{ClientCertAuth: true})
	files := srv.TLS()
	location := "etcd://" + srv.Endpoint() + "/lightmesh/rules"
	tlsFlags := []string{"--etcd-cacert", files.CAFile, "--etcd-cert", files.ClientCertFile, "--etcd-key", files.ClientKeyFile}
	pushGetRoundTrip(t, location, nil, "", tlsFlags...)

	srv.EnableAuth(t, password)
	env := map[string]string{"ETCD_USERNAME": etcdtest.RootUser, "ETCD_PASSWORD": password}
	pushGetRoundTrip(t, location, env, password, tlsFlags...)

	for _, tc := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"plaintext", nil, "does it require TLS?"},
		{"wrong CA", []string{"--etcd-cacert", files.ClientCertFile, "--etcd-cert", files.ClientCertFile, "--etcd-key", files.ClientKeyFile}, "certificate signed by unknown authority"},
		{"no client certificate", []string{"--etcd-cacert", files.CAFile}, "--etcd-cert"},
		{"certificate without key", []string{"--etcd-cacert", files.CAFile, "--etcd-cert", files.ClientCertFile}, "--etcd-cert and --etcd-key go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := env // with credentials, the client's login fails first
			if tc.name != "wrong CA" {
				env = nil // without, a check of the connection fails
			}
			code, out, errs := lightmesh(t, env, append([]string{"get", location}, tc.flags...)...)
			t.Logf("stderr: %s", errs)
			if code != 1 || out != "" {
				t.Errorf("exit %d, stdout %q", code, out)
			}
			if !strings.Contains(errs, tc.want) {
				t.Errorf("stderr %q, want %q", errs, tc.want)
			}
			if strings.Contains(errs, password) {
				t.Errorf("stderr shows the password:\n%s", errs)
			}
		})
	}
}

// TestMistypedLocationHidesCredentials: a location with credentials
// written in it and a slash short (nacos:/, etcd:/) is refused by every
// command that takes one without printing the password, as a well-formed
// one is; explain does not take it for a file name either.
func TestMistypedLocationHidesCredentials(t *testing.T) {
	const password = "Cl1-Typo-Pw-9f2b"
	for _, at := range []string{"nacos:/admin:" + password + "@127.0.0.1:8848/G/D", "etcd:/root:" + password + "@127.0.0.1:2379/k"} {
		for _, args := range [][]string{
			{"get", at},
			{"push", "-f", "testdata/rules.yaml", at},
			{"explain", "-f", at, "--service", "user-api"},
			{"explain", "-f", "testdata/rules.yaml", "--instances", at, "--service", "user-api"},
		} {
			code, out, errs := lightmesh(t, nil, args...)
			if code == 0 || strings.Contains(out+errs, password) || !strings.Contains(errs, "want nacos://HOST:PORT/GROUP/DATA_ID or etcd://HOST:PORT/KEY") {
				t.Errorf("%v: exit %d, the password shown or the location not explained:\n%s%s", args[:len(args)-1], code, out, errs)
			}
		}
	}
}
