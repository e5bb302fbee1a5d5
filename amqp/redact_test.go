package amqp_test

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/amqp"
)

// TestDialUnparsableURLHidesPassword: Dial and DialNoDelay refuse a URL that
// url.Parse (or amqp091) rejects without showing its password, in any form,
// whichever URL of the list it is (issue 9 §4).
func TestDialUnparsableURLHidesPassword(t *testing.T) {
	const secret = "S3cr#t"
	good := "amqp://guest:guest@127.0.0.1:1/"
	for _, raw := range []string{
		"amqp://user:Secret9@127.0.0.1:notaport/",
		"amqp://user:Sec%zzret9@127.0.0.1:5672/",
		"amqp://user:Secret9@[::1:5672/",
		"amqp://user:Sec#ret9@127.0.0.1:5672/",
		"amqp://user:Sec/ret9@127.0.0.1:5672/",
		"amqp://user:Sec?ret9@127.0.0.1:5672/",
		"amqp://user:Sec ret9@127.0.0.1:5672/",
		"amqp://user:Sec\"ret9\x01@127.0.0.1:notaport/",
		"amqp://user:Secret9@127.0.0.1:5672/?heartbeat=abc",
		"amqpx://user:Secret9@127.0.0.1:5672/",
		"amqp://user:" + secret + "@127.0.0.1:99999999999/",
	} {
		pw := raw[strings.Index(raw, "user:")+len("user:") : strings.LastIndex(raw, "@")]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		for _, urls := range [][]string{{raw}, {good, raw}} {
			opts := amqp.Options{ClusterURLs: urls[1:]}
			_, err := amqp.Dial(ctx, urls[0], opts)
			_, err2 := amqp.DialNoDelay(ctx, urls[0], opts)
			for _, e := range []error{err, err2} {
				if e == nil {
					t.Fatalf("Dial(%q) succeeded", amqp.RedactURL(raw))
				}
				for _, p := range passwordForms(pw) {
					if strings.Contains(e.Error(), p) {
						t.Errorf("Dial's error shows the password %q: %v", p, e)
					}
				}
				if !strings.Contains(e.Error(), "amqp: Dial: URL ") {
					t.Errorf("error does not say which URL: %v", e)
				}
			}
		}
		cancel()
		if got := amqp.RedactURL(raw); strings.Contains(got, pw) {
			t.Errorf("RedactURL(%q) = %q", raw, got)
		}
	}
	if got := amqp.RedactURL("amqp://user:Sec#ret9@host:5672/vh"); got != "amqp://xxxxx@host:5672/vh" {
		t.Errorf("RedactURL = %q, want the userinfo replaced and the host kept", got)
	}
	if got := amqp.RedactURL("amqp:user:Secret9@127.0.0.1"); got != "amqp:xxxxx@127.0.0.1" {
		t.Errorf("RedactURL of an opaque URL = %q", got)
	}
	if got := amqp.RedactURL("amqp://h:5672/v"); got != "amqp://h:5672/v" {
		t.Errorf("RedactURL of a URL without userinfo = %q", got)
	}
}

// passwordForms returns p as it may appear in a message: raw, decoded,
// escaped and Go-quoted.
func passwordForms(p string) []string {
	forms := []string{p, url.QueryEscape(p), url.PathEscape(p)}
	if d, err := url.PathUnescape(p); err == nil {
		forms = append(forms, d)
	}
	if q := strconvQuote(p); q != p {
		forms = append(forms, q)
	}
	return forms
}

// FuzzRedactURL: whatever the text around it, a password never appears in
// RedactURL's result nor in the error Dial gives for the URL. Passwords
// shorter than 3 bytes, or holding an 'x' (the mask is "xxxxx") or one of
// the characters of the "(…)" that stands for quoted text, are skipped, as
// are passwords that also appear in the rest of the URL.
func FuzzRedactURL(f *testing.F) {
	for _, s := range [][4]string{
		{"amqp", "user", "Secret", "127.0.0.1:notaport/"},
		{"amqp", "user", "Sec%zzret", "127.0.0.1:5672/"},
		{"amqp", "user", "Secret", "[::1:5672/"},
		{"amqp", "user", "Sec#ret", "127.0.0.1:5672/"},
		{"amqps", "us@er", "12#pass", "h"},
		{"amqp", "u", "12/pass", "h:5672/v@h"},
		{"amqp", "u:v", "pa:ss", "h"},
		{"amqp", "", "p%40ss", "h:5671/vh"},
		{"", "u", "secret", "h"},
		{"amqp", "u", "p\"a\\s\x01s", "h:bad"},
		{"amqp", "u", "pa ss", "h"},
		{"amqp", "u", "pass", "h/?heartbeat=pass1"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, scheme, user, password, rest string) {
		if len(password) < 3 || strings.ContainsAny(password, "x(…)") {
			t.Skip()
		}
		sep := "://"
		if scheme == "" {
			sep = ""
		}
		raw := scheme + sep + user + ":" + password + "@" + rest
		forms := passwordForms(password)
		for _, p := range forms {
			if len(p) < 3 || strings.Contains(scheme+sep+user+":", p) || strings.Contains("@"+rest, p) || strings.ContainsAny(p, "x(…)") {
				t.Skip()
			}
		}
		got := amqp.RedactURL(raw)
		err := amqp.CheckURLs([]string{"amqp://guest:guest@localhost/", raw})
		for _, p := range forms {
			if strings.Contains(got, p) {
				t.Fatalf("RedactURL(%q) = %q shows %q", raw, got, p)
			}
			if err != nil && strings.Contains(err.Error(), p) {
				t.Fatalf("the error for %q shows %q: %v", raw, p, err)
			}
		}
	})
}

func strconvQuote(s string) string {
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}
