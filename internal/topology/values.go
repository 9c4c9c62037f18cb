package topology

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// ID is an object id; it encodes as a canonical lowercase UUID string.
type ID = uuid.UUID

// NewID returns a random id.
func NewID() ID { return uuid.New() }

// ParseID parses a UUID string.
func ParseID(s string) (ID, error) { return uuid.Parse(s) }

// IsIPv4 reports whether s is a dotted quad with octets 0-255 and no leading
// zeros, the form MidoNet's API accepts.
func IsIPv4(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		if p == "" || len(p) > 3 || (len(p) > 1 && p[0] == '0') {
			return false
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 255 || p[0] == '+' || p[0] == '-' {
			return false
		}
	}
	return true
}

// ParseIPv4 parses an address IsIPv4 accepts.
func ParseIPv4(s string) (netip.Addr, bool) {
	if !IsIPv4(s) {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	return a, err == nil
}

// ParseMAC parses a MAC written as six ':'-separated groups of one or two
// hex digits (also '-' as separator, as in URL paths).
func ParseMAC(s string) ([6]byte, bool) {
	var mac [6]byte
	sep := ":"
	if strings.Contains(s, "-") {
		sep = "-"
	}
	parts := strings.Split(s, sep)
	if len(parts) != 6 {
		return mac, false
	}
	for i, p := range parts {
		if len(p) < 1 || len(p) > 2 {
			return mac, false
		}
		n, err := strconv.ParseUint(p, 16, 8)
		if err != nil {
			return mac, false
		}
		mac[i] = byte(n)
	}
	return mac, true
}

// FormatMAC writes a MAC as aa:bb:cc:dd:ee:ff.
func FormatMAC(m [6]byte) string {
	const hex = "0123456789abcdef"
	b := make([]byte, 0, 17)
	for i, x := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hex[x>>4], hex[x&15])
	}
	return string(b)
}

// ParseMACMask parses a MAC mask written as ffff.ff00.0000.
func ParseMACMask(s string) ([6]byte, bool) {
	var m [6]byte
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return m, false
	}
	for i, p := range parts {
		if len(p) != 4 {
			return m, false
		}
		n, err := strconv.ParseUint(p, 16, 16)
		if err != nil {
			return m, false
		}
		m[2*i], m[2*i+1] = byte(n>>8), byte(n)
	}
	return m, true
}

// Prefix4 builds an IPv4 prefix from an address string and a length, the
// pair of fields the API uses.
func Prefix4(addr string, length int) (netip.Prefix, bool) {
	a, ok := ParseIPv4(addr)
	if !ok || length < 0 || length > 32 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, length).Masked(), true
}

// checkIPv4 validates a required or optional IPv4 field.
func (v *violations) checkIPv4(prop string, s *string, required bool) {
	if s == nil {
		if required {
			v.add(prop, "may not be null")
		}
		return
	}
	if !IsIPv4(*s) {
		v.add(prop, "is an invalid IP format")
	}
}

func (v *violations) checkLen(prop string, s *string, min, max int) {
	if s == nil {
		if min > 0 {
			v.add(prop, "may not be null")
		}
		return
	}
	if n := len(*s); n < min || n > max {
		v.add(prop, "size must be between "+strconv.Itoa(min)+" and "+strconv.Itoa(max))
	}
}

func (v *violations) checkRange(prop string, n, min, max int64) {
	if n < min {
		v.add(prop, "must be greater than or equal to "+strconv.FormatInt(min, 10))
	} else if n > max {
		v.add(prop, "must be less than or equal to "+strconv.FormatInt(max, 10))
	}
}

func (v *violations) checkMAC(prop string, s *string, required bool) {
	if s == nil {
		if required {
			v.add(prop, "may not be null")
		}
		return
	}
	if _, ok := ParseMAC(*s); !ok || strings.Contains(*s, "-") {
		v.add(prop, "is not a valid MAC address")
	}
}

// Str returns a pointer to s, for optional string fields.
func Str(s string) *string { return &s }

// IDPtr returns a pointer to id, for optional references.
func IDPtr(id ID) *ID { return &id }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
