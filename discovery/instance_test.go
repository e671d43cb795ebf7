package discovery

import (
	"fmt"
	"strings"
	"testing"
)

func manyLabels(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%d", i)] = "v"
	}
	return m
}

func TestInstanceValidate(t *testing.T) {
	tests := []struct {
		name string
		in   Instance
		want string // "" for valid, else a substring of the error
	}{
		{"ipv4", Instance{Address: "10.0.0.1:8080"}, ""},
		{"ipv6", Instance{Address: "[::1]:443"}, ""},
		{"hostname", Instance{Address: "user-api.default.svc:80"}, ""},
		{"lowest port", Instance{Address: "h:1"}, ""},
		{"highest port", Instance{Address: "h:65535"}, ""},
		{"weight zero", Instance{Address: "h:80", Weight: 0}, ""},
		{"weight", Instance{Address: "h:80", Weight: 100}, ""},
		{"unhealthy is still valid", Instance{Address: "h:80", Unhealthy: true}, ""},
		{"labels at the limits", Instance{Address: "h:80", Labels: map[string]string{strings.Repeat("k", MaxLabelKeyLen): strings.Repeat("v", MaxLabelValueLen), "empty": ""}}, ""},
		{"64 labels", Instance{Address: "h:80", Labels: manyLabels(MaxLabels)}, ""},

		{"empty address", Instance{}, `discovery: instance address "": want host:port`},
		{"no port", Instance{Address: "10.0.0.1"}, `discovery: instance address "10.0.0.1": want host:port`},
		{"no host", Instance{Address: ":80"}, `discovery: instance address ":80": want host:port`},
		{"bare ipv6", Instance{Address: "::1"}, "want host:port"},
		{"ipv6 without brackets", Instance{Address: "::1:80"}, "want host:port"},
		{"empty port", Instance{Address: "h:"}, `discovery: instance address "h:": invalid port`},
		{"port zero", Instance{Address: "h:0"}, "invalid port"},
		{"port too large", Instance{Address: "h:65536"}, "invalid port"},
		{"port negative", Instance{Address: "h:-1"}, "invalid port"},
		{"port not a number", Instance{Address: "h:http"}, "invalid port"},
		{"url, not an address", Instance{Address: "http://h:80"}, "want host:port"},
		{"negative weight", Instance{Address: "h:80", Weight: -1}, "discovery: instance h:80: weight -1 must be >= 0"},
		{"65 labels", Instance{Address: "h:80", Labels: manyLabels(MaxLabels + 1)}, "discovery: instance h:80: 65 labels, over the limit of 64"},
		{"empty label key", Instance{Address: "h:80", Labels: map[string]string{"": "v"}}, `discovery: instance h:80: label "": key must be 1..128 bytes and value at most 256`},
		{"label key too long", Instance{Address: "h:80", Labels: map[string]string{strings.Repeat("k", MaxLabelKeyLen+1): "v"}}, "key must be 1..128 bytes"},
		{"host at the limit", Instance{Address: strings.Repeat("h", MaxHostLen) + ":80"}, ""},
		{"host too long", Instance{Address: strings.Repeat("h", 1<<20) + ":80"}, `discovery: instance address "` + strings.Repeat("h", 80) + `"...: host is 1048576 bytes, over the limit of 253`},
		{"port padded", Instance{Address: "h:" + strings.Repeat("0", 1<<20) + "80"}, "invalid port"},
		{"address too long, no port", Instance{Address: strings.Repeat("h", 1<<20)}, `discovery: instance address "` + strings.Repeat("h", 80) + `": want host:port`},
		{"label value too long", Instance{Address: "h:80", Labels: map[string]string{"env": strings.Repeat("v", MaxLabelValueLen+1)}}, `label "env": key must be 1..128 bytes and value at most 256`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.in.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate accepted %+v", tt.in)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("error %q does not hold %q", err, tt.want)
			}
		})
	}
	// The error quotes at most 40 bytes of an oversized key.
	err := Instance{Address: "h:80", Labels: map[string]string{strings.Repeat("k", 1000): "v"}}.Validate()
	if err == nil || len(err.Error()) > 200 {
		t.Fatalf("error for a 1000-byte key: %v", err)
	}
}

func TestInstanceHasLabels(t *testing.T) {
	in := Instance{Address: "h:80", Labels: map[string]string{"env": "staging", "zone": "a", "empty": ""}}
	tests := []struct {
		want map[string]string
		ok   bool
	}{
		{nil, true},
		{map[string]string{}, true},
		{map[string]string{"env": "staging"}, true},
		{map[string]string{"env": "staging", "zone": "a"}, true},
		{map[string]string{"empty": ""}, true},
		{map[string]string{"env": "base"}, false},
		{map[string]string{"env": "staging", "zone": "b"}, false},
		{map[string]string{"missing": ""}, false}, // absent is not empty
		{map[string]string{"ENV": "staging"}, false},
	}
	for _, tt := range tests {
		if got := in.HasLabels(tt.want); got != tt.ok {
			t.Errorf("HasLabels(%v) = %v, want %v", tt.want, got, tt.ok)
		}
	}
	var bare Instance
	if !bare.HasLabels(nil) || bare.HasLabels(map[string]string{"env": ""}) {
		t.Fatal("instance without labels")
	}
}
