package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/busline/busline/cmd/busctl/internal/store"
)

//go:embed assets
var assets embed.FS

// Queue is a row of the overview.
type Queue struct {
	Name      string `json:"name"`
	Exists    bool   `json:"exists"`
	Messages  int    `json:"messages"`
	Consumers int    `json:"consumers"`
	Type      string `json:"type"`
	Failed    int    `json:"failed"`
	Role      string `json:"role"`
	Error     string `json:"error,omitempty"`
}

// Options configure the console.
type Options struct {
	// Store holds the failed messages.
	Store *store.Store
	// Dispatcher sends retried messages (the transport).
	Dispatcher store.Dispatcher
	// Queues returns the overview's queues.
	Queues func(ctx context.Context) ([]Queue, error)
	// Token, if set, is required of every request (see the package doc).
	Token string
	// User and Password, if User is set, are accepted as basic auth.
	User, Password string
	// Refresh is the overview's refresh period; zero means 5 s.
	Refresh time.Duration
	// Logger receives a record per retry and delete; nil means silent.
	Logger *slog.Logger
}

// Console serves the pages and the API.
type Console struct {
	opts Options
	tmpl *template.Template
	mux  *http.ServeMux
	log  *slog.Logger
}

// New returns the console's handler.
func New(opts Options) (*Console, error) {
	if opts.Store == nil || opts.Dispatcher == nil || opts.Queues == nil {
		return nil, errors.New("console: Store, Dispatcher and Queues are required")
	}
	if opts.Refresh <= 0 {
		opts.Refresh = 5 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tmpl, err := template.New("").Funcs(template.FuncMap{
		"time": func(t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			return t.UTC().Format("2006-01-02 15:04:05")
		},
		"seconds": func(d time.Duration) int { return int(d.Seconds()) },
		"query":   func(f store.Filter) string { return filterQuery(f).Encode() },
	}).ParseFS(assets, "assets/*.html")
	if err != nil {
		return nil, err
	}
	c := &Console{opts: opts, tmpl: tmpl, mux: http.NewServeMux(), log: log}
	static, _ := fs.Sub(assets, "assets")
	c.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	c.mux.HandleFunc("GET /{$}", c.overview)
	c.mux.HandleFunc("GET /groups", c.groups)
	c.mux.HandleFunc("GET /messages", c.messages)
	c.mux.HandleFunc("GET /messages/{ref}", c.message)
	c.mux.HandleFunc("POST /retry", c.act(true))
	c.mux.HandleFunc("POST /delete", c.act(false))
	c.mux.HandleFunc("GET /api/queues", c.apiQueues)
	c.mux.HandleFunc("GET /api/groups", c.apiGroups)
	c.mux.HandleFunc("GET /api/messages", c.apiMessages)
	c.mux.HandleFunc("GET /api/messages/{ref}", c.apiMessage)
	c.mux.HandleFunc("POST /api/retry", c.apiAct(true))
	c.mux.HandleFunc("POST /api/delete", c.apiAct(false))
	return c, nil
}

// ServeHTTP authenticates, checks CSRF on state-changing requests, sets
// the security headers, and serves.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	if !c.authenticate(w, r) {
		return
	}
	csrf := csrfCookie(w, r)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if err := http.NewCrossOriginProtection().Check(r); err != nil {
			http.Error(w, "cross-origin request refused", http.StatusForbidden)
			return
		}
		// A bearer token is never attached by a browser on its own (basic
		// auth is, once entered), so such a request is not a forgery.
		bearer := c.opts.Token != "" && strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !bearer {
			got := r.Header.Get("X-CSRF-Token")
			if got == "" {
				got = r.PostFormValue("csrf")
			}
			if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(csrf)) != 1 {
				http.Error(w, "missing or wrong CSRF token: reload the page and try again", http.StatusForbidden)
				return
			}
		}
	}
	r = r.WithContext(context.WithValue(r.Context(), csrfKey{}, csrf))
	c.mux.ServeHTTP(w, r)
}

type csrfKey struct{}

func csrfCookie(w http.ResponseWriter, r *http.Request) string {
	if ck, err := r.Cookie("busctl_csrf"); err == nil && len(ck.Value) == 32 {
		return ck.Value
	}
	var b [16]byte
	rand.Read(b[:])
	v := hex.EncodeToString(b[:])
	http.SetCookie(w, &http.Cookie{Name: "busctl_csrf", Value: v, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	// A POST without the cookie fails its check against this new value.
	r.AddCookie(&http.Cookie{Name: "busctl_csrf", Value: v})
	return v
}

func (c *Console) authenticate(w http.ResponseWriter, r *http.Request) bool {
	if c.opts.Token == "" && c.opts.User == "" {
		return true
	}
	eq := func(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
	if c.opts.Token != "" {
		if auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && eq(auth, c.opts.Token) {
			return true
		}
		if ck, err := r.Cookie("busctl_auth"); err == nil && eq(ck.Value, c.opts.Token) {
			return true
		}
		if t := r.URL.Query().Get("token"); t != "" && eq(t, c.opts.Token) && r.Method == http.MethodGet {
			http.SetCookie(w, &http.Cookie{Name: "busctl_auth", Value: t, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			q := r.URL.Query()
			q.Del("token")
			u := *r.URL
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return false
		}
	}
	if c.opts.User != "" {
		if u, p, ok := r.BasicAuth(); ok && eq(u, c.opts.User) && eq(p, c.opts.Password) {
			return true
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="busctl", charset="UTF-8"`)
	}
	http.Error(w, "authentication required: open the console with ?token=… or basic auth", http.StatusUnauthorized)
	return false
}

// filterFrom reads a filter from query or form values.
func filterFrom(v url.Values) (store.Filter, error) {
	f := store.Filter{
		Refs: v["ref"], Group: v.Get("group"), SourceQueue: v.Get("queue"), Type: v.Get("type"), Error: v.Get("error"),
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		s := strings.TrimSpace(v.Get(p.name))
		if s == "" {
			continue
		}
		t, err := store.ParseTime(s)
		if err != nil {
			return f, fmt.Errorf("%s: %w", p.name, err)
		}
		*p.t = t
	}
	return f, nil
}

func filterQuery(f store.Filter) url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"group": f.Group, "queue": f.SourceQueue, "type": f.Type, "error": f.Error} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !f.Since.IsZero() {
		v.Set("since", f.Since.UTC().Format(time.RFC3339))
	}
	if !f.Until.IsZero() {
		v.Set("until", f.Until.UTC().Format(time.RFC3339))
	}
	for _, r := range f.Refs {
		v.Add("ref", r)
	}
	return v
}

// page is what every template gets.
type page struct {
	Title   string
	Nav     string
	CSRF    string
	Refresh time.Duration
	Flash   string
	Error   string
	Filter  store.Filter
	Data    any
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	p.CSRF, _ = r.Context().Value(csrfKey{}).(string)
	if p.Flash == "" {
		p.Flash = r.URL.Query().Get("flash")
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := c.tmpl.ExecuteTemplate(w, name, p); err != nil {
		c.log.Error("console: rendering", "page", name, "error", err)
	}
}

func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	c.render(w, r, status, "error.html", page{Title: "Error", Error: err.Error()})
}

type overviewData struct {
	Queues []Queue
	Groups []store.Group
	Failed int
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var d overviewData
	var err error
	if d.Queues, err = c.opts.Queues(ctx); err != nil {
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	if d.Groups, err = c.opts.Store.Groups(ctx, store.Filter{}); err != nil {
		c.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	for _, g := range d.Groups {
		d.Failed += g.Count
	}
	c.render(w, r, http.StatusOK, "overview.html", page{Title: "Overview", Nav: "overview", Refresh: c.opts.Refresh, Data: d})
}

func (c *Console) groups(w http.ResponseWriter, r *http.Request) {
	f, err := filterFrom(r.URL.Query())
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, err)
		return
	}
	gs, err := c.opts.Store.Groups(r.Context(), f)
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	c.render(w, r, http.StatusOK, "groups.html", page{Title: "Failed message groups", Nav: "groups", Filter: f, Data: gs})
}

const pageSize = 100

type messagesData struct {
	Fields           url.Values
	Actions          []action
	Messages         []store.Failed
	Total            int
	Offset, Next     int
	Prev             int
	HasNext, HasPrev bool
	Query            string
}

func (c *Console) messages(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := filterFrom(q)
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, err)
		return
	}
	offset, _ := strconv.Atoi(q.Get("offset"))
	offset = max(offset, 0)
	d := messagesData{Offset: offset, Query: filterQuery(f).Encode(), Fields: filterQuery(f)}
	if d.Total, err = c.opts.Store.Count(r.Context(), f); err == nil {
		d.Messages, err = c.opts.Store.List(r.Context(), f, offset, pageSize)
	}
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	if f.IsZero() {
		d.Fields.Set("scope", "all")
	}
	d.Actions = []action{{"retry", fmt.Sprintf("Retry all %d matching", d.Total)}, {"delete", fmt.Sprintf("Delete all %d matching", d.Total)}}
	d.HasPrev, d.Prev = offset > 0, max(offset-pageSize, 0)
	d.HasNext, d.Next = offset+pageSize < d.Total, offset+pageSize
	c.render(w, r, http.StatusOK, "messages.html", page{Title: "Failed messages", Nav: "messages", Filter: f, Data: d})
}

type action struct{ Path, Label string }

type messageData struct {
	M       store.Failed
	Headers []header
	Body    string
}

type header struct{ Name, Value string }

func (c *Console) message(w http.ResponseWriter, r *http.Request) {
	m, err := c.opts.Store.Get(r.Context(), r.PathValue("ref"))
	if errors.Is(err, store.ErrNotFound) {
		c.fail(w, r, http.StatusNotFound, fmt.Errorf("%w: it may have been retried or deleted", err))
		return
	}
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	d := messageData{M: m, Body: store.PrettyBody(m.Message)}
	for k, raw := range m.Message.Headers {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			s = string(raw)
		}
		d.Headers = append(d.Headers, header{k, s})
	}
	sortHeaders(d.Headers)
	c.render(w, r, http.StatusOK, "message.html", page{Title: "Failed message " + m.ID, Nav: "messages", Data: d})
}

func sortHeaders(h []header) {
	for i := 1; i < len(h); i++ {
		for j := i; j > 0 && h[j].Name < h[j-1].Name; j-- {
			h[j], h[j-1] = h[j-1], h[j]
		}
	}
}

type confirmData struct {
	Retry   bool
	Count   int
	Sample  []store.Failed
	Scope   string
	Fields  url.Values
	Back    string
	Result  *store.RetryResult
	Deleted int
}

// act serves the retry and delete forms: without confirm=yes it shows what
// would be done and asks; with it, it does it and shows the outcome.
func (c *Console) act(retry bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			c.fail(w, r, http.StatusBadRequest, err)
			return
		}
		f, err := filterFrom(r.PostForm)
		if err != nil {
			c.fail(w, r, http.StatusBadRequest, err)
			return
		}
		scope := r.PostForm.Get("scope")
		if f.IsZero() && scope != "all" {
			c.fail(w, r, http.StatusBadRequest, errors.New("nothing selected: tick messages, or choose a group or filter"))
			return
		}
		ctx := r.Context()
		verb := "Delete"
		if retry {
			verb = "Retry"
		}
		d := confirmData{Retry: retry, Scope: describe(f, scope), Back: r.PostForm.Get("back")}
		if !strings.HasPrefix(d.Back, "/") || strings.HasPrefix(d.Back, "//") || strings.HasPrefix(d.Back, "/\\") {
			d.Back = "/messages"
		}
		if d.Count, err = c.opts.Store.Count(ctx, f); err != nil {
			c.fail(w, r, http.StatusInternalServerError, err)
			return
		}
		if r.PostForm.Get("confirm") != "yes" {
			d.Sample, _ = c.opts.Store.List(ctx, f, 0, 10)
			d.Fields = filterQuery(f)
			if scope == "all" {
				d.Fields.Set("scope", "all")
			}
			d.Fields.Set("back", d.Back)
			c.render(w, r, http.StatusOK, "confirm.html", page{Title: verb + " failed messages", Nav: "messages", Data: d})
			return
		}
		if retry {
			res, err := c.opts.Store.Retry(ctx, c.opts.Dispatcher, f, nil)
			c.log.Info("console: retry", "scope", d.Scope, "retried", len(res.Retried), "left", len(res.Left), "error", err)
			d.Result = &res
			if err != nil {
				c.render(w, r, http.StatusBadGateway, "done.html", page{Title: "Retry", Nav: "messages", Error: err.Error(), Data: d})
				return
			}
		} else {
			n, err := c.opts.Store.Delete(ctx, f, nil)
			c.log.Info("console: delete", "scope", d.Scope, "deleted", n, "error", err)
			d.Deleted = n
			if err != nil {
				c.render(w, r, http.StatusInternalServerError, "done.html", page{Title: "Delete", Nav: "messages", Error: err.Error(), Data: d})
				return
			}
		}
		c.render(w, r, http.StatusOK, "done.html", page{Title: verb, Nav: "messages", Data: d})
	}
}

func describe(f store.Filter, scope string) string {
	if scope == "all" && f.IsZero() {
		return "every failed message"
	}
	var parts []string
	if len(f.Refs) > 0 {
		parts = append(parts, fmt.Sprintf("%d selected", len(f.Refs)))
	}
	if f.Group != "" {
		parts = append(parts, "group "+f.Group)
	}
	if f.SourceQueue != "" {
		parts = append(parts, "source queue "+f.SourceQueue)
	}
	if f.Type != "" {
		parts = append(parts, "type "+f.Type)
	}
	if f.Error != "" {
		parts = append(parts, fmt.Sprintf("error containing %q", f.Error))
	}
	if !f.Since.IsZero() {
		parts = append(parts, "failed since "+f.Since.UTC().Format(time.RFC3339))
	}
	if !f.Until.IsZero() {
		parts = append(parts, "failed before "+f.Until.UTC().Format(time.RFC3339))
	}
	return strings.Join(parts, ", ")
}

// The JSON API.

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func apiError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func (c *Console) apiQueues(w http.ResponseWriter, r *http.Request) {
	qs, err := c.opts.Queues(r.Context())
	if err != nil {
		apiError(w, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, http.StatusOK, qs)
}

func (c *Console) apiGroups(w http.ResponseWriter, r *http.Request) {
	f, err := filterFrom(r.URL.Query())
	if err != nil {
		apiError(w, http.StatusBadRequest, err)
		return
	}
	gs, err := c.opts.Store.Groups(r.Context(), f)
	if err != nil {
		apiError(w, http.StatusInternalServerError, err)
		return
	}
	if gs == nil {
		gs = []store.Group{}
	}
	writeJSON(w, http.StatusOK, gs)
}

func (c *Console) apiMessages(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := filterFrom(q)
	if err != nil {
		apiError(w, http.StatusBadRequest, err)
		return
	}
	offset, _ := strconv.Atoi(q.Get("offset"))
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit <= 0 {
		limit = pageSize
	}
	total, err := c.opts.Store.Count(r.Context(), f)
	if err != nil {
		apiError(w, http.StatusInternalServerError, err)
		return
	}
	list, err := c.opts.Store.List(r.Context(), f, offset, min(limit, 10000))
	if err != nil {
		apiError(w, http.StatusInternalServerError, err)
		return
	}
	if list == nil {
		list = []store.Failed{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"total": total, "offset": offset, "messages": list})
}

func (c *Console) apiMessage(w http.ResponseWriter, r *http.Request) {
	m, err := c.opts.Store.Get(r.Context(), r.PathValue("ref"))
	if errors.Is(err, store.ErrNotFound) {
		apiError(w, http.StatusNotFound, err)
		return
	}
	if err != nil {
		apiError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

// ActRequest is the body of POST /api/retry and /api/delete: refs (ids or
// seqs) and filter fields select the messages; All must be set to select
// every message with no filter.
type ActRequest struct {
	store.Filter
	All bool `json:"all"`
}

func (c *Console) apiAct(retry bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req ActRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			apiError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
			return
		}
		if req.Filter.IsZero() != req.All {
			apiError(w, http.StatusBadRequest, errors.New(`select messages with refs or a filter, or set "all": true (and nothing else)`))
			return
		}
		if retry {
			res, err := c.opts.Store.Retry(r.Context(), c.opts.Dispatcher, req.Filter, nil)
			c.log.Info("console api: retry", "retried", len(res.Retried), "left", len(res.Left), "error", err)
			if err != nil {
				writeJSON(w, http.StatusBadGateway, map[string]any{"error": err.Error(), "result": res})
				return
			}
			writeJSON(w, http.StatusOK, res)
			return
		}
		n, err := c.opts.Store.Delete(r.Context(), req.Filter, nil)
		c.log.Info("console api: delete", "deleted", n, "error", err)
		if err != nil {
			apiError(w, http.StatusInternalServerError, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"deleted": n})
	}
}
