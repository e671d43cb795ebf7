package mesh

import (
	"regexp"
	"strings"
)

// redactStatus returns st with credentials removed from its free-text
// fields. st is a copy from Mesh.Status, so its LastRejection may be
// changed in place.
func redactStatus(st Status) Status {
	st.Rules.Source = redact(st.Rules.Source)
	st.Watcher.LastError = redact(st.Watcher.LastError)
	if st.Discovery != nil {
		d := *st.Discovery
		d.LastError = redact(d.LastError)
		st.Discovery = &d
	}
	if st.LastRejection != nil {
		st.LastRejection.Error = redact(st.LastRejection.Error)
	}
	for i := range st.Documents {
		d := &st.Documents[i]
		d.Source = redact(d.Source)
		if d.LastRejection != nil {
			d.LastRejection.Error = redact(d.LastRejection.Error)
		}
	}
	return st
}

const redacted = "REDACTED"

var (
	// urlUserinfo matches the userinfo of a URL with a scheme, up to the
	// last @ before the path.
	urlUserinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s]+@`)
	// dsnUserinfo matches user:password@ without a scheme, as in Go SQL
	// DSNs (user:pass@tcp(host)/db).
	dsnUserinfo = regexp.MustCompile(`(^|[\s"'(=,;])[^\s:/@"'()]+:[^\s/"']+@`)
	// keyValue matches key=value and key="value", as in query strings and
	// logfmt; group 1 is the key, group 2 or 3 the value.
	keyValue = regexp.MustCompile(`([A-Za-z0-9_.\-]+)[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)+)"|([^\s&;,"']+))`)
	// jsonMember matches "key": "value"; group 1 is the key, group 2 the
	// value.
	jsonMember = regexp.MustCompile(`"([A-Za-z0-9_.\-]+)"\s*:\s*"((?:[^"\\]|\\.)+)"`)
	// authScheme matches bearer tokens and the credentials of a Basic
	// Authorization header; group 1 is what precedes them.
	authScheme = regexp.MustCompile(`(?i)\b(bearer|authorization:\s*basic)\s+[A-Za-z0-9._~+/\-]+=*`)
)

// secretSuffixes are the endings, after lower-casing and dropping '-',
// '_' and '.', of the keys whose values redact hides.
var secretSuffixes = []string{
	"password", "passwd", "pwd", "secret", "secretkey", "accesskey", "token",
	"apikey", "credential", "credentials", "privatekey", "signature", "sig",
	"authorization",
}

// redact replaces credentials in s with REDACTED: URL userinfo
// (scheme://user:password@host), user:password@ in DSNs, the values of
// key=value and "key": "value" pairs whose key looks like a password,
// secret, token, access key or API key, bearer tokens and Basic
// Authorization credentials. Everything else is kept, line breaks
// included. It errs on the side of hiding too much, with one exception:
// unquoted "key: value" is left alone, because rule errors name fields
// that way (headers.authorization: must set ...).
func redact(s string) string {
	if s == "" {
		return s
	}
	s = urlUserinfo.ReplaceAllString(s, "${1}"+redacted+"@")
	s = dsnUserinfo.ReplaceAllString(s, "${1}"+redacted+"@")
	s = replaceSecretValues(s, keyValue)
	s = replaceSecretValues(s, jsonMember)
	return authScheme.ReplaceAllString(s, "${1} "+redacted)
}

// replaceSecretValues replaces the value of each match of re with
// REDACTED when its key is a secret-looking one. Group 1 of re is the key;
// the first later group that matched is the value.
func replaceSecretValues(s string, re *regexp.Regexp) string {
	matches := re.FindAllStringSubmatchIndex(s, -1)
	if matches == nil {
		return s
	}
	var b strings.Builder
	last, changed := 0, false
	for _, m := range matches {
		if !secretKey(s[m[2]:m[3]]) {
			continue
		}
		start, end := -1, -1
		for g := 4; g+1 < len(m); g += 2 {
			if m[g] >= 0 {
				start, end = m[g], m[g+1]
				break
			}
		}
		if start < 0 || s[start:end] == redacted {
			continue
		}
		b.WriteString(s[last:start])
		b.WriteString(redacted)
		last, changed = end, true
	}
	if !changed {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

func secretKey(key string) bool {
	k := strings.Map(func(r rune) rune {
		switch r {
		case '-', '_', '.':
			return -1
		}
		return r
	}, strings.ToLower(key))
	for _, suf := range secretSuffixes {
		if strings.HasSuffix(k, suf) {
			return true
		}
	}
	return false
}
