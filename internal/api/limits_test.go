package api_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/api"
)

// rawConn is a client that writes a whole request before it reads the
// answer, as python-midonetclient (http.client) does: if the server
// answers early and closes, the client gets a reset instead of the answer.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	rd   *bufio.Reader
}

func dialRaw(t *testing.T) *rawConn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	return &rawConn{t: t, conn: conn, rd: bufio.NewReader(conn)}
}

// send writes a request head and then body, n bytes of filler in chunks
// when chunked, and fails the test if the connection breaks meanwhile.
func (c *rawConn) send(head string, n int, chunked bool) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, head); err != nil {
		c.t.Fatalf("writing the head: %v", err)
	}
	chunk := []byte(strings.Repeat("x", 64<<10))
	for sent := 0; sent < n; sent += len(chunk) {
		b := chunk[:min(len(chunk), n-sent)]
		var err error
		if chunked {
			_, err = fmt.Fprintf(c.conn, "%x\r\n%s\r\n", len(b), b)
		} else {
			_, err = c.conn.Write(b)
		}
		if err != nil {
			c.t.Fatalf("the server broke the connection after %d of %d body bytes: %v", sent, n, err)
		}
	}
	if chunked {
		if _, err := io.WriteString(c.conn, "0\r\n\r\n"); err != nil {
			c.t.Fatalf("writing the last chunk: %v", err)
		}
	}
}

// receive reads one answer.
func (c *rawConn) receive(method string) response {
	c.t.Helper()
	resp, err := http.ReadResponse(c.rd, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("reading the answer's body: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func expect413(t *testing.T, r response) {
	t.Helper()
	expect(t, r, http.StatusRequestEntityTooLarge)
	if bad := checkErrorEntity(r); bad != "" {
		t.Fatalf("413 entity: %s: %s", bad, r.body)
	}
}

// TestBodyOverTheLimitGets413 sends bodies over the default limit to a
// real server the way clients do, and checks that each reads a 413 with
// the error entity rather than a reset.
func TestBodyOverTheLimitGets413(t *testing.T) {
	const over = api.DefaultMaxBodyBytes + 8<<20
	t.Run("with a length", func(t *testing.T) {
		c := dialRaw(t)
		c.send(fmt.Sprintf("POST /midonet-api/bridges HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", over), over, false)
		expect413(t, c.receive("POST"))
		// The server read exactly the body: the connection serves the
		// next request.
		c.send("GET /midonet-api/system_state HTTP/1.1\r\nHost: x\r\n\r\n", 0, false)
		expect(t, c.receive("GET"), http.StatusOK)
	})
	t.Run("chunked", func(t *testing.T) {
		c := dialRaw(t)
		c.send("PUT /midonet-api/bridges/5b4cb2f1-0000-4000-8000-0000000000ff HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n", over, true)
		expect413(t, c.receive("PUT"))
	})
	t.Run("waiting for 100 Continue", func(t *testing.T) {
		// A client that asks first is told at once and sends nothing.
		c := dialRaw(t)
		c.send("POST /midonet-api/bridges HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\nExpect: 100-continue\r\n\r\n", 0, false)
		expect413(t, c.receive("POST"))
	})
	t.Run("at the limit", func(t *testing.T) {
		body := `{"name": "at-the-limit"}`
		body += strings.Repeat(" ", api.DefaultMaxBodyBytes-len(body))
		c := dialRaw(t)
		c.send(fmt.Sprintf("POST /midonet-api/bridges HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body), 0, false)
		r := c.receive("POST")
		expect(t, r, http.StatusCreated)
		expect(t, do(t, "DELETE", strings.TrimPrefix(r.header.Get("Location"), "http://x"+api.BasePath), nil), http.StatusNoContent)
	})
}

// TestManyValuesGet413 checks the value limit through the server: a body
// of a million small numbers, well under the size limit, is refused
// before it is decoded.
func TestManyValuesGet413(t *testing.T) {
	body := `{"name": "many", "x": [` + strings.Repeat("0,", 1_000_000) + `0]}`
	r := do(t, "POST", "/bridges", body)
	expect413(t, r)
	var e map[string]any
	json.Unmarshal(r.body, &e)
	if !strings.Contains(fmt.Sprint(e["message"]), "JSON values") {
		t.Errorf("413 message %v", e["message"])
	}
}
