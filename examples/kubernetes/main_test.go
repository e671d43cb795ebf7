package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// configMapRules returns the rules.yaml key of configmap.yaml.
func configMapRules(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(data, &cm); err != nil || cm.Data["rules.yaml"] == "" {
		t.Fatalf("configmap.yaml: no data.rules.yaml (%v)", err)
	}
	if own, err := os.ReadFile("rules.yaml"); err != nil || string(own) != cm.Data["rules.yaml"] {
		t.Fatalf("configmap.yaml's data.rules.yaml is not rules.yaml, the file it is built from (%v)", err)
	}
	return cm.Data["rules.yaml"]
}

// kubelet updates a ConfigMap volume the way kubelet's AtomicWriter does:
// the files go into a new timestamped directory, a ..data_tmp symlink to
// it is renamed over ..data, and each key is a symlink key → ..data/key
// made once.
type kubelet struct {
	t     *testing.T
	dir   string
	round int
}

func (k *kubelet) write(files map[string]string) {
	k.t.Helper()
	k.round++
	ts := fmt.Sprintf("..2026_12_06_23_%02d_00.%d", k.round, 100+k.round)
	if err := os.Mkdir(filepath.Join(k.dir, ts), 0o755); err != nil {
		k.t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(k.dir, ts, name), []byte(content), 0o644); err != nil {
			k.t.Fatal(err)
		}
	}
	old, _ := os.Readlink(filepath.Join(k.dir, "..data"))
	if err := os.Symlink(ts, filepath.Join(k.dir, "..data_tmp")); err != nil {
		k.t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(k.dir, "..data_tmp"), filepath.Join(k.dir, "..data")); err != nil {
		k.t.Fatal(err)
	}
	for name := range files {
		link := filepath.Join(k.dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				k.t.Fatal(err)
			}
		}
	}
	if old != "" {
		os.RemoveAll(filepath.Join(k.dir, old))
	}
}

// pod is Run in the background: its admin address once it listens.
type pod struct {
	t     *testing.T
	admin string
	token string
	stop  func() error
}

func startPod(t *testing.T, c Config) *pod {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	adminAddr := make(chan string, 2)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, c, slog.New(slog.NewTextHandler(io.Discard, nil)), func(admin, _ string) { adminAddr <- admin })
	}()
	var once sync.Once
	var stopErr error
	p := &pod{t: t, token: c.Token, stop: func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(15 * time.Second):
				stopErr = fmt.Errorf("Run did not return 15s after SIGTERM")
			}
		})
		return stopErr
	}}
	t.Cleanup(func() { p.stop() })
	select {
	case p.admin = <-adminAddr:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("admin port not listening after 10s")
	}
	return p
}

// get returns the status code and body of GET path on the admin port.
func (p *pod) get(path, token string) (int, string) {
	p.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.admin+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// status is the part of the status page the test reads.
type status struct {
	LastRejection *struct{ Error string } `json:"lastRejection"`
	Services      []struct {
		Name   string
		Routes []struct{ Name string }
	}
}

// routes returns the names of user-api's routes in force and the last
// rejection's error, from the status page.
func (p *pod) routes() ([]string, string) {
	p.t.Helper()
	code, body := p.get("/lightmesh/status", p.token)
	if code != http.StatusOK {
		p.t.Fatalf("status page: %d %s", code, body)
	}
	var st status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		p.t.Fatal(err)
	}
	var names []string
	for _, s := range st.Services {
		if s.Name == "user-api" {
			for _, r := range s.Routes {
				names = append(names, r.Name)
			}
		}
	}
	rej := ""
	if st.LastRejection != nil {
		rej = st.LastRejection.Error
	}
	return names, rej
}

// eventually polls cond every 20ms for up to 5s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: %s", what)
		}
	}
}

// TestConfigMapRulesFollowKubeletSwap: a pod whose ConfigMap is not there
// yet is alive but not ready; once kubelet writes it, the pod turns ready
// with those rules; a ConfigMap update (kubelet's ..data symlink swap) is
// applied, a broken one rejected while the last good rules keep serving;
// after a restart with the ConfigMap gone the snapshot on the volume
// brings the last good rules back.
func TestConfigMapRulesFollowKubeletSwap(t *testing.T) {
	v1 := configMapRules(t)
	v2 := v1 + "      - name: canary\n        destinations: [{subset: staging}]\n"
	dir := t.TempDir()
	mount := filepath.Join(dir, "etc-lightmesh")
	if err := os.Mkdir(mount, 0o755); err != nil {
		t.Fatal(err)
	}
	k := &kubelet{t: t, dir: mount}
	c := Config{Rules: filepath.Join(mount, "rules.yaml"), Snapshots: filepath.Join(dir, "snapshots"),
		Admin: "127.0.0.1:0", Addr: "127.0.0.1:0", Token: "s3cret", StartTimeout: 20 * time.Second}

	p := startPod(t, c)
	if code, _ := p.get("/healthz", ""); code != http.StatusOK {
		t.Errorf("liveness while New waits: %d, want 200", code)
	}
	if code, _ := p.get("/readyz", ""); code != http.StatusServiceUnavailable {
		t.Errorf("readiness before the first rules: %d, want 503", code)
	}
	if code, _ := p.get("/lightmesh/status", ""); code != http.StatusUnauthorized {
		t.Errorf("status page without the token: %d, want 401", code)
	}

	k.write(map[string]string{"rules.yaml": v1})
	eventually(t, "ready once the ConfigMap is written", func() bool { code, _ := p.get("/readyz", ""); return code == http.StatusOK })
	if got, _ := p.routes(); !slices.Equal(got, []string{"staging-lane", "default"}) {
		t.Fatalf("routes in force %v, want configmap.yaml's [staging-lane default]", got)
	}

	k.write(map[string]string{"rules.yaml": v2})
	eventually(t, "the updated ConfigMap applied", func() bool {
		got, _ := p.routes()
		return slices.Equal(got, []string{"staging-lane", "default", "canary"})
	})

	k.write(map[string]string{"rules.yaml": v2 + "          - {subset: nowhere}\n"})
	eventually(t, "the broken ConfigMap rejected", func() bool { _, rej := p.routes(); return rej != "" })
	if got, rej := p.routes(); !slices.Equal(got, []string{"staging-lane", "default", "canary"}) {
		t.Errorf("after a broken update routes %v (rejected: %s); want the last good ones kept", got, rej)
	}
	if err := p.stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	// The container restarts; the ConfigMap is gone (deleted, or the
	// mount not there): the snapshot on the volume stands in.
	if err := os.Remove(filepath.Join(mount, "..data")); err != nil {
		t.Fatal(err)
	}
	c.StartTimeout = 300 * time.Millisecond
	p = startPod(t, c)
	eventually(t, "ready from the snapshot", func() bool { code, _ := p.get("/readyz", ""); return code == http.StatusOK })
	if got, _ := p.routes(); !slices.Equal(got, []string{"staging-lane", "default", "canary"}) {
		t.Errorf("after a restart without the ConfigMap routes %v, want the last good ones from the snapshot", got)
	}
}
