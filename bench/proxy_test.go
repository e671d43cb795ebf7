package bench

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkProxyHop measures the latency a sidecar adds: the same
// loopback GET as BenchmarkTransport sent
//
//   - bare: straight to the upstream;
//   - lightmesh=full: through the full lightmesh client stack, in process;
//   - proxy=nginx, proxy=haproxy: with a bare transport to a local reverse
//     proxy (one worker process / thread, keep-alive to the client and to
//     the upstream, no logging) that forwards to the upstream, as a
//     sidecar would.
//
// The proxies are the OS packages (apt-get install nginx-light haproxy);
// each is started from the benchmark with a generated configuration in
// b.TempDir() on a free loopback port, and skipped with a message when
// its binary is not installed. A sidecar's added latency is proxy − bare,
// lightmesh's is lightmesh=full − bare.
func BenchmarkProxyHop(b *testing.B) {
	srv := upstream(b)
	addr := strings.TrimPrefix(srv.URL, "http://")

	b.Run("path=bare", func(b *testing.B) {
		serial(b, newBase(b), newRequest(b, srv.URL+"/"))
	})
	b.Run("path=lightmesh-full", func(b *testing.B) {
		serial(b, fullStack(b, addr), newRequest(b, "http://svc/"))
	})
	b.Run("path=nginx", func(b *testing.B) {
		url, _ := startNginx(b, addr)
		serial(b, newBase(b), newRequest(b, url))
	})
	b.Run("path=haproxy", func(b *testing.B) {
		url, _ := startHAProxy(b, addr)
		serial(b, newBase(b), newRequest(b, url))
	})
}

// startNginx runs nginx as a reverse proxy to upstream and returns its URL
// and process group.
func startNginx(b *testing.B, upstream string) (string, int) {
	bin := lookBinary(b, "nginx", "apt-get install nginx-light")
	dir := b.TempDir()
	port := freePort(b)
	conf := fmt.Sprintf(`daemon off;
master_process on;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    upstream app {
        server %[2]s;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:%[3]d;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`, dir, upstream, port)
	path := filepath.Join(dir, "nginx.conf")
	writeFile(b, path, conf)
	// -e: the error log before the configuration is read; -p: prefix for
	// any relative path.
	pgid := startProxy(b, dir, port, bin, "-e", filepath.Join(dir, "error.log"), "-p", dir+"/", "-c", path)
	return fmt.Sprintf("http://127.0.0.1:%d/", port), pgid
}

// startHAProxy runs HAProxy as a reverse proxy to upstream and returns its
// URL and process group.
func startHAProxy(b *testing.B, upstream string) (string, int) {
	bin := lookBinary(b, "haproxy", "apt-get install haproxy")
	dir := b.TempDir()
	port := freePort(b)
	conf := fmt.Sprintf(`global
    nbthread 1
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    option http-no-delay
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend sidecar
    bind 127.0.0.1:%[1]d
    default_backend app

backend app
    server app %[2]s
`, port, upstream)
	path := filepath.Join(dir, "haproxy.cfg")
	writeFile(b, path, conf)
	// -db: stay in the foreground.
	pgid := startProxy(b, dir, port, bin, "-db", "-f", path)
	return fmt.Sprintf("http://127.0.0.1:%d/", port), pgid
}

// lookBinary finds name on PATH or in /usr/sbin (where Debian puts nginx
// and haproxy, often off a non-root PATH), or skips the benchmark.
func lookBinary(b *testing.B, name, install string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := filepath.Join("/usr/sbin", name); isExecutable(p) {
		return p
	}
	b.Skipf("%s is not installed (%s); skipping the %s proxy hop", name, install, name)
	return ""
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(b *testing.B) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writeFile(b *testing.B, path, data string) {
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		b.Fatal(err)
	}
}

// startProxy starts bin with args in its own process group, output to
// dir/output.log, waits until a GET through port answers 200 and returns
// the process group. The proxy is stopped (SIGTERM, then SIGKILL to its
// process group) when the benchmark ends.
func startProxy(b *testing.B, dir string, port int, bin string, args ...string) int {
	b.Helper()
	out, err := os.Create(filepath.Join(dir, "output.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		b.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); out.Close() }()
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})

	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				client.CloseIdleConnections()
				return cmd.Process.Pid
			}
			err = errors.New(resp.Status)
		}
		select {
		case werr := <-exited:
			exited <- werr
			b.Fatalf("%s exited before serving (%v):\n%s", filepath.Base(bin), werr, logs(dir))
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s not serving on %s after 10s (last error: %v):\n%s", filepath.Base(bin), url, err, logs(dir))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logs returns the proxy's output and error logs for a failure message.
func logs(dir string) string {
	var sb strings.Builder
	for _, name := range []string{"output.log", "error.log"} {
		if data, err := os.ReadFile(filepath.Join(dir, name)); err == nil && len(data) > 0 {
			fmt.Fprintf(&sb, "--- %s\n%s", name, data)
		}
	}
	return sb.String()
}
