package nacos

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
)

// TestSoak runs meshtest.RunSoak against the real Nacos server in
// LIGHTMESH_NACOS_ADDR for LIGHTMESH_SOAK (skipped without it):
//
//	LIGHTMESH_SOAK=10m LIGHTMESH_NACOS_ADDR=127.0.0.1:8848 go test -run TestSoak -timeout 20m -v ./discovery/nacos/
//
// The instances register from a process of their own, as instances do:
// every naming client the SDK closes leaves a goroutine and a UDP socket
// behind (its push receiver blocks in a read that nothing ends), which
// in the mesh's process would hide the mesh's own resources.
func TestSoak(t *testing.T) {
	d := meshtest.SoakDuration(t)
	cfg := testConfig(t)
	service, dataID := unique("soak-api"), unique("soak-rules")
	pub := newPublisher(t, cfg, "")
	pub.publish(t, dataID, meshtest.LaneRules(service))
	rules, err := NewRuleSource(cfg, dataID, "")
	if err != nil {
		t.Fatal(err)
	}
	disc, err := NewDiscovery(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	m := newMesh(t, mesh.WithRules(rules), mesh.WithDiscovery(disc), mesh.WithServices(service))
	client := &http.Client{Transport: m.Transport(nil)}
	reg := startRegistrar(t, service)
	meshtest.RunSoak(t, d, client, service, meshtest.SoakPlane{
		Publish: func(doc string) error {
			ok, err := pub.client.publish(vo.ConfigParam{DataId: dataID, Group: pub.group, Content: doc, Type: "yaml"})
			if err == nil && !ok {
				err = errors.New("server refused")
			}
			return err
		},
		Join: func(b *meshtest.Backend, env string) (func() error, error) {
			if err := reg.do("join", b.Addr(), env); err != nil {
				return nil, err
			}
			return func() error { return reg.do("leave", b.Addr(), env) }, nil
		},
		Applied: func(doc string) bool { return m.Status().Rules.Version == md5hex(doc) },
	})
}

// registrar drives a child process that registers and deregisters
// instances on command (TestSoakRegistrar).
type registrar struct {
	mu  sync.Mutex
	in  io.Writer
	out *bufio.Scanner
}

func startRegistrar(t *testing.T, service string) *registrar {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSoakRegistrar$")
	cmd.Env = append(os.Environ(), "LIGHTMESH_SOAK_REGISTRAR="+service)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close() // the child deregisters everything and exits
		cmd.Wait()
	})
	return &registrar{in: in, out: bufio.NewScanner(out)}
}

// do sends one command and waits for the child's answer.
func (r *registrar) do(verb, addr, env string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := fmt.Fprintln(r.in, verb, addr, env); err != nil {
		return err
	}
	for r.out.Scan() {
		line := r.out.Text()
		if answer, ok := strings.CutPrefix(line, "registrar: "); ok {
			if answer != "ok" {
				return errors.New(answer)
			}
			return nil
		}
	}
	return fmt.Errorf("registrar exited: %v", r.out.Err())
}

// TestSoakRegistrar is the registrar child of TestSoak: it reads "join
// addr env" and "leave addr env" lines and answers each with
// "registrar: ok" or the error. It does nothing when not started so.
func TestSoakRegistrar(t *testing.T) {
	service := os.Getenv("LIGHTMESH_SOAK_REGISTRAR")
	if service == "" {
		t.Skip("the registrar child of TestSoak")
	}
	cfg := testConfig(t)
	regs := map[string]*Registration{}
	defer func() {
		for _, r := range regs {
			r.Close()
		}
	}()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var verb, addr, env string
		fmt.Sscan(in.Text(), &verb, &addr, &env)
		var err error
		switch verb {
		case "join":
			var r *Registration
			if r, err = Register(cfg, service, "", discovery.Instance{Address: addr, Labels: map[string]string{"env": env}}); err == nil {
				regs[addr] = r
			}
		case "leave":
			if r := regs[addr]; r != nil {
				err = r.Close()
				delete(regs, addr)
			}
		default:
			err = fmt.Errorf("unknown command %q", in.Text())
		}
		answer := "ok"
		if err != nil {
			answer = strings.ReplaceAll(err.Error(), "\n", " ")
		}
		fmt.Println("registrar: " + answer)
	}
}
