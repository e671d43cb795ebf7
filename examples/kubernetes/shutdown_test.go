package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestShutdownServesWhileUnready: on SIGTERM the pod turns unready and
// keeps serving new requests for a while, so the endpoints controller
// (which learns of the readiness failure only at the next probe) can take
// it out of the Service before its port closes; only then does it drain
// and close. A pod that closes its port the moment it turns unready
// refuses the requests still routed to it on every rolling update.
func TestShutdownServesWhileUnready(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(configMapRules(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Config{Rules: filepath.Join(dir, "rules.yaml"), Snapshots: filepath.Join(dir, "snapshots"),
		Admin: "127.0.0.1:0", Addr: "127.0.0.1:0", StartTimeout: 10 * time.Second, UnreadyDelay: 500 * time.Millisecond}
	ctx, sigterm := context.WithCancel(context.Background())
	defer sigterm()
	addrs := make(chan [2]string, 2)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, c, slog.New(slog.NewTextHandler(io.Discard, nil)), func(admin, app string) { addrs <- [2]string{admin, app} })
	}()
	var admin, app string
	for app == "" {
		select {
		case a := <-addrs:
			admin, app = a[0], a[1]
		case err := <-done:
			t.Fatalf("Run: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("not serving after 10s")
		}
	}
	get := func(url string) (int, error) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get("http://" + app + "/"); code != http.StatusOK {
		t.Fatalf("service before SIGTERM: %d %v", code, err)
	}

	sigterm()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		code, err := get("http://" + admin + "/readyz")
		if err != nil {
			t.Fatalf("admin port gone before readiness was seen failing: %v", err)
		}
		if code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readiness still %d 5s after SIGTERM", code)
		}
	}
	if code, err := get("http://" + app + "/"); code != http.StatusOK {
		t.Errorf("a request arriving just after readiness failed: %d %v; want 200 (the pod is still in the endpoints)", code, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("shutdown: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return 15s after SIGTERM")
	}
}
