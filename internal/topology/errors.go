package topology

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors; the API maps them to HTTP statuses in one place.
var (
	ErrNotFound  = errors.New("not found")               // 404
	ErrExists    = errors.New("already exists")          // 409
	ErrConflict  = errors.New("conflict")                // 409
	ErrForbidden = errors.New("forbidden")               // 403
	ErrInvalid   = errors.New("invalid")                 // 400
	ErrBusy      = errors.New("temporarily unavailable") // 503
)

// Violation is one failed field check, as MidoNet's API reports it.
type Violation struct {
	Property string `json:"property"`
	Message  string `json:"message"`
}

// ValidationError lists the violations of one object (a 400).
type ValidationError struct {
	Violations []Violation
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		if v.Property == "" {
			parts[i] = v.Message
		} else {
			parts[i] = v.Property + " " + v.Message
		}
	}
	return "validation error(s): " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalid) hold for validation errors.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// violations collects field checks.
type violations []Violation

func (v *violations) add(prop, msg string) { *v = append(*v, Violation{prop, msg}) }

func (v violations) err() error {
	if len(v) == 0 {
		return nil
	}
	return &ValidationError{Violations: v}
}

// Errorf builds an error wrapping a sentinel with a message that names the
// object and the way out.
func Errorf(sentinel error, format string, args ...any) error {
	return &Error{Kind: sentinel, Msg: fmt.Sprintf(format, args...)}
}

// Error is an error with a message of its own and a sentinel kind.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

func notFound(kind, id string) error {
	return Errorf(ErrNotFound, "%s %s does not exist", Singular(kind), id)
}

// Singular turns a collection kind into a word for messages.
func Singular(kind string) string {
	kind = strings.ReplaceAll(kind, "_", " ")
	switch {
	case strings.HasSuffix(kind, "ies"):
		return kind[:len(kind)-3] + "y"
	case strings.HasSuffix(kind, "s"):
		return kind[:len(kind)-1]
	}
	return kind
}

// Checks validates request bodies that are not model objects (a binding, a
// link, a table entry) with the same rules and messages as the model.
type Checks struct{ v violations }

// Required reports prop missing unless present.
func (c *Checks) Required(prop string, present bool) {
	if !present {
		c.v.add(prop, "may not be null")
	}
}

// IPv4 checks a required IPv4 address.
func (c *Checks) IPv4(prop string, s *string) { c.v.checkIPv4(prop, s, true) }

// MAC checks a required MAC address.
func (c *Checks) MAC(prop string, s *string) { c.v.checkMAC(prop, s, true) }

// Err returns the violations found, or nil.
func (c *Checks) Err() error { return c.v.err() }
