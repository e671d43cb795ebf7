package main

import (
	"context"
	"regexp"
	"testing"
	"time"
)

var uuidv7 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestRequestIDReachesSecondHop: through Gin on both hops, a request
// without an id gets one minted that front's handler, front's Gin
// middleware and user-api all see; a lane picks user-api's staging
// instance; a caller's own id is kept.
func TestRequestIDReachesSecondHop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	front, closeAll, err := start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()

	a, echoed, err := Call(ctx, front, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if !uuidv7.MatchString(a.RequestID) || a.UserAPI.RequestID != a.RequestID || a.UserAPI.Header != a.RequestID || echoed != a.RequestID {
		t.Errorf("front minted %q, its Gin middleware answered %q, user-api saw %q in its context and %q in X-Request-Id; want one UUIDv7 everywhere",
			a.RequestID, echoed, a.UserAPI.RequestID, a.UserAPI.Header)
	}
	if a.UserAPI.Instance != "base" {
		t.Errorf("without a lane user-api's %s instance answered, want base", a.UserAPI.Instance)
	}

	a, _, err = Call(ctx, front, "staging", "caller-7")
	if err != nil {
		t.Fatal(err)
	}
	if a.UserAPI.Instance != "staging" || a.RequestID != "caller-7" || a.UserAPI.RequestID != "caller-7" || a.UserAPI.Header != "caller-7" {
		t.Errorf("X-Env: staging, X-Request-Id: caller-7 → %+v; want the staging instance and caller-7 on both hops", a)
	}
}
