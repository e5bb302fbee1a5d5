package console_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/cmd/busctl/internal/console"
	"github.com/busline/busline/cmd/busctl/internal/store"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server returns a console with one failed message whose error and body
// hold markup.
func server(t *testing.T, opts console.Options) (*httptest.Server, *store.Store) {
	t.Helper()
	tr := memory.New(memory.Options{})
	t.Cleanup(func() { tr.Close() })
	s, err := store.Open(":memory:", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	n := middleware.DefaultHeaderNames
	m := transport.Message{ID: "m-1", ContentType: "text/html", Body: []byte(`<img src=x onerror=alert(1)>`), Headers: transport.Headers{
		n.SourceQueue: "billing", n.ErrorDetails: `boom <script>alert("x")</script>`, n.MessageType: `"><b>t`,
	}}
	if _, err := s.Add(context.Background(), "error", time.Now(), &m); err != nil {
		t.Fatal(err)
	}
	opts.Store, opts.Dispatcher = s, tr
	opts.Queues = func(context.Context) ([]console.Queue, error) { return nil, nil }
	c, err := console.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return srv, s
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEscaping(t *testing.T) {
	srv, _ := server(t, console.Options{})
	for _, p := range []string{"/messages", "/messages/m-1", "/groups", "/"} {
		_, body := get(t, srv.Client(), srv.URL+p)
		if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") || strings.Contains(body, `"><b>`) {
			t.Errorf("%s renders markup from a message unescaped", p)
		}
	}
}

func TestCSRF(t *testing.T) {
	srv, s := server(t, console.Options{})
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	_, page := get(t, c, srv.URL+"/messages/m-1")
	token := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(page)
	if token == nil {
		t.Fatal("no CSRF token in the page")
	}
	post := func(form url.Values, hdr map[string]string) int {
		req, _ := http.NewRequest("POST", srv.URL+"/delete", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	del := url.Values{"ref": {"m-1"}, "confirm": {"yes"}}
	if code := post(del, nil); code != http.StatusForbidden {
		t.Errorf("POST without a token: %d, want 403", code)
	}
	del.Set("csrf", strings.Repeat("0", 32))
	if code := post(del, nil); code != http.StatusForbidden {
		t.Errorf("POST with a wrong token: %d, want 403", code)
	}
	del.Set("csrf", token[1])
	if code := post(del, map[string]string{"Sec-Fetch-Site": "cross-site"}); code != http.StatusForbidden {
		t.Errorf("cross-site POST: %d, want 403", code)
	}
	if n, _ := s.Count(context.Background(), store.Filter{}); n != 1 {
		t.Fatal("a refused POST deleted")
	}
	if code := post(del, nil); code != http.StatusOK {
		t.Errorf("POST with the token: %d, want 200", code)
	}
	if n, _ := s.Count(context.Background(), store.Filter{}); n != 0 {
		t.Error("the confirmed delete did not delete")
	}
}

func TestAuth(t *testing.T) {
	srv, _ := server(t, console.Options{Token: "s3cret"})
	if code, _ := get(t, srv.Client(), srv.URL+"/api/groups"); code != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", code)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	if code, body := get(t, c, srv.URL+"/groups?token=s3cret"); code != http.StatusOK || strings.Contains(body, "s3cret") {
		t.Errorf("?token=: %d", code)
	}
	if code, _ := get(t, c, srv.URL+"/api/groups"); code != http.StatusOK {
		t.Errorf("with the cookie: %d, want 200", code)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/api/delete", strings.NewReader(`{"refs":["m-1"]}`))
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"deleted": 1`) {
		t.Errorf("API delete with a bearer token: %d %s", resp.StatusCode, b)
	}
}
