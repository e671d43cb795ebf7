package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// The example holds what it shows: run returns an error when the valid
// update did not apply or the broken one changed user-api's routing.
func TestPerService(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), `unknown subset "bsae"`) {
		t.Errorf("the status printed does not show the rejection:\n%s", out.String())
	}
	// What each document takes from the defaults is said in words, not
	// as an empty Go slice.
	if strings.Contains(out.String(), "[]") || !strings.Contains(out.String(), "takes timeout, retry from _defaults") {
		t.Errorf("the documents' defaults are not said plainly:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "(current: its last good version keeps serving)") {
		t.Errorf("the rejection is not marked current:\n%s", out.String())
	}
}
