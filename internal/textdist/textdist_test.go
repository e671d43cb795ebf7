package textdist

import "testing"

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"user-api", "user-api", 0}, {"user-ap", "user-api", 1}, {"usre-api", "user-api", 2},
		{"kitten", "sitting", 3}, {string(make([]byte, 65)), "x", 99},
	} {
		if got := Distance(tc.a, tc.b); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
	if got := Closest("user-ap", []string{"order-api", "user-api"}, 2); got != "user-api" {
		t.Errorf("Closest = %q", got)
	}
	if got := Closest("billing", []string{"order-api", "user-api"}, 2); got != "" {
		t.Errorf("Closest of a name near none = %q", got)
	}
}
