package dhcp

import (
	"encoding/binary"
	"errors"
	"slices"
	"strconv"

	"github.com/midonet/midonet/internal/packet"
)

// UDP ports of DHCPv4 (RFC 2131) and DHCPv6 (RFC 8415).
const (
	ServerPort4 uint16 = 67
	ClientPort4 uint16 = 68
	ServerPort6 uint16 = 547
	ClientPort6 uint16 = 546
)

// MessageType is a DHCPv4 message type (option 53).
type MessageType uint8

// DHCPv4 message types.
const (
	Discover MessageType = 1
	Offer    MessageType = 2
	Request  MessageType = 3
	Decline  MessageType = 4
	Ack      MessageType = 5
	Nak      MessageType = 6
	Release  MessageType = 7
	Inform   MessageType = 8
)

var messageTypeNames = [...]string{"", "DISCOVER", "OFFER", "REQUEST", "DECLINE", "ACK", "NAK", "RELEASE", "INFORM"}

// String returns the type's name as RFC 2131 spells it, without "DHCP".
func (t MessageType) String() string {
	if int(t) < len(messageTypeNames) && t != 0 {
		return messageTypeNames[t]
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// DHCPv4 option codes this package reads or writes itself.
const (
	OptPad            uint8 = 0
	OptSubnetMask     uint8 = 1
	OptRouter         uint8 = 3
	OptDNS            uint8 = 6
	OptHostName       uint8 = 12
	OptDomainName     uint8 = 15
	OptInterfaceMTU   uint8 = 26
	OptBroadcast      uint8 = 28
	OptRequestedIP    uint8 = 50
	OptLeaseTime      uint8 = 51
	OptOverload       uint8 = 52
	OptMessageType    uint8 = 53
	OptServerID       uint8 = 54
	OptParamList      uint8 = 55
	OptMessage        uint8 = 56
	OptMaxSize        uint8 = 57
	OptClientID       uint8 = 61
	OptRelayAgentInfo uint8 = 82
	OptClasslessRoute uint8 = 121
	OptEnd            uint8 = 255
)

// BOOTP layout (RFC 2131 figure 1).
const (
	bootpLen       = 236 // fixed fields, before the magic cookie
	optionsOff     = bootpLen + 4
	snameOff       = 44
	snameLen       = 64
	fileOff        = 108
	fileLen        = 128
	opRequest      = 1
	opReply        = 2
	htypeEthernet  = 1
	flagBroadcast  = 0x8000
	minReplyLen    = 300 // BOOTP's minimum message, which some relays and clients expect
	magicCookie    = 0x63825363
	overloadFile   = 1
	overloadSName  = 2
	maxOptionValue = 255
)

// Errors of Request4.Decode. They are values: returning one does not
// allocate.
var (
	ErrTruncated   = errors.New("dhcp: truncated message")
	ErrNotRequest  = errors.New("dhcp: not a BOOTREQUEST")
	ErrHWAddr      = errors.New("dhcp: hardware address is not Ethernet")
	ErrMagic       = errors.New("dhcp: no DHCP magic cookie")
	ErrOption      = errors.New("dhcp: option overruns the message")
	ErrNoType      = errors.New("dhcp: no valid message type option")
	ErrOptionValue = errors.New("dhcp: option value has a bad length")
)

// Request4 is a decoded DHCPv4 request, filled in place by Decode. The
// byte slices (ParamList, RelayInfo, ClientID) point into the decoded
// message, which the caller keeps unchanged while it uses them.
type Request4 struct {
	Type   MessageType
	XID    uint32
	Secs   uint16
	Flags  uint16
	Hops   uint8
	CIAddr [4]byte
	GIAddr [4]byte
	CHAddr [6]byte

	RequestedIP    [4]byte
	HasRequestedIP bool
	ServerID       [4]byte
	HasServerID    bool
	// ParamList is the client's parameter request list (option 55).
	ParamList []byte
	// RelayInfo is the relay agent information (option 82) that a relay
	// added; a reply carries it back unchanged (RFC 3046).
	RelayInfo []byte
	// ClientID is the client identifier (option 61), if any.
	ClientID []byte
	// MaxSize is the largest message the client accepts (option 57), or 0.
	MaxSize uint16
}

// Broadcast reports whether the client asked for broadcast replies (it
// cannot receive unicast IP before it has an address).
func (r *Request4) Broadcast() bool { return r.Flags&flagBroadcast != 0 }

// Decode decodes msg, the UDP payload of a packet to port 67. It returns
// ErrNotRequest for a BOOTREPLY (not a client's message: the caller lets it
// through untouched) and another error for a malformed request, which the
// caller drops. It does not allocate.
func (r *Request4) Decode(msg []byte) error {
	*r = Request4{}
	if len(msg) < bootpLen {
		return ErrTruncated
	}
	if msg[0] != opRequest {
		return ErrNotRequest
	}
	if msg[1] != htypeEthernet || msg[2] != 6 {
		return ErrHWAddr
	}
	r.Hops = msg[3]
	r.XID = binary.BigEndian.Uint32(msg[4:])
	r.Secs = binary.BigEndian.Uint16(msg[8:])
	r.Flags = binary.BigEndian.Uint16(msg[10:])
	r.CIAddr = [4]byte(msg[12:16])
	r.GIAddr = [4]byte(msg[24:28])
	r.CHAddr = [6]byte(msg[28:34])
	if len(msg) < optionsOff || binary.BigEndian.Uint32(msg[bootpLen:]) != magicCookie {
		return ErrMagic
	}
	overload, err := r.decodeOptions(msg[optionsOff:], true)
	if err != nil {
		return err
	}
	// Option overload (RFC 2131 4.1): options continue in file, then sname.
	if overload&overloadFile != 0 {
		if _, err := r.decodeOptions(msg[fileOff:fileOff+fileLen], false); err != nil {
			return err
		}
	}
	if overload&overloadSName != 0 {
		if _, err := r.decodeOptions(msg[snameOff:snameOff+snameLen], false); err != nil {
			return err
		}
	}
	if r.Type < Discover || r.Type > Inform {
		return ErrNoType
	}
	return nil
}

// decodeOptions reads the options in b; the options field (main) may end
// without an end option when the message does, an overloaded field may not
// carry another overload option.
func (r *Request4) decodeOptions(b []byte, main bool) (overload uint8, err error) {
	for i := 0; i < len(b); {
		code := b[i]
		if code == OptPad {
			i++
			continue
		}
		if code == OptEnd {
			return overload, nil
		}
		if i+2 > len(b) || i+2+int(b[i+1]) > len(b) {
			return 0, ErrOption
		}
		v := b[i+2 : i+2+int(b[i+1])]
		i += 2 + len(v)
		switch code {
		case OptMessageType:
			if len(v) != 1 {
				return 0, ErrNoType
			}
			r.Type = MessageType(v[0])
		case OptRequestedIP:
			if len(v) != 4 {
				return 0, ErrOptionValue
			}
			r.RequestedIP, r.HasRequestedIP = [4]byte(v), true
		case OptServerID:
			if len(v) != 4 {
				return 0, ErrOptionValue
			}
			r.ServerID, r.HasServerID = [4]byte(v), true
		case OptParamList:
			if len(v) == 0 {
				return 0, ErrOptionValue
			}
			r.ParamList = v
		case OptMaxSize:
			if len(v) != 2 {
				return 0, ErrOptionValue
			}
			r.MaxSize = binary.BigEndian.Uint16(v)
		case OptRelayAgentInfo:
			r.RelayInfo = v
		case OptClientID:
			r.ClientID = v
		case OptOverload:
			if !main || len(v) != 1 || v[0] < 1 || v[0] > 3 {
				return 0, ErrOptionValue
			}
			overload = v[0]
		}
	}
	if !main {
		return 0, nil // a full sname or file field needs no end option
	}
	// RFC 2131 requires an end option; clients that omit it at the very
	// end of the packet are accepted, as most servers do.
	return overload, nil
}

// RequestFields describes a client's request, for AppendRequest4: the
// `midonet trace` probe, load generators and tests.
type RequestFields struct {
	Type        MessageType
	XID         uint32
	CHAddr      [6]byte
	CIAddr      [4]byte // the client's address when renewing or informing
	RequestedIP [4]byte // option 50 when not zero
	ServerID    [4]byte // option 54 when not zero
	Broadcast   bool
}

// AppendRequest4 appends a client's request frame: Ethernet from CHAddr,
// IPv4 from CIAddr (0.0.0.0 without one) to the broadcast address, UDP
// 68 to 67, then the BOOTREQUEST, checksums included.
func AppendRequest4(dst []byte, f RequestFields) []byte {
	var opts [3 + 6 + 6 + 6 + 1]byte
	o := append(opts[:0], OptMessageType, 1, byte(f.Type))
	if f.RequestedIP != [4]byte{} {
		o = append(o, OptRequestedIP, 4)
		o = append(o, f.RequestedIP[:]...)
	}
	if f.ServerID != [4]byte{} {
		o = append(o, OptServerID, 4)
		o = append(o, f.ServerID[:]...)
	}
	o = append(o, OptParamList, 4, OptSubnetMask, OptRouter, OptDNS, OptClasslessRoute, OptEnd)
	msgLen := max(optionsOff+len(o), minReplyLen)
	const hdrs = packet.EthernetHeaderLen + packet.IPv4MinHeaderLen + packet.UDPHeaderLen
	dst = slices.Grow(dst, hdrs+msgLen)
	start := len(dst)
	dst = dst[:start+hdrs+msgLen]
	b := dst[start:]
	clear(b)
	bcast := [4]byte{255, 255, 255, 255}
	packet.Ethernet(b).Encode(packet.EthernetFields{Dst: packet.BroadcastMAC, Src: f.CHAddr, EtherType: packet.EtherTypeIPv4})
	ip := b[packet.EthernetHeaderLen:]
	packet.IPv4(ip).Encode(packet.IPv4Fields{TotalLen: uint16(packet.IPv4MinHeaderLen + packet.UDPHeaderLen + msgLen),
		TTL: packet.DefaultTTL, Protocol: packet.IPProtoUDP, Src: f.CIAddr, Dst: bcast})
	udp := ip[packet.IPv4MinHeaderLen:]
	m := udp[packet.UDPHeaderLen:]
	m[0], m[1], m[2] = opRequest, htypeEthernet, 6
	binary.BigEndian.PutUint32(m[4:], f.XID)
	if f.Broadcast {
		binary.BigEndian.PutUint16(m[10:], flagBroadcast)
	}
	copy(m[12:16], f.CIAddr[:])
	copy(m[28:34], f.CHAddr[:])
	binary.BigEndian.PutUint32(m[bootpLen:], magicCookie)
	copy(m[optionsOff:], o)
	udpLen := uint16(packet.UDPHeaderLen + msgLen)
	packet.UDP(udp).Encode(packet.UDPFields{SrcPort: ClientPort4, DstPort: ServerPort4, Length: udpLen})
	c := packet.Checksum(udp[:udpLen], packet.PseudoHeaderSum4(f.CIAddr, bcast, packet.IPProtoUDP, udpLen))
	if c == 0 {
		c = 0xffff
	}
	packet.UDP(udp).SetChecksum(c)
	return dst
}
