package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// The example holds what it shows: run fails when a call in any of the
// three lanes did not land on its lane's instance where one exists and
// on base elsewhere, at each of the three hops.
func TestLanesExample(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"user-api   feat-a (1), feat-b (1)", "lane feat-c: no instance of user-api → base; lane kept for the next hop"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
