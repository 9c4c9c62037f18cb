package ovs

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/midonet/midonet/internal/datapath"
)

// Set actions go out as OVS_ACTION_ATTR_SET_MASKED so that only the fields
// an action selects change; the kernel requires the value to be zero
// wherever the mask is. The tunnel is the exception: it is always a plain
// SET of the whole tunnel key. The kernel reports back a SET it was given
// as SET, so decoding accepts both forms.

// appendActions appends the OVS_ACTION_ATTR_* list of actions. upcallPID is
// the netlink port userspace actions send to, tunnelSrc the outer source
// of a set-tunnel without one (zero: the kernel's route decides). The
// caller has validated the actions with datapath.ValidateActions.
func appendActions(e *encoder, actions []datapath.Action, upcallPID uint32, tunnelSrc [4]byte) {
	for i := range actions {
		a := &actions[i]
		switch a.Kind {
		case datapath.ActOutput:
			e.u32(actAttrOutput, uint32(a.Port))
		case datapath.ActSetEth:
			off := e.begin(actAttrSetMasked)
			b := e.fixed(keyAttrEthernet, 24)
			if a.Eth.Fields&datapath.SetSrc != 0 {
				copy(b[0:6], a.Eth.Src[:])
				fill(b[12:18])
			}
			if a.Eth.Fields&datapath.SetDst != 0 {
				copy(b[6:12], a.Eth.Dst[:])
				fill(b[18:24])
			}
			e.end(off)
		case datapath.ActSetIPv4:
			off := e.begin(actAttrSetMasked)
			b := e.fixed(keyAttrIPv4, 24) // value, then mask; proto and frag are not writable
			f := a.IPv4.Fields
			if f&datapath.SetSrc != 0 {
				copy(b[0:4], a.IPv4.Src[:])
				fill(b[12:16])
			}
			if f&datapath.SetDst != 0 {
				copy(b[4:8], a.IPv4.Dst[:])
				fill(b[16:20])
			}
			if f&datapath.SetTOS != 0 {
				b[9], b[21] = a.IPv4.TOS, 0xff
			}
			if f&datapath.SetTTL != 0 {
				b[10], b[22] = a.IPv4.TTL, 0xff
			}
			e.end(off)
		case datapath.ActSetTCP, datapath.ActSetUDP:
			attr := uint16(keyAttrTCP)
			if a.Kind == datapath.ActSetUDP {
				attr = keyAttrUDP
			}
			off := e.begin(actAttrSetMasked)
			b := e.fixed(attr, 8)
			if a.L4.Fields&datapath.SetSrc != 0 {
				binary.BigEndian.PutUint16(b[0:2], a.L4.Src)
				fill(b[4:6])
			}
			if a.L4.Fields&datapath.SetDst != 0 {
				binary.BigEndian.PutUint16(b[2:4], a.L4.Dst)
				fill(b[6:8])
			}
			e.end(off)
		case datapath.ActSetTunnel:
			t := &a.Tunnel
			ttl := t.TTL
			if ttl == 0 {
				ttl = datapath.DefaultTunnelTTL
			}
			src := tunnelSrc
			if t.Src.Is4() {
				src = t.Src.As4()
			}
			off := e.begin(actAttrSet)
			appendTunnel(e, keyAttrTunnel, t.VNI, src, t.Dst.As4(), t.TOS, ttl, false)
			e.end(off)
		case datapath.ActPushVLAN:
			b := e.fixed(actAttrPushVLAN, 4)
			binary.BigEndian.PutUint16(b[0:2], ethTypeVLAN)
			binary.BigEndian.PutUint16(b[2:4], a.TCI|vlanCFI)
		case datapath.ActPopVLAN:
			e.flag(actAttrPopVLAN)
		case datapath.ActUserspace:
			off := e.begin(actAttrUserspace)
			e.u32(userspaceAttrPID, upcallPID)
			b := e.fixed(userspaceAttrUserdata, 8)
			binary.LittleEndian.PutUint64(b, a.Cookie)
			e.end(off)
		}
	}
}

func fill(b []byte) {
	for i := range b {
		b[i] = 0xff
	}
}

func isFull(b []byte) bool {
	for _, c := range b {
		if c != 0xff {
			return false
		}
	}
	return true
}

// decodeActions appends the actions of an OVS_ACTION_ATTR_* list to dst.
// An action this package does not produce is an error wrapping
// datapath.ErrBadAction.
func decodeActions(dst []datapath.Action, b []byte) ([]datapath.Action, error) {
	a := attrs{b: b}
	for a.next() {
		var act datapath.Action
		switch a.typ {
		case actAttrOutput:
			act = datapath.Output(datapath.PortNo(a.u32()))
		case actAttrPopVLAN:
			act = datapath.PopVLAN()
		case actAttrPushVLAN:
			p := a.want(4)
			if p == nil {
				break
			}
			act = datapath.PushVLAN(binary.BigEndian.Uint16(p[2:4]) &^ vlanCFI)
		case actAttrUserspace:
			act.Kind = datapath.ActUserspace
			u := attrs{b: a.val}
			for u.next() {
				if u.typ == userspaceAttrUserdata && len(u.val) >= 8 {
					act.Cookie = binary.LittleEndian.Uint64(u.val)
				}
			}
			a.bad = a.bad || u.bad
		case actAttrSet, actAttrSetMasked:
			var err error
			act, err = decodeSet(a.val, a.typ == actAttrSetMasked)
			if err != nil {
				return dst, err
			}
		case actAttrMeter:
			// The port's policer, which the backend adds itself: not one
			// of the caller's actions.
			continue
		default:
			return dst, fmt.Errorf("action attribute %d: %w", a.typ, datapath.ErrBadAction)
		}
		if a.bad {
			break
		}
		dst = append(dst, act)
	}
	if a.bad {
		return dst, fmt.Errorf("malformed action list: %w", datapath.ErrBadAction)
	}
	return dst, nil
}

// decodeSet decodes the single key attribute nested in a set action.
func decodeSet(b []byte, masked bool) (datapath.Action, error) {
	a := attrs{b: b}
	if !a.next() {
		return datapath.Action{}, fmt.Errorf("empty set action: %w", datapath.ErrBadAction)
	}
	half := func(n int) (val, mask []byte, ok bool) {
		if masked {
			if len(a.val) < 2*n {
				return nil, nil, false
			}
			return a.val[:n], a.val[n : 2*n], true
		}
		if len(a.val) < n {
			return nil, nil, false
		}
		return a.val[:n], allOnes[:n], true // a plain set writes every field
	}
	bad := fmt.Errorf("set of key attribute %d (masked %v): %w", a.typ, masked, datapath.ErrBadAction)
	switch a.typ {
	case keyAttrEthernet:
		v, m, ok := half(12)
		if !ok {
			return datapath.Action{}, bad
		}
		var s datapath.EthernetSet
		copyMasked(&s.Fields, datapath.SetSrc, s.Src[:], v[0:6], m[0:6])
		copyMasked(&s.Fields, datapath.SetDst, s.Dst[:], v[6:12], m[6:12])
		return datapath.SetEthernet(s), nil
	case keyAttrIPv4:
		v, m, ok := half(12)
		if !ok {
			return datapath.Action{}, bad
		}
		var s datapath.IPv4Set
		copyMasked(&s.Fields, datapath.SetSrc, s.Src[:], v[0:4], m[0:4])
		copyMasked(&s.Fields, datapath.SetDst, s.Dst[:], v[4:8], m[4:8])
		if m[9] == 0xff {
			s.Fields |= datapath.SetTOS
			s.TOS = v[9]
		}
		if m[10] == 0xff {
			s.Fields |= datapath.SetTTL
			s.TTL = v[10]
		}
		return datapath.SetIPv4(s), nil
	case keyAttrTCP, keyAttrUDP:
		v, m, ok := half(4)
		if !ok {
			return datapath.Action{}, bad
		}
		var s datapath.L4Set
		if isFull(m[0:2]) {
			s.Fields |= datapath.SetSrc
			s.Src = binary.BigEndian.Uint16(v[0:2])
		}
		if isFull(m[2:4]) {
			s.Fields |= datapath.SetDst
			s.Dst = binary.BigEndian.Uint16(v[2:4])
		}
		if a.typ == keyAttrTCP {
			return datapath.SetTCP(s), nil
		}
		return datapath.SetUDP(s), nil
	case keyAttrTunnel:
		if masked {
			return datapath.Action{}, bad
		}
		var k tunnelFields
		if !k.decode(a.val) {
			return datapath.Action{}, bad
		}
		t := datapath.TunnelSet{VNI: k.id, Dst: netip.AddrFrom4(k.dst), TOS: k.tos, TTL: k.ttl}
		if k.src != ([4]byte{}) {
			t.Src = netip.AddrFrom4(k.src)
		}
		return datapath.SetTunnel(t), nil
	}
	return datapath.Action{}, bad
}

// allOnes is the mask of a plain (unmasked) set: read only.
var allOnes = [12]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// copyMasked copies v into dst and adds bit to *fields when the mask m
// selects all of v; a field masked only in part is left out.
func copyMasked(fields *uint8, bit uint8, dst, v, m []byte) {
	if isFull(m) {
		*fields |= bit
		copy(dst, v)
	}
}

type tunnelFields struct {
	id       uint32
	src, dst [4]byte
	tos, ttl uint8
}

func (t *tunnelFields) decode(b []byte) bool {
	a := attrs{b: b}
	for a.next() {
		switch a.typ {
		case tunAttrID:
			t.id = uint32(a.be64())
		case tunAttrIPv4Src:
			if p := a.want(4); p != nil {
				copy(t.src[:], p)
			}
		case tunAttrIPv4Dst:
			if p := a.want(4); p != nil {
				copy(t.dst[:], p)
			}
		case tunAttrTOS:
			t.tos = a.u8()
		case tunAttrTTL:
			t.ttl = a.u8()
		}
	}
	return !a.bad
}
