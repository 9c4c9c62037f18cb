package dhcp

import (
	"encoding/binary"
	"errors"
	"strconv"
)

// MessageType6 is a DHCPv6 message type (RFC 8415 7.3).
type MessageType6 uint8

// DHCPv6 message types.
const (
	MsgSolicit     MessageType6 = 1
	MsgAdvertise   MessageType6 = 2
	MsgRequest     MessageType6 = 3
	MsgConfirm     MessageType6 = 4
	MsgRenew       MessageType6 = 5
	MsgRebind      MessageType6 = 6
	MsgReply       MessageType6 = 7
	MsgRelease     MessageType6 = 8
	MsgDecline     MessageType6 = 9
	MsgInfoRequest MessageType6 = 11
	MsgRelayForw   MessageType6 = 12
)

var messageType6Names = map[MessageType6]string{MsgSolicit: "SOLICIT", MsgAdvertise: "ADVERTISE", MsgRequest: "REQUEST",
	MsgConfirm: "CONFIRM", MsgRenew: "RENEW", MsgRebind: "REBIND", MsgReply: "REPLY", MsgRelease: "RELEASE", MsgDecline: "DECLINE",
	MsgInfoRequest: "INFORMATION-REQUEST", MsgRelayForw: "RELAY-FORW"}

// String returns the type's name as RFC 8415 spells it.
func (t MessageType6) String() string {
	if n, ok := messageType6Names[t]; ok {
		return n
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// DHCPv6 option codes (RFC 8415 21, RFC 3646).
const (
	Opt6ClientID    uint16 = 1
	Opt6ServerID    uint16 = 2
	Opt6IANA        uint16 = 3
	Opt6IAAddr      uint16 = 5
	Opt6ORO         uint16 = 6
	Opt6Preference  uint16 = 7
	Opt6ElapsedTime uint16 = 8
	Opt6StatusCode  uint16 = 13
	Opt6RapidCommit uint16 = 14
	Opt6DNSServers  uint16 = 23
	Opt6DomainList  uint16 = 24
)

// DHCPv6 status codes (RFC 8415 21.13).
const (
	status6Success   = 0
	status6NoAddrs   = 2
	status6NotOnLink = 4
)

// DUID types (RFC 8415 11).
const (
	duidLLT = 1
	duidLL  = 3
)

// Errors of Request6.Decode, besides ErrTruncated and ErrOption.
var (
	ErrNotClient6 = errors.New("dhcp: not a DHCPv6 client message")
	ErrNoClientID = errors.New("dhcp: DHCPv6 message without a client identifier")
)

// maxIAs bounds the IA_NA options a request may carry that Decode keeps.
const maxIAs = 4

// IA6 is one identity association for non-temporary addresses in a
// request: its IAID and the first address the client asks for, if any.
type IA6 struct {
	IAID    uint32
	Addr    [16]byte
	HasAddr bool
}

// Request6 is a decoded DHCPv6 client message, filled in place. ClientID
// and ServerID point into the decoded message.
type Request6 struct {
	Type        MessageType6
	XID         [3]byte
	ClientID    []byte
	ServerID    []byte
	IAs         [maxIAs]IA6
	NIA         int // IAs in use
	RapidCommit bool
}

// Decode decodes msg, the UDP payload of a packet to port 547. It returns
// ErrNotClient6 for messages a server does not answer (server messages,
// relayed ones), another error for a malformed message. It does not
// allocate.
func (r *Request6) Decode(msg []byte) error {
	*r = Request6{}
	if len(msg) < 4 {
		return ErrTruncated
	}
	r.Type = MessageType6(msg[0])
	switch r.Type {
	case MsgSolicit, MsgRequest, MsgConfirm, MsgRenew, MsgRebind, MsgRelease, MsgDecline, MsgInfoRequest:
	default:
		return ErrNotClient6
	}
	r.XID = [3]byte(msg[1:4])
	for b := msg[4:]; len(b) > 0; {
		if len(b) < 4 {
			return ErrOption
		}
		code, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if len(b) < 4+n {
			return ErrOption
		}
		v := b[4 : 4+n]
		b = b[4+n:]
		switch code {
		case Opt6ClientID:
			if n < 2 {
				return ErrOptionValue
			}
			r.ClientID = v
		case Opt6ServerID:
			if n < 2 {
				return ErrOptionValue
			}
			r.ServerID = v
		case Opt6RapidCommit:
			r.RapidCommit = true
		case Opt6IANA:
			if n < 12 {
				return ErrOptionValue
			}
			if r.NIA == maxIAs {
				continue
			}
			ia := &r.IAs[r.NIA]
			ia.IAID = binary.BigEndian.Uint32(v)
			for o := v[12:]; len(o) > 0; {
				if len(o) < 4 {
					return ErrOption
				}
				c, l := binary.BigEndian.Uint16(o), int(binary.BigEndian.Uint16(o[2:]))
				if len(o) < 4+l {
					return ErrOption
				}
				if c == Opt6IAAddr && l >= 24 && !ia.HasAddr {
					ia.Addr, ia.HasAddr = [16]byte(o[4:20]), true
				}
				o = o[4+l:]
			}
			r.NIA++
		}
	}
	if r.ClientID == nil && r.Type != MsgInfoRequest {
		return ErrNoClientID
	}
	return nil
}

// duidMAC returns the link-layer address of a DUID-LL or DUID-LLT of an
// Ethernet interface.
func duidMAC(duid []byte) ([6]byte, bool) {
	if len(duid) < 4 || binary.BigEndian.Uint16(duid[2:]) != 1 { // hardware type Ethernet
		return [6]byte{}, false
	}
	switch binary.BigEndian.Uint16(duid) {
	case duidLL:
		if len(duid) == 10 {
			return [6]byte(duid[4:10]), true
		}
	case duidLLT:
		if len(duid) == 14 {
			return [6]byte(duid[8:14]), true
		}
	}
	return [6]byte{}, false
}
