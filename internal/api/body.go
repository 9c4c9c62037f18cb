package api

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/midonet/midonet/internal/topology"
)

// Request bodies: the size limit, and the mapping of a JSON body onto the
// model that every create and update goes through (decode). The mapping is
// MidoNet's: the body must be one JSON object; keys are matched exactly and
// unknown ones ignored; a value of the wrong type, a number out of the
// field's range or a malformed id is a violation naming the field's path
// (natTargets[0].portFrom), all of them reported at once. The model's own
// checks (required fields, ranges, references) run after, in the
// transaction, before anything is written.

// DefaultMaxBodyBytes is the default limit of a request body.
const DefaultMaxBodyBytes = 4 << 20

// maxDiscardBytes bounds what the server reads and throws away of a body
// over the limit so that the client, still sending, reads the 413 instead
// of a connection reset. Beyond it the connection is closed.
const maxDiscardBytes = 64 << 20

// maxViolations bounds the violations one answer lists.
const maxViolations = 100

// maxJSONValues bounds the values (numbers, strings, objects, ...) of one
// body. Decoding costs memory per value, some 50 bytes each whatever their
// size, so the size limit alone would let a body of small values cost 50
// times its size; no MidoNet object comes near this many.
const maxJSONValues = 100_000

// readBody reads the request body into memory, or answers 413 when it is
// over the limit. A body over the limit is read and discarded up to
// maxDiscardBytes first (so that a client that sends its whole body before
// reading the answer sees it), unless the client waits for 100 Continue or
// declared more than that: then the connection closes after the answer.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) error {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	tooLarge := func(size string) error {
		expect := strings.EqualFold(r.Header.Get("Expect"), "100-continue")
		if expect || r.ContentLength > s.maxBody+maxDiscardBytes {
			w.Header().Set("Connection", "close")
		} else if n, _ := io.CopyN(io.Discard, r.Body, maxDiscardBytes); n == maxDiscardBytes {
			w.Header().Set("Connection", "close")
		}
		return errStatus(http.StatusRequestEntityTooLarge,
			"the request body (%s) is over the limit of %d bytes; send a smaller object", size, s.maxBody)
	}
	if r.ContentLength > s.maxBody {
		return tooLarge(strconv.FormatInt(r.ContentLength, 10) + " bytes")
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, s.maxBody+1))
	if err != nil {
		return badRequest("reading the request body: %v", err)
	}
	if int64(len(b)) > s.maxBody {
		return tooLarge("more than " + strconv.FormatInt(s.maxBody, 10) + " bytes")
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
	return nil
}

// decode maps the JSON object of a create or update body onto v, a pointer
// to a struct holding the defaults of the fields the body leaves out.
func decode(r *http.Request, v any) error {
	if err := checkContentType(r); err != nil {
		return err
	}
	var body []byte
	if r.Body != nil {
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			return badRequest("reading the request body: %v", err)
		}
	}
	return decodeJSON(body, v)
}

// decodeJSON is decode on a body already read.
func decodeJSON(body []byte, v any) error {
	if n := countValues(body); n > maxJSONValues {
		return errStatus(http.StatusRequestEntityTooLarge,
			"the request body holds more than %d JSON values; send a smaller object", maxJSONValues)
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var doc any
	if err := d.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return badRequest("the request body is empty; send a JSON object")
		}
		return badRequest("malformed JSON body: %v", err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return badRequest("malformed JSON body: more than one JSON value; send one object")
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return badRequest("the request body must be a JSON object, not %s", jsonKind(doc))
	}
	var vs []topology.Violation
	assign(reflect.ValueOf(v).Elem(), obj, "", &vs)
	if len(vs) > 0 {
		return &topology.ValidationError{Violations: vs}
	}
	return nil
}

// countValues returns an upper bound of the number of JSON values in b:
// one for each value started after a separator or an opening bracket,
// outside strings. It reads b once and allocates nothing.
func countValues(b []byte) int {
	n, inString, escaped := 1, false, false
	for _, c := range b {
		switch {
		case inString:
			if escaped {
				escaped = false
			} else if c == '\\' {
				escaped = true
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == ',' || c == ':' || c == '[' || c == '{':
			n++
		}
	}
	return n
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// assign sets dst from val, a value decoded with UseNumber, recording a
// violation at path for each value that does not fit. JSON null leaves a
// value field at its default and clears a pointer, list or map, as
// encoding/json does.
func assign(dst reflect.Value, val any, path string, vs *[]topology.Violation) {
	violate := func(msg string) {
		if len(*vs) < maxViolations {
			*vs = append(*vs, topology.Violation{Property: path, Message: msg})
		}
	}
	if val == nil {
		switch dst.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface:
			dst.SetZero()
		}
		return
	}
	if dst.Kind() != reflect.Pointer && reflect.PointerTo(dst.Type()).Implements(textUnmarshaler) {
		s, ok := val.(string)
		if !ok {
			violate("must be a string, not " + jsonKind(val))
			return
		}
		if err := dst.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			if dst.Type() == reflect.TypeFor[topology.ID]() {
				violate("is not a valid UUID: " + strconv.Quote(clip(s)))
			} else {
				violate("is not valid: " + err.Error())
			}
		}
		return
	}
	switch dst.Kind() {
	case reflect.Pointer:
		if dst.IsNil() {
			dst.Set(reflect.New(dst.Type().Elem()))
		}
		assign(dst.Elem(), val, path, vs)
	case reflect.Struct:
		m, ok := val.(map[string]any)
		if !ok {
			violate("must be an object, not " + jsonKind(val))
			return
		}
		fields := fieldsOf(dst.Type())
		keys := make([]string, 0, len(m))
		for k := range m {
			if _, known := fields[k]; known {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys) // violations in a stable order
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			assign(dst.FieldByIndex(fields[k]), m[k], p, vs)
		}
	case reflect.Slice:
		l, ok := val.([]any)
		if !ok {
			violate("must be an array, not " + jsonKind(val))
			return
		}
		out := reflect.MakeSlice(dst.Type(), len(l), len(l))
		for i, x := range l {
			assign(out.Index(i), x, path+"["+strconv.Itoa(i)+"]", vs)
		}
		dst.Set(out)
	case reflect.Map:
		m, ok := val.(map[string]any)
		if !ok || dst.Type().Key().Kind() != reflect.String {
			violate("must be an object, not " + jsonKind(val))
			return
		}
		out := reflect.MakeMapWithSize(dst.Type(), len(m))
		for k, x := range m {
			e := reflect.New(dst.Type().Elem()).Elem()
			assign(e, x, path+"."+k, vs)
			out.SetMapIndex(reflect.ValueOf(k).Convert(dst.Type().Key()), e)
		}
		dst.Set(out)
	case reflect.Interface:
		if reflect.TypeOf(val).AssignableTo(dst.Type()) {
			dst.Set(reflect.ValueOf(val))
		} else {
			violate("cannot be set")
		}
	case reflect.String:
		s, ok := val.(string)
		if !ok {
			violate("must be a string, not " + jsonKind(val))
			return
		}
		dst.SetString(s)
	case reflect.Bool:
		b, ok := val.(bool)
		if !ok {
			violate("must be a boolean, not " + jsonKind(val))
			return
		}
		dst.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := integer(val)
		if !ok {
			violate("must be an integer, not " + jsonKind(val))
			return
		}
		bits := dst.Type().Bits()
		lo, hi := int64(-1)<<(bits-1), int64(1)<<(bits-1)-1
		if !n.fitsInt64 || n.i < lo || n.i > hi {
			violate("must be between " + strconv.FormatInt(lo, 10) + " and " + strconv.FormatInt(hi, 10))
			return
		}
		dst.SetInt(n.i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := integer(val)
		if !ok {
			violate("must be an integer, not " + jsonKind(val))
			return
		}
		hi := uint64(math.MaxUint64) >> (64 - dst.Type().Bits())
		if !n.fitsUint64 || n.u > hi {
			violate("must be between 0 and " + strconv.FormatUint(hi, 10))
			return
		}
		dst.SetUint(n.u)
	case reflect.Float32, reflect.Float64:
		s, ok := numberText(val)
		f, err := strconv.ParseFloat(s, dst.Type().Bits())
		if !ok || err != nil {
			violate("must be a number, not " + jsonKind(val))
			return
		}
		dst.SetFloat(f)
	default:
		violate("cannot be set")
	}
}

// intValue is a JSON integer, as an int64 and a uint64 where it fits.
type intValue struct {
	i          int64
	u          uint64
	fitsInt64  bool
	fitsUint64 bool
}

// numberText returns the text of a JSON number, or of a string holding
// one: MidoNet's mapper takes "24" for a number, and python-midonetclient
// sends prefix lengths that way.
func numberText(val any) (string, bool) {
	switch x := val.(type) {
	case json.Number:
		return x.String(), true
	case string:
		s := strings.TrimSpace(x)
		if _, err := strconv.ParseFloat(s, 64); err == nil {
			return s, true
		}
	}
	return "", false
}

// integer parses an integral JSON number (24, -1, 1e3, 24.0), or a string
// holding one.
func integer(val any) (intValue, bool) {
	s, ok := numberText(val)
	if !ok {
		return intValue{}, false
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return intValue{i: i, u: uint64(i), fitsInt64: true, fitsUint64: i >= 0}, true
	}
	if u, err := strconv.ParseUint(s, 10, 64); err == nil {
		return intValue{u: u, fitsUint64: true}, true
	}
	if !strings.ContainsAny(s, ".eE") {
		return intValue{}, true // an integer beyond 64 bits: fits nothing
	}
	// An integral value written as a float (1e3, 24.0), taken where a
	// float64 holds it exactly.
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) {
		return intValue{}, false
	}
	const exact = 1 << 53
	if f <= -exact || f >= exact {
		return intValue{}, true
	}
	return intValue{i: int64(f), u: uint64(f), fitsInt64: true, fitsUint64: f >= 0}, true
}

// fieldCache maps a struct type to its JSON fields: name → index path.
var fieldCache sync.Map // reflect.Type → map[string][]int

// fieldsOf lists the JSON fields of a struct type, those of embedded
// structs included. Fields named with a leading underscore are the store's
// own (a tunnel zone's members, a port group's ports): the API hides them
// on output and ignores them on input, like any unknown key.
func fieldsOf(t reflect.Type) map[string][]int {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string][]int)
	}
	m := map[string][]int{}
	var walk func(t reflect.Type, index []int)
	walk = func(t reflect.Type, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			idx := append(slices.Clone(index), i)
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct {
				walk(f.Type, idx)
				continue
			}
			if !f.IsExported() || tag == "-" {
				continue
			}
			name := tag
			if name == "" {
				name = f.Name
			}
			if strings.HasPrefix(name, "_") {
				continue
			}
			// As in encoding/json, a shallower field hides a deeper one.
			if prev, dup := m[name]; !dup || len(prev) > len(idx) {
				m[name] = idx
			}
		}
	}
	walk(t, nil)
	fieldCache.Store(t, m)
	return m
}

// jsonKind names the JSON type of a decoded value.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}

// clip shortens a client's value quoted in a message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
