package mesh

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestStatusRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"memory", "memory"},
		{"file:/etc/lightmesh/rules.yaml", "file:/etc/lightmesh/rules.yaml"},
		{"etcd://10.0.0.1:2379/lightmesh/rules", "etcd://10.0.0.1:2379/lightmesh/rules"},
		// URL userinfo, with and without a password, and with an @ in it.
		{
			"nacos://admin:hunter2@127.0.0.1:8848?dataId=x&password=hunter2&accessKey=AK&secretKey=SK",
			"nacos://REDACTED@127.0.0.1:8848?dataId=x&password=REDACTED&accessKey=REDACTED&secretKey=REDACTED",
		},
		{"https://ghp_abc@github.com/org/repo", "https://REDACTED@github.com/org/repo"},
		{"redis://:p@ss@cache:6379/0", "redis://REDACTED@cache:6379/0"},
		{`Get "http://u:pw@h/x?y=1": EOF`, `Get "http://REDACTED@h/x?y=1": EOF`},
		// A Go SQL DSN.
		{"open user:pa55@tcp(db:3306)/rules", "open REDACTED@tcp(db:3306)/rules"},
		// Key spellings, case and separators.
		{"PASSWORD=x Passwd=y pwd=z", "PASSWORD=REDACTED Passwd=REDACTED pwd=REDACTED"},
		{"secret_key=a;access-key=b,api_key=c&apiKey=d X-Api-Key=e", "secret_key=REDACTED;access-key=REDACTED,api_key=REDACTED&apiKey=REDACTED X-Api-Key=REDACTED"},
		{"accessToken=t1 refresh_token=t2 client_secret=s", "accessToken=REDACTED refresh_token=REDACTED client_secret=REDACTED"},
		{`token="quoted \"value\"" next`, `token="REDACTED" next`},
		{"token = spaced", "token = REDACTED"},
		{`{"username":"bob","password":"hun\"ter2","accessKey":"AK"}`, `{"username":"bob","password":"REDACTED","accessKey":"REDACTED"}`},
		{"Authorization: Bearer eyJhbGciOi.x-y_z=", "Authorization: Bearer REDACTED"},
		{"authorization: basic dXNlcjpwYXNz==", "authorization: basic REDACTED"},
		// Keys that only contain a keyword, and ordinary settings, stay.
		{"dataId=x&group=DEFAULT&namespace=ns1&tokenBucket=5&accessKeyId=AKID", "dataId=x&group=DEFAULT&namespace=ns1&tokenBucket=5&accessKeyId=AKID"},
		{"password=", "password="},
		// Rule errors keep their text and line breaks; header names that
		// look like secrets in a path are not values.
		{
			"router: invalid document: services.svc.routes[0].match.headers.x-api-key.regex: invalid RE2 expression\nservices.svc.routes[0].match.headers.authorization: must set exactly one of exact, prefix, regex",
			"router: invalid document: services.svc.routes[0].match.headers.x-api-key.regex: invalid RE2 expression\nservices.svc.routes[0].match.headers.authorization: must set exactly one of exact, prefix, regex",
		},
		{
			"services.svc.routes[0].match.headers.x-token.regex: invalid RE2 expression: error parsing regexp: missing closing ): `password=hunter2(`\nservices.svc: bad",
			"services.svc.routes[0].match.headers.x-token.regex: invalid RE2 expression: error parsing regexp: missing closing ): `password=REDACTED\nservices.svc: bad",
		},
		{"watch: nacos 403: token=abc expired\nretrying", "watch: nacos 403: token=REDACTED expired\nretrying"},
		{"Basic auth is not a credential", "Basic auth is not a credential"},
	} {
		if got := redact(tc.in); got != tc.want {
			t.Errorf("redact(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func TestStatusAcceptNegotiation(t *testing.T) {
	for _, tc := range []struct {
		target, accept string
		html, ok       bool
	}{
		{"/", "", false, true},
		{"/", "*/*", false, true},
		{"/", "application/json", false, true},
		{"/", "text/html", true, true},
		{"/", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8", true, true},
		{"/", "application/json, text/html", false, true},
		{"/", "text/html;q=0.5, application/json;q=0.9", false, true},
		{"/", "text/html, application/json;q=0.9", true, true},
		{"/", "text/*, application/*;q=0.2", true, true},
		{"/", "text/html;q=0, */*", false, true},
		{"/", "garbage;;;", false, true},
		{"/?format=html", "application/json", true, true},
		{"/?format=json", "text/html", false, true},
		{"/?format=xml", "", false, false},
	} {
		r := httptest.NewRequest("GET", tc.target, nil)
		if tc.accept != "" {
			r.Header.Set("Accept", tc.accept)
		}
		html, ok := wantsHTML(r)
		if html != tc.html || ok != tc.ok {
			t.Errorf("%s Accept %q: html=%v ok=%v, want %v %v", tc.target, tc.accept, html, ok, tc.html, tc.ok)
		}
	}
}

// TestStatusPageEmpty renders the page for a mesh with nothing yet.
func TestStatusPageEmpty(t *testing.T) {
	var b strings.Builder
	if err := statusPage.Execute(&b, statusView{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"none applied", "No services.", "No circuit breakers.", "No rule source."} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("empty page lacks %q", want)
		}
	}
}

// TestStatusPageOldRejection: a rejection followed by a good document is
// shown as history, with the current state clearly healthy, not as a red
// alert; a rejection newer than the rules in force is the alert.
func TestStatusPageOldRejection(t *testing.T) {
	now := time.Now()
	view := statusView{Now: now, Status: Status{
		Rules:         RulesStatus{Version: "v9", AppliedAt: now.Add(-time.Second)},
		LastRejection: &Rejection{Version: "v8", Error: "bad", At: now.Add(-time.Minute)},
	}}
	var b strings.Builder
	if err := statusPage.Execute(&b, view); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if !strings.Contains(page, "Version <code>v9</code> was applied after the last rejected document.") ||
		!strings.Contains(page, `<div class="history" id="last-rejection">`) || strings.Contains(page, `class="alert"`) {
		t.Errorf("page does not show the rejected v8 as history under a healthy v9:\n%s", page)
	}
	view.Status.LastRejection.At = now
	b.Reset()
	if err := statusPage.Execute(&b, view); err != nil {
		t.Fatal(err)
	}
	if page := b.String(); !strings.Contains(page, "The rules above keep serving.") || !strings.Contains(page, `<div class="alert" id="last-rejection">`) {
		t.Errorf("page does not alert that the old rules keep serving:\n%s", page)
	}
}
