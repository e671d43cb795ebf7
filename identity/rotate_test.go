package identity_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/identity/identitytest"
)

func leafSerial(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}

// SVIDs of both sides rotate every 2 s for 30 s, the CA rolling over in
// the first four (new CA trusted beside the old one, SVIDs reissued by
// it, old CA dropped), while 200 requests a second flow, half on kept-alive connections and half on
// a new connection each: no request fails, and a connection made after a
// rotation presents the new client certificate.
func TestRotationUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("rotation under load runs about 30 s")
	}
	ca1 := newCA(t)
	ca2, err := identitytest.NewCA("example.org")
	if err != nil {
		t.Fatal(err)
	}
	api, apiDir := workload(t, ca1, "/api")
	front, frontDir := workload(t, ca1, "/front")

	var seen sync.Map // client certificate serial -> true, as the server saw it
	addr, _ := serve(t, api, 0, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.TLS.PeerCertificates[0].SerialNumber.String(), true)
	}))
	kept := mtlsClient(front, "spiffe://example.org/api", true)
	fresh := mtlsClient(front, "spiffe://example.org/api", false)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		c := kept
		if w%2 == 1 {
			c = fresh
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(20 * time.Millisecond) // 4 × 50/s = 200/s
			defer tick.Stop()
			for n := 0; n < 600; n++ { // bounded: 12 s at most
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				resp, err := c.Get("https://" + addr + "/")
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = http.ErrNotSupported
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				ok.Add(1)
			}
		}()
	}

	// The steps of a CA rollover, one every 2 s, each also a new SVID.
	steps := []struct {
		ca    *identitytest.CA
		extra []byte
	}{
		{ca1, ca2.BundlePEM()}, // trust the next CA beside the current one
		{ca2, ca1.BundlePEM()}, // reissue from the next CA
		{ca2, ca1.BundlePEM()}, // a plain SVID rotation
		{ca2, nil},             // drop the old CA
	}
	// Then plain SVID rotations every 2 s, to 30 s of rotation in all.
	for len(steps) < 15 {
		steps = append(steps, steps[len(steps)-1])
	}
	for i, s := range steps {
		time.Sleep(2 * time.Second)
		for _, d := range []struct{ dir, path string }{{apiDir, "/api"}, {frontDir, "/front"}} {
			if _, err := s.ca.WriteFiles(d.dir, d.path, s.extra); err != nil {
				t.Fatal(err)
			}
		}
		want := leafSerial(t, frontDir+"/svid.pem")
		// Once the sources have polled (every 1 s), a new connection
		// presents it.
		deadline := time.Now().Add(3 * time.Second)
		for {
			resp, err := mtlsClient(front, "spiffe://example.org/api", false).Get("https://" + addr + "/")
			if err == nil {
				resp.Body.Close()
			}
			if _, ok := seen.Load(want); ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("step %d: the server never saw the new client certificate %s on a new connection", i, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during rotation; first: %v", failed.Load(), ok.Load()+failed.Load(), firstErr.Load())
	}
	if ok.Load() < 1000 {
		t.Fatalf("only %d requests completed; the load did not run", ok.Load())
	}
	t.Logf("%d requests, 0 failed, across %d rotations", ok.Load(), len(steps))
}
