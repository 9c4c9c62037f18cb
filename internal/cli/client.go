package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// Object is one resource as the API renders it: a JSON object decoded with
// numbers kept as json.Number, so a GET followed by a PUT sends every field
// back exactly as the server wrote it.
type Object map[string]any

// Str returns the string value of key, or "" when it is absent or not a string.
func (o Object) Str(key string) string {
	s, _ := o[key].(string)
	return s
}

// Violation is one failed field check of a 400 answer.
type Violation struct {
	Property string `json:"property"`
	Message  string `json:"message"`
}

// APIError is an error status answered by the API, carrying the server's
// error entity.
type APIError struct {
	Method     string
	URL        string
	Status     int
	Message    string
	Violations []Violation
}

// Error renders the status, the server's message and one line per violation.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d %s", e.Method, e.URL, e.Status, http.StatusText(e.Status))
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	for _, v := range e.Violations {
		prop := v.Property
		if prop == "" {
			prop = "(object)"
		}
		fmt.Fprintf(&b, "\n  %s: %s", prop, v.Message)
	}
	return b.String()
}

// IsNotFound reports whether err is an API answer with status 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// Client speaks MidoNet REST API v5. It discovers collection URIs and item
// templates from the Application root on first use, as MidoNet's own
// clients do, and follows the URIs the server returns for everything else.
type Client struct {
	base string
	hc   *http.Client

	rootOnce sync.Once
	root     map[string]string
	rootErr  error
}

// NewClient returns a client of the API at base (e.g.
// http://127.0.0.1:8181/midonet-api). A nil hc means http.DefaultClient.
func NewClient(base string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimSuffix(base, "/"), hc: hc}
}

// Root returns the Application root's keys (collection URIs and templates).
func (c *Client) Root(ctx context.Context) (map[string]string, error) {
	c.rootOnce.Do(func() {
		var raw map[string]any
		if err := c.do(ctx, http.MethodGet, c.base, vendor("Application-v5"), nil, "", &raw); err != nil {
			c.rootErr = fmt.Errorf("read the API root (is --api %s right?): %w", c.base, err)
			return
		}
		c.root = make(map[string]string, len(raw))
		for k, v := range raw {
			if s, ok := v.(string); ok {
				c.root[k] = s
			}
		}
	})
	return c.root, c.rootErr
}

// Collection returns the URI of the root's collection key (e.g. "bridges").
func (c *Client) Collection(ctx context.Context, key string) (string, error) {
	root, err := c.Root(ctx)
	if err != nil {
		return "", err
	}
	u, ok := root[key]
	if !ok || u == "" {
		return "", fmt.Errorf("the API at %s does not offer %q", c.base, key)
	}
	return u, nil
}

// Item returns the URI of one item from the root's template key (e.g.
// "bridgeTemplate") by replacing its {id}.
func (c *Client) Item(ctx context.Context, templateKey, id string) (string, error) {
	t, err := c.Collection(ctx, templateKey)
	if err != nil {
		return "", err
	}
	if !strings.Contains(t, "{id}") {
		return "", fmt.Errorf("the API's %s %q has no {id}", templateKey, t)
	}
	return strings.ReplaceAll(t, "{id}", id), nil
}

// Get reads one object; media is the vendor type name, e.g. "Bridge-v4".
func (c *Client) Get(ctx context.Context, url, media string) (Object, error) {
	var o Object
	err := c.do(ctx, http.MethodGet, url, vendor(media), nil, "", &o)
	return o, err
}

// List reads a collection.
func (c *Client) List(ctx context.Context, url, media string) ([]Object, error) {
	var list []Object
	err := c.do(ctx, http.MethodGet, url, vendor("collection."+media), nil, "", &list)
	return list, err
}

// Create posts body to a collection and returns the Location of the new item.
func (c *Client) Create(ctx context.Context, url, media string, body any) (string, error) {
	req, err := c.request(ctx, http.MethodPost, url, "", body, vendor(media))
	if err != nil {
		return "", err
	}
	resp, err := c.send(req)
	if err != nil {
		return "", err
	}
	return resp.Header.Get("Location"), nil
}

// Update replaces an item with body.
func (c *Client) Update(ctx context.Context, url, media string, body any) error {
	return c.do(ctx, http.MethodPut, url, "", body, vendor(media), nil)
}

// Delete deletes an item.
func (c *Client) Delete(ctx context.Context, url string) error {
	return c.do(ctx, http.MethodDelete, url, "", nil, "", nil)
}

func vendor(name string) string { return "application/vnd.org.midonet." + name + "+json" }

func (c *Client) request(ctx context.Context, method, url, accept string, body any, contentType string) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	return req, nil
}

// send runs req and turns an error status into an *APIError. The caller
// gets the response with its body already read and closed.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read the answer: %w", req.Method, req.URL, err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(data))
	if resp.StatusCode < 300 {
		return resp, nil
	}
	ae := &APIError{Method: req.Method, URL: req.URL.String(), Status: resp.StatusCode}
	var entity struct {
		Message    *string     `json:"message"`
		Violations []Violation `json:"violations"`
	}
	if len(bytes.TrimSpace(data)) > 0 {
		if json.Unmarshal(data, &entity) == nil {
			if entity.Message != nil {
				ae.Message = *entity.Message
			}
			ae.Violations = entity.Violations
		} else {
			ae.Message = strings.TrimSpace(string(data))
		}
	}
	return nil, ae
}

func (c *Client) do(ctx context.Context, method, url, accept string, body any, contentType string, out any) error {
	req, err := c.request(ctx, method, url, accept, body, contentType)
	if err != nil {
		return err
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("%s %s: the answer is not the JSON expected: %w", method, url, err)
	}
	return nil
}
