package datapath

import (
	"fmt"
	"net/netip"

	"github.com/midonet/midonet/internal/packet"
)

// ActionKind names an action. An empty action list drops the packet.
type ActionKind uint8

// Action kinds.
const (
	ActOutput    ActionKind = iota + 1 // send to Port
	ActSetEth                          // rewrite Ethernet addresses (Eth)
	ActSetIPv4                         // rewrite IPv4 fields (IPv4), fixing checksums
	ActSetTCP                          // rewrite TCP ports (L4), fixing the checksum
	ActSetUDP                          // rewrite UDP ports (L4), fixing the checksum
	ActSetTunnel                       // set tunnel metadata for a later output to the VXLAN port
	ActPushVLAN                        // push an 802.1Q tag with TCI
	ActPopVLAN                         // pop the outer 802.1Q tag
	ActUserspace                       // send the packet to the agent with Cookie
)

func (k ActionKind) String() string {
	switch k {
	case ActOutput:
		return "output"
	case ActSetEth:
		return "set_eth"
	case ActSetIPv4:
		return "set_ipv4"
	case ActSetTCP:
		return "set_tcp"
	case ActSetUDP:
		return "set_udp"
	case ActSetTunnel:
		return "set_tunnel"
	case ActPushVLAN:
		return "push_vlan"
	case ActPopVLAN:
		return "pop_vlan"
	case ActUserspace:
		return "userspace"
	}
	return fmt.Sprintf("ActionKind(%d)", uint8(k))
}

// Field-selection bits for the set actions: only selected fields change.
const (
	SetSrc = packet.SetSrc // source address or port
	SetDst = packet.SetDst // destination address or port
	SetTOS = packet.SetTOS // IPv4 TOS (DSCP and ECN)
	SetTTL = packet.SetTTL // IPv4 TTL
)

// The arguments of the set actions are package packet's, which applies
// them: one implementation of header rewrites for every backend.
type (
	// EthernetSet is the argument of a set-Ethernet action.
	EthernetSet = packet.EthernetSet
	// IPv4Set is the argument of a set-IPv4 action. Decrementing the TTL
	// is a set of TTL to the matched TTL minus one (TTL must then be in
	// the mask).
	IPv4Set = packet.IPv4Set
	// L4Set is the argument of a set-TCP or set-UDP action.
	L4Set = packet.L4Set
)

// TunnelSet is the argument of a set-tunnel action: the outer header of the
// VXLAN encapsulation done by a following output to the VXLAN port.
type TunnelSet struct {
	VNI uint32     // 24 bits
	Dst netip.Addr // IPv4 underlay destination
	Src netip.Addr // IPv4 underlay source; zero: the VXLAN port's local address
	TOS uint8
	TTL uint8 // 0: DefaultTunnelTTL
}

// DefaultTunnelTTL is the outer TTL when a TunnelSet leaves TTL zero.
const DefaultTunnelTTL = 64

// Action is one step of a flow's action list. It is a plain value; only the
// fields of its Kind are meaningful. Build actions with the constructors.
type Action struct {
	Kind   ActionKind
	Port   PortNo // ActOutput
	TCI    uint16 // ActPushVLAN (VLANPresent need not be set)
	Cookie uint64 // ActUserspace
	Eth    EthernetSet
	IPv4   IPv4Set
	L4     L4Set
	Tunnel TunnelSet
}

// Output sends the packet, as modified so far, to port.
func Output(port PortNo) Action { return Action{Kind: ActOutput, Port: port} }

// SetEthernet rewrites the Ethernet addresses selected by s.Fields.
func SetEthernet(s EthernetSet) Action { return Action{Kind: ActSetEth, Eth: s} }

// SetIPv4 rewrites the IPv4 fields selected by s.Fields, updating the IPv4
// checksum and the TCP/UDP checksum when addresses change.
func SetIPv4(s IPv4Set) Action { return Action{Kind: ActSetIPv4, IPv4: s} }

// SetTCP rewrites TCP ports selected by s.Fields.
func SetTCP(s L4Set) Action { return Action{Kind: ActSetTCP, L4: s} }

// SetUDP rewrites UDP ports selected by s.Fields.
func SetUDP(s L4Set) Action { return Action{Kind: ActSetUDP, L4: s} }

// SetTunnel sets the tunnel metadata used by a following output to the VXLAN
// port.
func SetTunnel(s TunnelSet) Action { return Action{Kind: ActSetTunnel, Tunnel: s} }

// PushVLAN pushes an 802.1Q tag with the given TCI (the VLANPresent bit is
// ignored).
func PushVLAN(tci uint16) Action { return Action{Kind: ActPushVLAN, TCI: tci} }

// PopVLAN removes the outer 802.1Q tag, if any.
func PopVLAN() Action { return Action{Kind: ActPopVLAN} }

// Userspace sends a copy of the packet, as modified so far, to the agent as
// an UpcallUserspace with cookie.
func Userspace(cookie uint64) Action { return Action{Kind: ActUserspace, Cookie: cookie} }

// String formats the action in the style of ovs-dpctl.
func (a Action) String() string {
	switch a.Kind {
	case ActOutput:
		return fmt.Sprintf("output(%d)", a.Port)
	case ActSetEth:
		return fmt.Sprintf("set_eth(src=%x,dst=%x,fields=%#x)", a.Eth.Src, a.Eth.Dst, a.Eth.Fields)
	case ActSetIPv4:
		return fmt.Sprintf("set_ipv4(src=%v,dst=%v,tos=%d,ttl=%d,fields=%#x)",
			netip.AddrFrom4(a.IPv4.Src), netip.AddrFrom4(a.IPv4.Dst), a.IPv4.TOS, a.IPv4.TTL, a.IPv4.Fields)
	case ActSetTCP, ActSetUDP:
		return fmt.Sprintf("%v(src=%d,dst=%d,fields=%#x)", a.Kind, a.L4.Src, a.L4.Dst, a.L4.Fields)
	case ActSetTunnel:
		return fmt.Sprintf("set_tunnel(vni=%d,dst=%v,src=%v,tos=%d,ttl=%d)",
			a.Tunnel.VNI, a.Tunnel.Dst, a.Tunnel.Src, a.Tunnel.TOS, a.Tunnel.TTL)
	case ActPushVLAN:
		return fmt.Sprintf("push_vlan(tci=%#x)", a.TCI)
	case ActPopVLAN:
		return "pop_vlan"
	case ActUserspace:
		return fmt.Sprintf("userspace(cookie=%d)", a.Cookie)
	}
	return a.Kind.String()
}

// ValidateActions reports whether actions can be executed: known kinds, and a
// set-tunnel destination that is IPv4.
func ValidateActions(actions []Action) error {
	for i := range actions {
		a := &actions[i]
		switch a.Kind {
		case ActOutput:
			if a.Port == 0 {
				return fmt.Errorf("action %d: output to port 0: %w", i, ErrBadAction)
			}
		case ActSetEth, ActSetIPv4, ActSetTCP, ActSetUDP, ActPushVLAN, ActPopVLAN, ActUserspace:
		case ActSetTunnel:
			if !a.Tunnel.Dst.Is4() {
				return fmt.Errorf("action %d: tunnel destination %v is not IPv4: %w", i, a.Tunnel.Dst, ErrBadAction)
			}
			if a.Tunnel.Src.IsValid() && !a.Tunnel.Src.Is4() {
				return fmt.Errorf("action %d: tunnel source %v is not IPv4: %w", i, a.Tunnel.Src, ErrBadAction)
			}
			if a.Tunnel.VNI > 0xffffff {
				return fmt.Errorf("action %d: VNI %d exceeds 24 bits: %w", i, a.Tunnel.VNI, ErrBadAction)
			}
		default:
			return fmt.Errorf("action %d: kind %v: %w", i, a.Kind, ErrBadAction)
		}
	}
	return nil
}
