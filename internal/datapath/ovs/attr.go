package ovs

import "encoding/binary"

// Netlink attributes are (len u16, type u16, payload) padded to 4 bytes.
// Integers are host order unless the OVS header says be16/be32.

const (
	attrHdrLen   = 4
	attrNested   = 0x8000 // NLA_F_NESTED
	attrNetOrder = 0x4000 // NLA_F_NET_BYTEORDER
	attrTypeMask = ^uint16(attrNested | attrNetOrder)
)

func align4(n int) int { return (n + 3) &^ 3 }

// encoder appends netlink attributes to b. It never fails; the caller
// bounds what it encodes.
type encoder struct{ b []byte }

func (e *encoder) header(typ uint16, n int) {
	e.b = binary.NativeEndian.AppendUint16(e.b, uint16(attrHdrLen+n))
	e.b = binary.NativeEndian.AppendUint16(e.b, typ)
}

func (e *encoder) pad() {
	for len(e.b)%4 != 0 {
		e.b = append(e.b, 0)
	}
}

func (e *encoder) flag(typ uint16) { e.header(typ, 0) }

func (e *encoder) u8(typ uint16, v uint8) {
	e.header(typ, 1)
	e.b = append(e.b, v)
	e.pad()
}

func (e *encoder) u16(typ uint16, v uint16) {
	e.header(typ, 2)
	e.b = binary.NativeEndian.AppendUint16(e.b, v)
	e.pad()
}

func (e *encoder) be16(typ uint16, v uint16) {
	e.header(typ, 2)
	e.b = binary.BigEndian.AppendUint16(e.b, v)
	e.pad()
}

func (e *encoder) u32(typ uint16, v uint32) {
	e.header(typ, 4)
	e.b = binary.NativeEndian.AppendUint32(e.b, v)
}

func (e *encoder) be64(typ uint16, v uint64) {
	e.header(typ, 8)
	e.b = binary.BigEndian.AppendUint64(e.b, v)
}

func (e *encoder) bytes(typ uint16, v []byte) {
	e.header(typ, len(v))
	e.b = append(e.b, v...)
	e.pad()
}

func (e *encoder) str(typ uint16, s string) {
	e.header(typ, len(s)+1)
	e.b = append(e.b, s...)
	e.b = append(e.b, 0)
	e.pad()
}

// begin opens a nested attribute; end closes it.
func (e *encoder) begin(typ uint16) int {
	// No NLA_F_NESTED: the OVS families parse nests by position, and the
	// OVS userland does not set it either.
	off := len(e.b)
	e.header(typ, 0)
	return off
}

func (e *encoder) end(off int) {
	binary.NativeEndian.PutUint16(e.b[off:], uint16(len(e.b)-off))
}

// fixed appends a zeroed payload of n bytes and returns it to fill in place.
func (e *encoder) fixed(typ uint16, n int) []byte {
	e.header(typ, n)
	start := len(e.b)
	for range align4(n) {
		e.b = append(e.b, 0)
	}
	return e.b[start : start+n]
}

// attrs iterates over netlink attributes without allocating. A malformed
// or short attribute sets bad; a truncated list ends the iteration.
type attrs struct {
	b   []byte
	typ uint16
	val []byte
	bad bool
}

// next advances to the next attribute and reports whether there is one.
func (a *attrs) next() bool {
	if len(a.b) < attrHdrLen {
		if len(a.b) != 0 {
			a.bad = true
		}
		return false
	}
	n := int(binary.NativeEndian.Uint16(a.b))
	if n < attrHdrLen || n > len(a.b) {
		a.bad = true
		return false
	}
	a.typ = binary.NativeEndian.Uint16(a.b[2:]) & attrTypeMask
	a.val = a.b[attrHdrLen:n]
	if m := align4(n); m <= len(a.b) {
		a.b = a.b[m:]
	} else {
		a.b = a.b[len(a.b):]
	}
	return true
}

func (a *attrs) u8() uint8 {
	if p := a.want(1); p != nil {
		return p[0]
	}
	return 0
}

func (a *attrs) u16() uint16 {
	if p := a.want(2); p != nil {
		return binary.NativeEndian.Uint16(p)
	}
	return 0
}

func (a *attrs) be16() uint16 {
	if p := a.want(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (a *attrs) u32() uint32 {
	if p := a.want(4); p != nil {
		return binary.NativeEndian.Uint32(p)
	}
	return 0
}

func (a *attrs) u64() uint64 {
	if p := a.want(8); p != nil {
		return binary.NativeEndian.Uint64(p)
	}
	return 0
}

func (a *attrs) be64() uint64 {
	if p := a.want(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

// str returns the payload up to its NUL. It allocates; control path only.
func (a *attrs) str() string {
	v := a.val
	for i, c := range v {
		if c == 0 {
			v = v[:i]
			break
		}
	}
	return string(v)
}

// want returns the payload if it is at least n bytes, else marks a bad.
func (a *attrs) want(n int) []byte {
	if len(a.val) < n {
		a.bad = true
		return nil
	}
	return a.val[:n]
}
