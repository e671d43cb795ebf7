package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery/etcd/etcdtest"
	"github.com/lightmesh/lightmesh/discovery/nacos"
)

// TestPushNamesProblemsAtTheLinesOfTheFileEdited: in the documented
// workflow (get > FILE, edit, push -f FILE) push names each problem at the
// line and column of FILE on disk, as validate does for FILE, whether the
// version line of get opens the file or an editor's modeline is above it.
func TestPushNamesProblemsAtTheLinesOfTheFileEdited(t *testing.T) {
	srv := etcdtest.Start(t)
	location := "etcd://" + srv.Endpoint() + "/lightmesh/rules"
	if code, out, errs := binary(t, nil, "push", "-f", writeFile(t, "v1.yaml", casV1), location); code != 0 {
		t.Fatalf("push: exit %d\n%s%s", code, out, errs)
	}
	_, read, _ := binary(t, nil, "get", location)
	for name, edited := range map[string]string{
		"as get wrote it":     strings.Replace(read, "attempts: 2", "attempts: 20", 1),
		"below a modeline":    "# yaml-language-server: $schema=./lightmesh.schema.json\n#\n" + strings.Replace(read, "attempts: 2", "attempts: 20", 1),
		"with CRLF line ends": strings.ReplaceAll(strings.Replace(read, "attempts: 2", "attempts: 20", 1), "\n", "\r\n"),
	} {
		file := writeFile(t, "user-api.yaml", edited)
		line := 0
		for i, l := range strings.Split(edited, "\n") {
			if strings.Contains(l, "attempts: 20") {
				line = i + 1
			}
		}
		want := fmt.Sprintf("%s:%d:13: services.user-api.retry.attempts: must be 0..10\n", file, line)
		if _, vout, _ := binary(t, nil, "validate", file); vout != want {
			t.Fatalf("%s: validate printed %q, want %q", name, vout, want)
		}
		code, out, errs := binary(t, nil, "push", "-f", file, location)
		if code != 1 || !strings.HasPrefix(errs, want) {
			t.Errorf("%s: push: exit %d, want 1 and the problem where validate puts it, %q\n%s%s", name, code, want, out, errs)
		}
	}
}

// TestPushOverAnEmptiedKeyCreatesTheDocument: an etcd key emptied (value
// "") holds no document, as a deleted one: get says so, the dry run says
// the push would create it, and the push does create it, over the key's
// real version. A file read before the key was emptied is still refused
// as a conflict.
func TestPushOverAnEmptiedKeyCreatesTheDocument(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	const key = "/lightmesh/rules/user-api"
	location := "etcd://" + srv.Endpoint() + key
	if code, out, errs := binary(t, nil, "push", "-f", writeFile(t, "v1.yaml", casV1), location); code != 0 {
		t.Fatalf("push: exit %d\n%s%s", code, out, errs)
	}
	_, read, _ := binary(t, nil, "get", location)
	stale := writeFile(t, "stale.yaml", strings.Replace(read, "attempts: 2", "attempts: 3", 1))
	if _, err := cli.Put(t.Context(), key, ""); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := binary(t, nil, "get", location); code != 1 || !strings.Contains(errs, "no document there") {
		t.Fatalf("get of the emptied key: exit %d %s", code, errs)
	}

	code, out, errs := binary(t, nil, "push", "-f", stale, location)
	if code != 1 || !strings.Contains(errs, "changed since it was read") || !strings.Contains(errs, "the document was deleted") {
		t.Errorf("push of a file read before the key was emptied: exit %d, want a conflict\n%s%s", code, out, errs)
	}

	fresh := writeFile(t, "user-api.yaml", casV1)
	code, out, errs = binary(t, nil, "push", "--dry-run", "-f", fresh, location)
	if code != 0 || !strings.Contains(out, "holds no document: the push would create it") || strings.Contains(out, "would be refused") {
		t.Errorf("dry run over the emptied key: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = binary(t, nil, "push", "-f", fresh, location)
	if code != 0 || !strings.Contains(out, "published "+fresh) || errs != "" {
		t.Errorf("push over the emptied key: exit %d, want it published as the dry run said\n%s%s", code, out, errs)
	}
	if _, now, _ := binary(t, nil, "get", location); !strings.Contains(now, casV1) {
		t.Errorf("after the push the key holds:\n%s", now)
	}
}

// TestPushToTheDefaultsNameValidatesTheDefaultsDocument: a location named
// _defaults (rules.DefaultsName) is the defaults document of the
// per-service layout; a push there without --service validates the file
// as that document: one every mesh would reject is refused with the
// problems validate --service _defaults names, and a valid one is
// published.
func TestPushToTheDefaultsNameValidatesTheDefaultsDocument(t *testing.T) {
	srv := etcdtest.Start(t)
	location := "etcd://" + srv.Endpoint() + "/lightmesh/rules/_defaults"
	whole := writeFile(t, "_defaults.yaml", "apiVersion: lightmesh/v1\ndefaults: {timeout: 2s}\nservices:\n  user-api: {timeout: 1s}\n")
	_, problems, _ := binary(t, nil, "validate", "--service", "_defaults", whole)
	if !strings.Contains(problems, whole+":4:3: services.user-api: the defaults document holds defaults only") {
		t.Fatalf("validate --service _defaults printed:\n%s", problems)
	}
	code, out, errs := binary(t, nil, "push", "-f", whole, location)
	if code != 1 || !strings.HasPrefix(errs, problems) || !strings.Contains(errs, "as the defaults document of the per-service layout") || !strings.Contains(errs, "nothing was published") {
		t.Errorf("push of a whole document to _defaults: exit %d, want 1 and the problems of validate --service _defaults:\n%s\ngot:\n%s%s", code, problems, out, errs)
	}
	if code, now, _ := binary(t, nil, "get", location); code == 0 {
		t.Errorf("after the refused push _defaults holds:\n%s", now)
	}
	defaults := writeFile(t, "defaults.yaml", "apiVersion: lightmesh/v1\ndefaults: {timeout: 2s}\n")
	if code, out, errs := binary(t, nil, "push", "-f", defaults, location); code != 0 {
		t.Errorf("push of a defaults document to _defaults: exit %d\n%s%s", code, out, errs)
	}
}

// TestPushKnowsTheSameItemWrittenAnotherWay: a file read through one
// spelling of a location and pushed through another naming the same item
// (hosts in another order; Nacos's public namespace written "" or
// public) is the file read at its version: the push publishes. Other
// hosts (localhost for 127.0.0.1) may be other servers: refused, with
// the advice to push where the file was read; and no refusal advises a
// get into the file pushed, which would lose the edit.
func TestPushKnowsTheSameItemWrittenAnotherWay(t *testing.T) {
	srv := etcdtest.Start(t)
	_, port, _ := net.SplitHostPort(srv.Endpoint())
	hosts := "127.0.0.1:" + port + ",localhost:" + port
	reversed := "localhost:" + port + ",127.0.0.1:" + port
	cases := []struct{ readAt, pushTo string }{
		{"etcd://" + hosts + "/lightmesh/rules", "etcd://" + reversed + "/lightmesh/rules"},
	}
	var env map[string]string
	if os.Getenv("LIGHTMESH_NACOS_ADDR") != "" {
		var location string
		location, env = nacosLocation(t, "user-api")
		cases = append(cases, struct{ readAt, pushTo string }{location + "?namespace=public", location})
	}
	readEdited := func(readAt, pushTo string) string {
		t.Helper()
		if code, out, errs := binary(t, env, "push", "--force", "-f", writeFile(t, "v1.yaml", casV1), pushTo); code != 0 {
			t.Fatalf("push: exit %d\n%s%s", code, out, errs)
		}
		var read string
		for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			// Nacos serves reads from a cache refreshed just after a write.
			if _, read, _ = binary(t, env, "get", readAt); strings.Contains(read, casV1) || time.Now().After(deadline) {
				break
			}
		}
		return writeFile(t, "edited.yaml", strings.Replace(read, "attempts: 2", "attempts: 3", 1))
	}
	for _, c := range cases {
		edited := readEdited(c.readAt, c.pushTo)
		if code, out, errs := binary(t, env, "push", "-f", edited, c.pushTo); code != 0 || errs != "" {
			t.Errorf("get %s, edit, push %s: exit %d, want published\n%s%s", c.readAt, c.pushTo, code, out, errs)
		}
	}

	readAt, pushTo := "etcd://localhost:"+port+"/lightmesh/rules", "etcd://127.0.0.1:"+port+"/lightmesh/rules"
	edited := readEdited(readAt, pushTo)
	code, out, errs := binary(t, nil, "push", "-f", edited, pushTo)
	live := strings.TrimSuffix(edited, ".yaml") + ".live.yaml"
	for _, want := range []string{
		"was read from " + readAt + ", not " + pushTo,
		"if they are the same servers, push to " + readAt + ", where the version read is checked",
		"lightmesh get " + pushTo + " > " + live + ", carry your edit over from " + edited,
	} {
		if code != 1 || !strings.Contains(errs, want) {
			t.Errorf("push through other hosts: exit %d, want 1 and %q\n%s%s", code, want, out, errs)
		}
	}
	if strings.Contains(errs, "> "+edited) {
		t.Errorf("the advice gets into the file pushed, which holds the edit:\n%s", errs)
	}
}

// TestSameItem: the locations that name one item compare equal as get
// wrote them; others do not.
func TestSameItem(t *testing.T) {
	for _, tc := range []struct {
		from, to string
		same     bool
	}{
		{"nacos://h:8848/G/d?namespace=public", "nacos://h:8848/G/d", true},
		{"nacos://h:8848/G/d", "nacos://h:8848/G/d?namespace=public", true},
		{"nacos://a:8848,b:8848/G/d", "nacos://b:8848,a:8848/G/d", true},
		{"etcd://a:2379,b:2379/k", "etcd://b:2379,a:2379/k", true},
		{"nacos://h:8848/G/d?namespace=dev", "nacos://h:8848/G/d", false},
		{"etcd://localhost:2379/k", "etcd://127.0.0.1:2379/k", false},
		{"etcd://a:2379/k", "etcd://a:2379/k-staging", false},
		{"etcd://a:2379/k", "nacos://a:2379/G/k", false},
		{"not a location", "etcd://a:2379/k", false},
	} {
		to, err := parseLocation(tc.to)
		if err != nil {
			t.Fatal(err)
		}
		if got := sameItem(tc.from, to); got != tc.same {
			t.Errorf("sameItem(%s, %s) = %v, want %v", tc.from, tc.to, got, tc.same)
		}
	}
}

// silentServer listens on a fresh port and on that port + 1000 (Nacos's
// gRPC port), accepts, and never answers, until the test ends; it
// returns the address.
func silentServer(t *testing.T) string {
	t.Helper()
	var conns []net.Conn
	var mu sync.Mutex
	accept := func(ln net.Listener) {
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		grpc, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1000))
		if err != nil {
			ln.Close()
			continue
		}
		accept(ln)
		accept(grpc)
		return ln.Addr().String()
	}
	t.Fatal("no free pair of ports")
	return ""
}

// TestInterruptEndsTheWait: Ctrl-C (SIGINT) ends a command waiting on a
// Nacos or etcd server that does not answer within a second, saying it
// was interrupted, and a push interrupted before it published says that
// nothing was published.
func TestInterruptEndsTheWait(t *testing.T) {
	silent := silentServer(t)
	file := writeFile(t, "rules.yaml", casV1)
	for _, args := range [][]string{
		{"get", "nacos://" + silent + "/G/user-api"},
		{"get", "etcd://" + silent + "/lightmesh/rules"},
		{"push", "-f", file, "nacos://" + silent + "/G/user-api"},
		{"push", "-f", file, "etcd://" + silent + "/lightmesh/rules"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		cmd := exec.CommandContext(ctx, builtBinary, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		sent := time.Now()
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
		took := time.Since(sent)
		cancel()
		if took > time.Second {
			t.Errorf("%v: ended %v after Ctrl-C, want within a second", args, took.Round(time.Millisecond))
		}
		want := "lightmesh " + args[0] + ": interrupted while waiting for " + args[len(args)-1]
		if args[0] == "push" {
			want += "; nothing was published"
		}
		if got := strings.TrimSpace(errb.String()); got != want {
			t.Errorf("%v: stderr %q, want %q", args, got, want)
		}
	}
}

// TestPushInterruptedAfterThePublishWasSent: a push interrupted while
// Nacos has not answered the publish it was sent ends at once and says
// the publish may or may not have been applied, and how to see.
func TestPushInterruptedAfterThePublishWasSent(t *testing.T) {
	var stdout, stderr bytes.Buffer
	published := make(chan struct{})
	unblock := make(chan struct{})
	defer close(unblock)
	c := &cli{
		stdout: &stdout, stderr: &stderr, env: func(string) string { return "" }, commands: allCommands(),
		nacosFetch: func(nacos.Config, string, string) (string, error) { return "", nil },
		nacosPublish: func(nacos.Config, string, string, string, string) error {
			close(published)
			select { // a server that does not answer for a while
			case <-unblock:
			case <-time.After(3 * time.Second):
			}
			return nil
		},
	}
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-published
		cancel()
	}()
	const location = "nacos://127.0.0.1:8848/G/user-api"
	start := time.Now()
	err := runPush(ctx, c, []string{"-f", writeFile(t, "rules.yaml", casV1), location})
	want := "interrupted after the publish was sent to " + location + ": it may or may not have been applied; run lightmesh get " + location + " to see"
	if err == nil || err.Error() != want || time.Since(start) > time.Second {
		t.Errorf("push interrupted after the publish was sent: %v after %v, want %q at once\n%s%s", err, time.Since(start), want, stdout.String(), stderr.String())
	}
}

// TestPushWhoseAnswerWasLostIsNotAConflict: a Nacos publish that the
// server applied but whose answer did not come back in time (a timeout)
// is a push that worked, not "someone published since": the live document
// is the one pushed.
func TestPushWhoseAnswerWasLostIsNotAConflict(t *testing.T) {
	location, env := nacosLocation(t, "user-api")
	c := &cli{
		stdout: new(bytes.Buffer), stderr: new(bytes.Buffer), env: func(k string) string { return env[k] }, commands: allCommands(),
		nacosFetch: nacos.Fetch,
		// The server applies the publish; its answer is lost.
		nacosPublish: func(cfg nacos.Config, dataID, group, content, casMD5 string) error {
			if err := nacos.PublishIfMD5(cfg, dataID, group, content, casMD5); err != nil {
				return err
			}
			return errors.New("nacos: publish: context deadline exceeded")
		},
	}
	for i, doc := range []string{casV1, strings.Replace(casV1, "timeout: 2s", "timeout: 3s", 1)} {
		file := writeFile(t, "user-api.yaml", doc)
		if i > 0 { // an edit of the document read, as get wrote it
			var out bytes.Buffer
			g := *c
			g.stdout = &out
			if err := runGet(t.Context(), &g, []string{location}); err != nil {
				t.Fatalf("get: %v", err)
			}
			read := out.String()
			file = writeFile(t, "user-api.yaml", read[:strings.Index(read, "\n")+1]+doc)
		}
		if err := runPush(t.Context(), c, []string{"-f", file, location}); err != nil {
			t.Fatalf("push %d whose answer was lost: %v\n%s%s", i+1, err, c.stdout, c.stderr)
		}
		live, err := nacos.Fetch(c.nacosConfig(mustLocation(t, location)), mustLocation(t, location).dataID, mustLocation(t, location).group)
		if err != nil || live != doc {
			t.Fatalf("push %d: the live document is %q (%v), want the one pushed", i+1, live, err)
		}
	}
}

func mustLocation(t *testing.T, s string) location {
	t.Helper()
	l, err := parseLocation(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
