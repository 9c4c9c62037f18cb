// Package api serves MidoNet's REST API (v5) over the NSDB: the resources,
// field names, URIs, media types, status codes and error entity of
// ../shared/api/midonet-rest.md, so that MidoNet's own clients drive it
// unchanged. The server is stateless: any number can run against one store.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

// BasePath is where the API is rooted.
const BasePath = "/midonet-api"

// Config configures a Server.
type Config struct {
	Store  *nsdb.Store
	Logger *slog.Logger
	// Now returns the time; tests may fix it.
	Now func() time.Time
	// Neutron, when set, serves the Neutron endpoints under
	// BasePath/neutron; the API root then names them.
	Neutron http.Handler
	// MaxBodyBytes bounds a request body; a larger one is answered 413.
	// Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// RequestTimeout bounds the store work of one request: a store that
	// does not answer within it gives 503. Default DefaultRequestTimeout.
	RequestTimeout time.Duration
}

// DefaultRequestTimeout is the default of Config.RequestTimeout.
const DefaultRequestTimeout = 15 * time.Second

// RetryAfter is what a 503 tells the client to wait before retrying: about
// one leader election of the store.
const RetryAfter = 2 * time.Second

// Server is the REST API.
type Server struct {
	store   *nsdb.Store
	log     *slog.Logger
	now     func() time.Time
	mux     *http.ServeMux
	maxBody int64
	timeout time.Duration
	// patterns lists the registered routes, "METHOD /path" under BasePath.
	patterns []string
	// neutron serves BasePath/neutron (nil: not offered).
	neutron http.Handler
}

// New builds the API server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	s := &Server{store: cfg.Store, log: cfg.Logger, now: cfg.Now, mux: http.NewServeMux(),
		maxBody: cfg.MaxBodyBytes, timeout: cfg.RequestTimeout, neutron: cfg.Neutron}
	s.routes()
	// Whatever no route takes gets the error entity too: 405 naming the
	// methods the path has, or 404.
	s.mux.HandleFunc(BasePath+"/", s.unmatched)
	return s
}

// Routes lists every route the server registered, as "METHOD /path" with
// the path under BasePath and its wildcards ("GET /bridges/{id}"), sorted.
func (s *Server) Routes() []string {
	out := slices.Clone(s.patterns)
	slices.Sort(out)
	return out
}

// ServeHTTP serves the API. A trailing slash is tolerated on every path,
// CORS headers are added, and OPTIONS is answered for any path. The body
// is read here, once, within the size limit.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		// A handler's panic is a bug: answer 500 with the error entity
		// and log it, rather than cut the connection.
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			s.writeError(w, r, fmt.Errorf("internal error: %v", v))
		}
	}()
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Origin, X-Auth-Token, X-Auth-Project, Content-Type, Accept, Authorization")
	h.Set("Access-Control-Expose-Headers", "Location")
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusOK)
		return
	}
	if err := s.readBody(w, r); err != nil {
		s.writeError(w, r, err)
		return
	}
	if p := r.URL.Path; len(p) > len(BasePath)+1 && strings.HasSuffix(p, "/") {
		r.URL.Path = strings.TrimSuffix(p, "/")
		r.URL.RawPath = ""
	}
	s.mux.ServeHTTP(w, r)
}

// handle registers a handler for "METHOD /path" under the base path; the
// handler returns an error that is written as MidoNet's error entity. The
// handler's context ends after the request timeout, so that a store that
// does not answer gives 503 in bounded time (Handle registers without it).
func (s *Server) handle(pattern string, h func(w http.ResponseWriter, r *http.Request) error) {
	s.register(pattern, s.timeout, h)
}

// register adds a route; a timeout above zero bounds the handler's context.
func (s *Server) register(pattern string, timeout time.Duration, h func(w http.ResponseWriter, r *http.Request) error) {
	method, path, _ := strings.Cut(pattern, " ")
	s.patterns = append(s.patterns, method+" "+path)
	s.mux.HandleFunc(method+" "+BasePath+path, func(w http.ResponseWriter, r *http.Request) {
		if timeout > 0 {
			ctx, cancel := context.WithTimeout(r.Context(), timeout)
			defer cancel()
			r = r.WithContext(ctx)
		}
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// unmatched answers a request no route takes: 405 with the methods the
// path has, 404 when it has none.
func (s *Server) unmatched(w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "" && pattern != BasePath+"/" {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) == 0 {
		s.writeError(w, r, notFound("no resource at %s; the API root %s lists the collections", r.URL.Path, BasePath))
		return
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	s.writeError(w, r, errStatus(http.StatusMethodNotAllowed, "%s is not supported on %s; use %s", r.Method, r.URL.Path, strings.Join(allowed, ", ")))
}

// Handle adds an endpoint to the API under BasePath, e.g. "GET /events".
// Other packages' endpoints (the console's event stream, packet trace and
// agent metrics) are public API endpoints like the API's own: served behind
// the same checks (the body limit among them), listed by Routes, their
// errors written as MidoNet's error entity (return Error, a
// *topology.ValidationError or a topology error). Unlike the API's own
// handlers, h gets no request deadline, so that it may stream: it bounds
// its own waits on the store.
func (s *Server) Handle(pattern string, h func(w http.ResponseWriter, r *http.Request) error) {
	s.register(pattern, 0, h)
}

// Error returns an error that the API answers with the status and message.
func Error(status int, format string, args ...any) error {
	return errStatus(status, format, args...)
}

// httpError is an error with its status, written as the error entity.
type httpError struct {
	status int
	msg    string
	// emptyBody: MidoNet answers some errors with no body.
	emptyBody bool
}

func (e *httpError) Error() string { return e.msg }

func errStatus(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) error {
	return errStatus(http.StatusBadRequest, format, args...)
}

func notFound(format string, args ...any) error {
	return errStatus(http.StatusNotFound, format, args...)
}

// isNotFound reports whether err is a 404.
func isNotFound(err error) bool {
	var he *httpError
	return errors.As(err, &he) && he.status == http.StatusNotFound
}

func conflict(format string, args ...any) error {
	return errStatus(http.StatusConflict, format, args...)
}

// errorEntity is MidoNet's error body.
type errorEntity struct {
	Message    *string              `json:"message"`
	Code       int                  `json:"code"`
	Violations []topology.Violation `json:"violations,omitempty"`
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	ent := errorEntity{}
	msg := err.Error()
	var he *httpError
	var ve *topology.ValidationError
	switch {
	case errors.As(err, &he):
		status = he.status
		if he.emptyBody {
			w.WriteHeader(status)
			return
		}
	case errors.As(err, &ve):
		status = http.StatusBadRequest
		msg = "Validation error(s) found"
		ent.Violations = ve.Violations
	case errors.Is(err, topology.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, topology.ErrExists), errors.Is(err, topology.ErrConflict):
		status = http.StatusConflict
	case errors.Is(err, topology.ErrForbidden):
		status = http.StatusForbidden
	case errors.Is(err, topology.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, topology.ErrBusy), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// The store did not answer in time, or the client left first
		// (then nobody reads this).
		status = http.StatusServiceUnavailable
		msg = "temporarily unavailable, retry later: " + msg
	}
	switch {
	case status == http.StatusServiceUnavailable && errors.Is(err, context.Canceled):
		w.Header().Set("Retry-After", strconv.Itoa(int(RetryAfter/time.Second)))
		s.log.Debug("client left before the answer", "method", r.Method, "path", r.URL.Path)
	case status == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", strconv.Itoa(int(RetryAfter/time.Second)))
		s.log.Warn("store unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
	case status >= 500 && status != http.StatusNotImplemented:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	ent.Message = &msg
	ent.Code = status
	w.Header().Set("Content-Type", "application/vnd.org.midonet.Error-v1+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(ent)
}

// BaseURI is the absolute base of the API as the client of r reached it,
// e.g. http://10.0.0.1:8181/midonet-api: the base of the links the API
// returns.
func BaseURI(r *http.Request) string { return baseURI(r) }

// baseURI is the absolute base of the API as the client reached it.
func baseURI(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	return scheme + "://" + r.Host + BasePath
}

// mediaType is a resource's vendor media type name, e.g. "Bridge-v4".
type mediaType struct {
	single, collection string
}

func vendor(name string) string { return "application/vnd.org.midonet." + name + "+json" }

// negotiate picks the response content type for a GET from the Accept
// header (lenient: any vendor type of the resource, application/json and
// wildcards are accepted; a missing Accept is too). ok is false for a
// clearly foreign type.
func negotiate(r *http.Request, names []string) (string, bool) {
	accept := r.Header.Get("Accept")
	if accept == "" {
		return vendor(names[0]), true
	}
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch {
		case mt == "*/*" || mt == "application/*":
			return vendor(names[0]), true
		case mt == "application/json":
			return "application/json", true
		case strings.HasPrefix(mt, "application/vnd.org.midonet."):
			for _, n := range names {
				if strings.EqualFold(mt, vendor(n)) {
					return vendor(n), true
				}
			}
			// Another version of the same resource, or another resource's
			// type sent by a client that reuses headers: serve it leniently.
			return mt, true
		}
	}
	return "", false
}

// checkContentType rejects a body of a clearly foreign type (415).
func checkContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return errStatus(http.StatusUnsupportedMediaType, "unparsable Content-Type %q", ct)
	}
	vendorJSON := strings.HasPrefix(mt, "application/vnd.org.midonet.") && strings.HasSuffix(mt, "+json")
	if mt == "application/json" || vendorJSON || mt == "*/*" || mt == "application/*" {
		return nil
	}
	return errStatus(http.StatusUnsupportedMediaType, "Content-Type %s is not supported; send application/json or a MidoNet vendor type", mt)
}

// writeJSON writes v with a negotiated content type.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, names []string, v any) error {
	ct, ok := negotiate(r, names)
	if !ok {
		return errStatus(http.StatusNotAcceptable, "none of the types in Accept (%s) can be served; use %s or application/json", r.Header.Get("Accept"), vendor(names[0]))
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	w.Write(b)
	return nil
}

// created answers a create with 201 and the absolute Location.
func created(w http.ResponseWriter, location string) error {
	w.Header().Set("Location", location)
	w.WriteHeader(http.StatusCreated)
	return nil
}

func noContent(w http.ResponseWriter) error {
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// pathID parses a UUID path parameter; a malformed id is an unknown one.
func pathID(r *http.Request, name string) (topology.ID, error) {
	id, err := topology.ParseID(r.PathValue(name))
	if err != nil {
		return id, notFound("%q is not a valid id", r.PathValue(name))
	}
	return id, nil
}

func writeBody(w http.ResponseWriter, v any) {
	b, _ := json.Marshal(v)
	w.Write(b)
}

// memberIDs parses the ids of a member path, /{id}/.../{child}: the parent
// (a port group, host or tunnel zone) and the member.
func memberIDs(r *http.Request, child string) (parent, member topology.ID, err error) {
	if parent, err = pathID(r, "id"); err != nil {
		return parent, member, err
	}
	member, err = pathID(r, child)
	return parent, member, err
}
