package router_test

import (
	"os"
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/router"
)

// TestReadmeOnePassExample: the README's example of a rejected document
// is rejected with exactly the problems it shows.
func TestReadmeOnePassExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "fix is known. This document:\n\n```yaml\n")
	doc, rest, ok2 := strings.Cut(rest, "```\n")
	_, rest, ok3 := strings.Cut(rest, "is rejected with:\n\n```\n")
	want, _, ok4 := strings.Cut(rest, "```\n")
	if !ok || !ok2 || !ok3 || !ok4 {
		t.Fatal("the README's one-pass example is not where this test looks for it")
	}
	_, err = router.Load([]byte(doc))
	if err == nil || err.Error() != strings.TrimSuffix(want, "\n") {
		t.Errorf("the README's example is rejected with:\n%v\nthe README says:\n%s", err, want)
	}
}
