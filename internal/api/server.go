// Package api serves MidoNet's REST API (v5) over the NSDB: the resources,
// field names, URIs, media types, status codes and error entity of
// ../shared/api/midonet-rest.md, so that MidoNet's own clients drive it
// unchanged. The server is stateless: any number can run against one store.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"reflect"
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
}

// Server is the REST API.
type Server struct {
	store *nsdb.Store
	log   *slog.Logger
	now   func() time.Time
	mux   *http.ServeMux
}

// New builds the API server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{store: cfg.Store, log: cfg.Logger, now: cfg.Now, mux: http.NewServeMux()}
	s.routes()
	return s
}

// ServeHTTP serves the API. A trailing slash is tolerated on every path,
// CORS headers are added, and OPTIONS is answered for any path.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Origin, X-Auth-Token, X-Auth-Project, Content-Type, Accept, Authorization")
	h.Set("Access-Control-Expose-Headers", "Location")
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusOK)
		return
	}
	if p := r.URL.Path; len(p) > len(BasePath)+1 && strings.HasSuffix(p, "/") {
		r.URL.Path = strings.TrimSuffix(p, "/")
		r.URL.RawPath = ""
	}
	s.mux.ServeHTTP(w, r)
}

// handle registers a handler for "METHOD /path" under the base path; the
// handler returns an error that is written as MidoNet's error entity.
func (s *Server) handle(pattern string, h func(w http.ResponseWriter, r *http.Request) error) {
	method, path, _ := strings.Cut(pattern, " ")
	s.mux.HandleFunc(method+" "+BasePath+path, func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// Handle adds an endpoint to the API under BasePath, e.g. "GET /events".
// Other packages' endpoints (the console's event stream, packet trace and
// agent metrics) are public API endpoints like the API's own: served behind
// the same checks, their errors written as MidoNet's error entity (return
// Error, a *topology.ValidationError or a topology error).
func (s *Server) Handle(pattern string, h func(w http.ResponseWriter, r *http.Request) error) {
	s.handle(pattern, h)
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
	case errors.Is(err, topology.ErrBusy), errors.Is(err, context.DeadlineExceeded):
		status = http.StatusServiceUnavailable
	}
	if status >= 500 {
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
	if mt == "application/json" || strings.HasPrefix(mt, "application/vnd.org.midonet.") || mt == "*/*" || mt == "application/*" {
		return nil
	}
	return errStatus(http.StatusUnsupportedMediaType, "Content-Type %s is not supported; send application/json or a MidoNet vendor type", mt)
}

// maxBody bounds request bodies.
const maxBody = 4 << 20

// decode reads a JSON body into v. Errors name the field where JSON allows.
func decode(r *http.Request, v any) error {
	if err := checkContentType(r); err != nil {
		return err
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		return badRequest("reading the request body: %v", err)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	err = json.Unmarshal(body, v)
	// MidoNet's JSON mapper takes a string holding a number for a numeric
	// field (python-midonetclient sends prefix lengths as "24"): convert
	// such strings where the decoder refused them, and decode again.
	for range 16 {
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) || te.Value != "string" || te.Field == "" || !isNumberKind(te.Type.Kind()) {
			break
		}
		fixed, ok := coerceNumericString(body, strings.Split(te.Field, "."))
		if !ok {
			break
		}
		body = fixed
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return &topology.ValidationError{Violations: []topology.Violation{{
				Property: te.Field, Message: "must be of type " + jsonTypeName(te.Type.Kind().String()) + ", got " + te.Value,
			}}}
		}
		return badRequest("malformed JSON body: %v", err)
	}
	return nil
}

func isNumberKind(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// coerceNumericString rewrites, at the JSON path (arrays crossed
// transparently), every string that parses as a number into that number.
func coerceNumericString(body []byte, path []string) ([]byte, bool) {
	var doc any
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if d.Decode(&doc) != nil {
		return nil, false
	}
	changed := false
	var walk func(v any, path []string) any
	walk = func(v any, path []string) any {
		switch x := v.(type) {
		case []any:
			for i := range x {
				x[i] = walk(x[i], path)
			}
			return x
		case map[string]any:
			if len(path) == 0 {
				return x
			}
			if c, ok := x[path[0]]; ok {
				x[path[0]] = walk(c, path[1:])
			}
			return x
		case string:
			if len(path) == 0 {
				if _, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err == nil {
					changed = true
					return json.Number(strings.TrimSpace(x))
				}
			}
		}
		return v
	}
	doc = walk(doc, path)
	if !changed {
		return nil, false
	}
	out, err := json.Marshal(doc)
	return out, err == nil
}

func jsonTypeName(kind string) string {
	switch kind {
	case "bool":
		return "boolean"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "number"
	case "slice", "array":
		return "array"
	case "struct", "map", "ptr":
		return "object"
	}
	return kind
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
