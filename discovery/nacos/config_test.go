package nacos

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigNeverPrintsSecrets formats a Config every way a program
// might and checks the password and secret key never show.
func TestConfigNeverPrintsSecrets(t *testing.T) {
	c := Config{Addresses: []string{"10.0.0.1:8848"}, NamespaceID: "dev", Username: "ops", Password: "hunter2-pw", AccessKey: "AK-access-1", SecretKey: "sk-very-secret"}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "nacos", c)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "nacos", c)
	for _, out := range []string{c.String(), fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), fmt.Sprintf("%v", &c), logged.String()} {
		if strings.Contains(out, "hunter2-pw") || strings.Contains(out, "AK-access-1") || strings.Contains(out, "sk-very-secret") {
			t.Fatalf("secret printed: %s", out)
		}
		if !strings.Contains(out, "10.0.0.1:8848") {
			t.Fatalf("address missing: %s", out)
		}
	}
	if !strings.Contains(c.String(), "password=***") {
		t.Errorf("String() = %s, want the password's presence shown as ***", c)
	}
}

// TestSDKLogMasksSecrets routes SDK log lines through the slog adapter:
// levels map as documented and secrets are masked.
func TestSDKLogMasksSecrets(t *testing.T) {
	var buf bytes.Buffer
	cfg := Config{Password: "hunter2-pw", SecretKey: "sk-very-secret", Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	l := &sdkLogger{l: cfg.logger(), secrets: cfg.secrets()}
	l.Errorf("login failed for password=%s key=%s", "hunter2-pw", "sk-very-secret")
	l.Info("connected to ", "server")
	l.Warn("slow")
	out := buf.String()
	if strings.Contains(out, "hunter2-pw") || strings.Contains(out, "sk-very-secret") {
		t.Fatalf("secret logged: %s", out)
	}
	for _, want := range []string{"level=ERROR msg=\"login failed for password=*** key=***\"", "level=DEBUG msg=\"connected to server\"", "level=WARN msg=slow"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	// A missing item is an answer, not a warning; other failed answers are.
	buf.Reset()
	l.Warnf(failedResponseFormat, "ConfigQueryRequest", 300, 500, "config data not exist")
	l.Warnf(failedResponseFormat, "ConfigQueryRequest", 400, 500, "no right")
	out = buf.String()
	if !strings.Contains(out, "level=DEBUG msg=\"ConfigQueryRequest request received fail response, error code: 300") ||
		!strings.Contains(out, "level=WARN msg=\"ConfigQueryRequest request received fail response, error code: 400") {
		t.Errorf("failed answers logged as:\n%s", out)
	}
	// A nil Logger discards without failing.
	(&sdkLogger{l: Config{}.logger()}).Error("dropped")
}

// TestConfigFromEnv reads the NACOS_* variables.
func TestConfigFromEnv(t *testing.T) {
	t.Setenv("NACOS_SERVER_ADDR", " 10.0.0.1:8848 ,10.0.0.2 ")
	t.Setenv("NACOS_NAMESPACE", "dev")
	t.Setenv("NACOS_USERNAME", "ops")
	t.Setenv("NACOS_PASSWORD", "pw")
	t.Setenv("NACOS_ACCESS_KEY", "ak")
	t.Setenv("NACOS_SECRET_KEY", "sk")
	c, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Addresses: []string{"10.0.0.1:8848", "10.0.0.2"}, NamespaceID: "dev", Username: "ops", Password: "pw", AccessKey: "ak", SecretKey: "sk"}
	if fmt.Sprint(c.Addresses) != fmt.Sprint(want.Addresses) || c.NamespaceID != want.NamespaceID || c.Username != want.Username ||
		c.Password != want.Password || c.AccessKey != want.AccessKey || c.SecretKey != want.SecretKey {
		t.Fatalf("ConfigFromEnv() = %#v (pw %q sk %q)", c, c.Password, c.SecretKey)
	}
	servers, err := c.servers()
	if err != nil {
		t.Fatal(err)
	}
	if servers[1].Port != DefaultPort || servers[1].GrpcPort != DefaultPort+1000 || servers[0].IpAddr != "10.0.0.1" {
		t.Fatalf("servers = %+v", servers)
	}

	t.Setenv("NACOS_SERVER_ADDR", "")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "NACOS_SERVER_ADDR") {
		t.Fatalf("ConfigFromEnv without an address: %v", err)
	}
	for _, bad := range []string{"10.0.0.1:x", "10.0.0.1:65000", ":8848", "a b:1"} {
		t.Setenv("NACOS_SERVER_ADDR", bad)
		if _, err := ConfigFromEnv(); err == nil {
			t.Errorf("ConfigFromEnv accepted %q", bad)
		}
	}
}

// TestClientDirs: without LogDir/CacheDir the SDK's files go to a fresh
// private directory under the user cache directory, never the working
// directory; given ones are used as they are.
func TestClientDirs(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	param, dir, err := Config{Addresses: []string{"127.0.0.1"}}.clientParam()
	if err != nil {
		t.Fatal(err)
	}
	defer removeDir(dir)
	base, _ := os.UserCacheDir()
	if !strings.HasPrefix(dir, filepath.Join(base, "lightmesh", "nacos")) {
		t.Fatalf("private dir %s not under %s", dir, base)
	}
	if !strings.HasPrefix(param.ClientConfig.LogDir, dir) || !strings.HasPrefix(param.ClientConfig.CacheDir, dir) {
		t.Fatalf("log dir %s, cache dir %s: want both under %s", param.ClientConfig.LogDir, param.ClientConfig.CacheDir, dir)
	}
	cc := param.ClientConfig
	if !cc.NotLoadCacheAtStart || !cc.DisableUseSnapShot || !cc.UpdateCacheWhenEmpty || cc.TimeoutMs != DefaultTimeoutMs {
		t.Fatalf("client config %+v", cc)
	}
	param, dir2, err := Config{Addresses: []string{"127.0.0.1"}, LogDir: "/x/log", CacheDir: "/x/cache"}.clientParam()
	if err != nil || dir2 != "" || param.ClientConfig.LogDir != "/x/log" || param.ClientConfig.CacheDir != "/x/cache" {
		t.Fatalf("given dirs: %v %q %+v", err, dir2, param.ClientConfig)
	}
	param, dir3, err := Config{Addresses: []string{"127.0.0.1"}, NamespaceID: "public"}.clientParam()
	removeDir(dir3)
	if err != nil || param.ClientConfig.NamespaceId != "" {
		t.Fatalf("namespace \"public\" became %q (%v), want \"\"", param.ClientConfig.NamespaceId, err)
	}
	if _, _, err := (Config{}).clientParam(); err == nil {
		t.Fatal("a Config without addresses was accepted")
	}
}
