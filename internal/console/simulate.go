package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/midonet/midonet/internal/api"
	"github.com/midonet/midonet/internal/topology"
	"github.com/midonet/midonet/internal/trace"
)

// simulateTimeout bounds one trace: it reads the whole topology.
const simulateTimeout = 30 * time.Second

// traceQueueWait is how long a trace waits for a slot before a 503.
const traceQueueWait = 10 * time.Second

// serveSimulate answers POST /midonet-api/simulate: the body is a
// trace.Request, the answer the trace.Report `midonet trace -o json` prints.
func (c *Console) serveSimulate(w http.ResponseWriter, r *http.Request) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.Contains(ct, "json") {
		return api.Error(http.StatusUnsupportedMediaType, "Content-Type %s is not supported; send application/json", ct)
	}
	var req trace.Request
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return api.Error(http.StatusBadRequest, "the body is not a packet to trace: %v; send {\"portId\":…,\"srcIp\":…,\"dstIp\":…}", err)
	}
	wait := time.NewTimer(traceQueueWait)
	defer wait.Stop()
	select {
	case c.traces <- struct{}{}:
		defer func() { <-c.traces }()
	case <-wait.C:
		w.Header().Set("Retry-After", "5")
		return api.Error(http.StatusServiceUnavailable, "%d traces are running; try again in a few seconds", cap(c.traces))
	case <-r.Context().Done():
		return r.Context().Err()
	}
	ctx, cancel := context.WithTimeout(r.Context(), simulateTimeout)
	defer cancel()
	rep, err := trace.Run(ctx, &handlerReader{h: c.api, in: r}, &req)
	var fe *trace.FieldError
	switch {
	case errors.Is(err, trace.ErrNoSuchPort):
		return api.Error(http.StatusNotFound, "%s", err)
	case errors.As(err, &fe):
		return &topology.ValidationError{Violations: []topology.Violation{{Property: fe.Field, Message: fe.Error()}}}
	case err != nil:
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(rep)
}

// handlerReader reads the REST API in process, through its handler, with
// the credentials of the request it serves: a trace sees what its caller
// may see, no more.
type handlerReader struct {
	h    http.Handler
	in   *http.Request
	root map[string]any // the API root, read once
}

// forwarded are the request headers that carry the caller's identity.
var forwarded = []string{"X-Auth-Token", "X-Auth-Project", "Authorization", "Cookie"}

func (rd *handlerReader) Collection(ctx context.Context, key string) (string, error) {
	if rd.root == nil {
		if err := rd.Get(ctx, api.BasePath, "application/json", &rd.root); err != nil {
			return "", fmt.Errorf("read the API root: %w", err)
		}
	}
	u, _ := rd.root[key].(string)
	if u == "" {
		return "", fmt.Errorf("the API root offers no %q", key)
	}
	return u, nil
}

func (rd *handlerReader) Get(ctx context.Context, target, accept string, out any) error {
	u, err := url.Parse(target)
	if err != nil {
		return fmt.Errorf("GET %s: %w", target, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.RequestURI(), nil)
	if err != nil {
		return err
	}
	// The links the API returns are built from the Host it was asked
	// with: ask with the caller's, so they lead back here.
	req.Host, req.TLS, req.RemoteAddr = rd.in.Host, rd.in.TLS, rd.in.RemoteAddr
	for _, k := range forwarded {
		if v := rd.in.Header.Values(k); len(v) > 0 {
			req.Header[k] = v
		}
	}
	if p := rd.in.Header.Get("X-Forwarded-Proto"); p != "" {
		req.Header.Set("X-Forwarded-Proto", p)
	}
	req.Header.Set("Accept", accept)
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	rd.h.ServeHTTP(rec, req)
	if rec.status >= 300 {
		var entity struct {
			Message string `json:"message"`
		}
		json.Unmarshal(rec.body.Bytes(), &entity)
		err := fmt.Errorf("GET %s: %d %s: %s", u.Path, rec.status, http.StatusText(rec.status), entity.Message)
		if rec.status == http.StatusNotFound {
			return fmt.Errorf("%w: %w", trace.ErrNotFound, err)
		}
		// Other refusals (401, 403) are the caller's: pass them on.
		return api.Error(rec.status, "%s", err)
	}
	if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
		return fmt.Errorf("GET %s: the answer is not the JSON expected: %w", u.Path, err)
	}
	return nil
}

// recorder is the ResponseWriter of an in-process read.
type recorder struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.body.Write(b)
}
