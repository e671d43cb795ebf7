package main

import (
	"regexp"
	"strings"
	"testing"
)

// The example says what happened: how long a change took from the put
// to the mesh applying it (not from reading the buffered event), and
// the last rejection with its revision and reason, not a bare number.
func TestEtcdExample(t *testing.T) {
	t.Setenv("ETCD_ENDPOINTS", "")
	var out strings.Builder
	if err := run(&out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	text := out.String()
	if !regexp.MustCompile(`applied revision \d+ [0-9.]+[µm]?s after the put began`).MatchString(text) {
		t.Errorf("no time from the put to the apply:\n%s", text)
	}
	if !regexp.MustCompile(`status: last rejection is revision \d+, rejected at [0-9:]+: router: invalid document: services\.user-api\.routes\[0\]\.destinations\[0\]\.subset: unknown subset "canary"`).MatchString(text) {
		t.Errorf("the last rejection is not shown with its revision and reason:\n%s", text)
	}
}
