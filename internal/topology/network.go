package topology

import (
	"net/netip"
	"strconv"
	"strings"
)

// Collection kinds: the REST path segment of each object type.
const (
	KindBridge         = "bridges"
	KindRouter         = "routers"
	KindPort           = "ports"
	KindRoute          = "routes"
	KindChain          = "chains"
	KindRule           = "rules"
	KindPortGroup      = "port_groups"
	KindIPAddrGroup    = "ip_addr_groups"
	KindHost           = "hosts"
	KindTunnelZone     = "tunnel_zones"
	KindDHCPSubnet     = "dhcp_subnets"
	KindDHCPSubnetV6   = "dhcpv6_subnets"
	KindLoadBalancer   = "load_balancers"
	KindPool           = "pools"
	KindPoolMember     = "pool_members"
	KindVIP            = "vips"
	KindHealthMonitor  = "health_monitors"
	KindMirror         = "mirrors"
	KindQOSPolicy      = "qos_policies"
	KindQOSBWLimitRule = "qos_bw_limit_rules"
	KindQOSDSCPRule    = "qos_dscp_rules"
	KindBGPPeer        = "bgp_peers"
	KindBGPNetwork     = "bgp_networks"
	KindTrace          = "traces"
	KindL2Insertion    = "l2insertions"
)

// Bridge is an L2 network.
type Bridge struct {
	ID                ID      `json:"id"`
	TenantID          *string `json:"tenantId"`
	Name              *string `json:"name"`
	AdminStateUp      bool    `json:"adminStateUp"`
	InboundFilterID   *ID     `json:"inboundFilterId"`
	OutboundFilterID  *ID     `json:"outboundFilterId"`
	InboundMirrorIDs  []ID    `json:"inboundMirrorIds"`
	OutboundMirrorIDs []ID    `json:"outboundMirrorIds"`
	QOSPolicyID       *ID     `json:"qosPolicyId"`
	VxLanPortIDs      []ID    `json:"vxLanPortIds"`
}

func (Bridge) Kind() string       { return KindBridge }
func (b Bridge) ObjectID() string { return b.ID.String() }
func (b *Bridge) Normalize() {
	b.InboundMirrorIDs, b.OutboundMirrorIDs, b.VxLanPortIDs = ids(b.InboundMirrorIDs), ids(b.OutboundMirrorIDs), ids(b.VxLanPortIDs)
}
func (b *Bridge) Validate() error {
	var v violations
	v.checkLen("name", b.Name, 0, 255)
	return v.err()
}

// Router is an L3 device.
type Router struct {
	ID                   ID      `json:"id"`
	TenantID             *string `json:"tenantId"`
	Name                 *string `json:"name"`
	AdminStateUp         bool    `json:"adminStateUp"`
	InboundFilterID      *ID     `json:"inboundFilterId"`
	OutboundFilterID     *ID     `json:"outboundFilterId"`
	LocalRedirectChainID *ID     `json:"localRedirectChainId"`
	ForwardChainID       *ID     `json:"forwardChainId"`
	LoadBalancerID       *ID     `json:"loadBalancerId"`
	ASNumber             int     `json:"asNumber"`
	InboundMirrorIDs     []ID    `json:"inboundMirrorIds"`
	OutboundMirrorIDs    []ID    `json:"outboundMirrorIds"`
}

func (Router) Kind() string       { return KindRouter }
func (r Router) ObjectID() string { return r.ID.String() }
func (r *Router) Normalize() {
	r.InboundMirrorIDs, r.OutboundMirrorIDs = ids(r.InboundMirrorIDs), ids(r.OutboundMirrorIDs)
}
func (r *Router) Validate() error {
	var v violations
	v.checkLen("name", r.Name, 0, 255)
	if r.ASNumber < 0 {
		v.add("asNumber", "must be greater than or equal to 0")
	}
	return v.err()
}

// Port types as the API names them.
const (
	PortTypeBridge = "Bridge"
	PortTypeRouter = "Router"
	PortTypeVxlan  = "Vxlan"
)

// Port is a bridge port or a router port. A port is exterior when bound to
// a host interface, interior when linked to a peer port.
type Port struct {
	ID                    ID      `json:"id"`
	Type                  string  `json:"type"`
	DeviceID              ID      `json:"deviceId"`
	AdminStateUp          bool    `json:"adminStateUp"`
	InboundFilterID       *ID     `json:"inboundFilterId"`
	OutboundFilterID      *ID     `json:"outboundFilterId"`
	TunnelKey             int64   `json:"tunnelKey"`
	VifID                 *ID     `json:"vifId"`
	HostID                *ID     `json:"hostId"`
	InterfaceName         *string `json:"interfaceName"`
	PeerID                *ID     `json:"peerId"`
	InboundMirrorIDs      []ID    `json:"inboundMirrorIds"`
	OutboundMirrorIDs     []ID    `json:"outboundMirrorIds"`
	PostInFilterMirrorIDs []ID    `json:"postInFilterMirrorIds"`
	PreOutFilterMirrorIDs []ID    `json:"preOutFilterMirrorIds"`
	InsertionIDs          []ID    `json:"insertionIds"`
	QOSPolicyID           *ID     `json:"qosPolicyId"`
	Active                bool    `json:"active"`

	// Bridge ports.
	VLANID uint16 `json:"vlanId"`

	// VXLAN ports.
	VtepID *ID `json:"vtepId"`

	// Router ports.
	PortAddress        *string  `json:"portAddress"`
	NetworkAddress     *string  `json:"networkAddress"`
	NetworkLength      int      `json:"networkLength"`
	PortSubnet         []string `json:"portSubnet"`
	PortMAC            *string  `json:"portMac"`
	RtrPortVNI         *int     `json:"rtrPortVni"`
	OffRampVxlan       *bool    `json:"offRampVxlan"`
	ServiceContainerID *ID      `json:"serviceContainerId"`
	BGPStatus          *string  `json:"bgpStatus"`
}

func (Port) Kind() string       { return KindPort }
func (p Port) ObjectID() string { return p.ID.String() }

// IsRouterPort reports whether the port belongs to a router.
func (p *Port) IsRouterPort() bool { return p.Type == PortTypeRouter }

// Subnet4 returns a router port's IPv4 address with its subnet's length:
// the first IPv4 entry of PortSubnet, or PortAddress/NetworkLength.
func (p *Port) Subnet4() (netip.Prefix, bool) {
	for _, s := range p.PortSubnet {
		if pfx, err := netip.ParsePrefix(s); err == nil && pfx.Addr().Is4() {
			return pfx, true
		}
	}
	if p.PortAddress != nil {
		if a, ok := ParseIPv4(*p.PortAddress); ok && p.NetworkLength >= 0 && p.NetworkLength <= 32 {
			return netip.PrefixFrom(a, p.NetworkLength), true
		}
	}
	return netip.Prefix{}, false
}

// IsExterior reports whether the port is bound to a host interface.
func (p *Port) IsExterior() bool { return p.HostID != nil && p.InterfaceName != nil }

// NormalizeType maps the legacy type aliases onto Bridge and Router.
func NormalizeType(t string) (string, bool) {
	switch t {
	case "Bridge", "InteriorBridge", "ExteriorBridge":
		return PortTypeBridge, true
	case "Router", "InteriorRouter", "ExteriorRouter":
		return PortTypeRouter, true
	case "Vxlan":
		return PortTypeVxlan, true
	}
	return "", false
}

// Normalize fills derived fields: empty lists, and for router ports the
// address fields from the first IPv4 subnet.
func (p *Port) Normalize() {
	p.InboundMirrorIDs, p.OutboundMirrorIDs = ids(p.InboundMirrorIDs), ids(p.OutboundMirrorIDs)
	p.PostInFilterMirrorIDs, p.PreOutFilterMirrorIDs = ids(p.PostInFilterMirrorIDs), ids(p.PreOutFilterMirrorIDs)
	p.InsertionIDs = ids(p.InsertionIDs)
	if p.Type != PortTypeRouter {
		return
	}
	if p.PortSubnet == nil {
		p.PortSubnet = []string{}
	}
	p.PortAddress, p.NetworkAddress, p.NetworkLength = nil, nil, 0
	for _, s := range p.PortSubnet {
		pfx, err := netip.ParsePrefix(s)
		if err != nil || !pfx.Addr().Is4() {
			continue
		}
		p.PortAddress = Str(pfx.Addr().String())
		p.NetworkAddress = Str(pfx.Masked().Addr().String())
		p.NetworkLength = pfx.Bits()
		break
	}
}

// PrepareRouterPort derives portSubnet from portAddress and networkLength
// when the client gave only those, as MidoNet does.
func (p *Port) PrepareRouterPort() {
	if p.Type == PortTypeRouter && len(p.PortSubnet) == 0 && p.PortAddress != nil && IsIPv4(*p.PortAddress) {
		p.PortSubnet = []string{*p.PortAddress + "/" + strconv.Itoa(p.NetworkLength)}
	}
}

// Validate checks the fields of a port.
func (p *Port) Validate() error {
	var v violations
	if p.Type == PortTypeRouter {
		v.checkIPv4("portAddress", p.PortAddress, false)
		v.checkIPv4("networkAddress", p.NetworkAddress, false)
		v.checkRange("networkLength", int64(p.NetworkLength), 0, 32)
		if p.RtrPortVNI != nil {
			v.checkRange("rtrPortVni", int64(*p.RtrPortVNI), 0, 1<<24-1)
		}
		v.checkMAC("portMac", p.PortMAC, false)
		for i, s := range p.PortSubnet {
			if _, err := netip.ParsePrefix(s); err != nil {
				v.add("portSubnet["+strconv.Itoa(i)+"]", "is not a valid CIDR ("+s+")")
			}
		}
		if len(v) == 0 && len(p.PortSubnet) == 0 {
			v.add("portAddress", "a router port needs portAddress and networkLength, or portSubnet")
		}
	}
	if p.Type == PortTypeBridge && p.VLANID > 4095 {
		v.add("vlanId", "must be less than or equal to 4095")
	}
	return v.err()
}

// Route types.
const (
	RouteNormal    = "Normal"
	RouteBlackHole = "BlackHole"
	RouteReject    = "Reject"
	RouteLocal     = "Local"
	RouteFip64     = "Fip64"
)

// Route is an entry of a router's routing table.
type Route struct {
	ID               ID      `json:"id"`
	Type             string  `json:"type"`
	SrcNetworkAddr   *string `json:"srcNetworkAddr"`
	SrcNetworkLength int     `json:"srcNetworkLength"`
	DstNetworkAddr   *string `json:"dstNetworkAddr"`
	DstNetworkLength int     `json:"dstNetworkLength"`
	NextHopPort      *ID     `json:"nextHopPort"`
	NextHopGateway   *string `json:"nextHopGateway"`
	Weight           int     `json:"weight"`
	Attributes       *string `json:"attributes"`
	RouterID         ID      `json:"routerId"`
	Learned          bool    `json:"learned"`
}

func (Route) Kind() string       { return KindRoute }
func (r Route) ObjectID() string { return r.ID.String() }
func (r *Route) Normalize()      {}

// Validate checks the fields of a route.
func (r *Route) Validate() error {
	var v violations
	switch r.Type {
	case RouteNormal, RouteBlackHole, RouteReject, RouteLocal, RouteFip64:
	case "":
		v.add("type", "may not be null")
	default:
		v.add("type", "This type of route is invalid.")
	}
	v.checkIPv4("srcNetworkAddr", r.SrcNetworkAddr, true)
	v.checkIPv4("dstNetworkAddr", r.DstNetworkAddr, true)
	v.checkRange("srcNetworkLength", int64(r.SrcNetworkLength), 0, 32)
	v.checkRange("dstNetworkLength", int64(r.DstNetworkLength), 0, 32)
	v.checkIPv4("nextHopGateway", r.NextHopGateway, false)
	if r.Weight < 0 {
		v.add("weight", "must be greater than or equal to 0")
	}
	return v.err()
}

// SrcPrefix and DstPrefix return the route's prefixes (zero if invalid).
func (r *Route) SrcPrefix() netip.Prefix {
	p, _ := Prefix4(deref(r.SrcNetworkAddr), r.SrcNetworkLength)
	return p
}
func (r *Route) DstPrefix() netip.Prefix {
	p, _ := Prefix4(deref(r.DstNetworkAddr), r.DstNetworkLength)
	return p
}

// LocalRoutes returns the Local /32 routes a router port gets for each IPv4
// address of its subnets.
func LocalRoutes(p *Port, newID func() ID) []Route {
	var out []Route
	for _, s := range p.PortSubnet {
		pfx, err := netip.ParsePrefix(s)
		if err != nil || !pfx.Addr().Is4() {
			continue
		}
		out = append(out, Route{
			ID:               newID(),
			Type:             RouteLocal,
			SrcNetworkAddr:   Str("0.0.0.0"),
			DstNetworkAddr:   Str(pfx.Addr().String()),
			DstNetworkLength: 32,
			NextHopPort:      IDPtr(p.ID),
			RouterID:         p.DeviceID,
		})
	}
	return out
}

// MidokuraOUI is the prefix of MACs MidoNet generates for router ports.
var MidokuraOUI = [3]byte{0xac, 0xca, 0xba}

// RandomPortMAC returns a MAC with the Midokura OUI and random low bytes.
func RandomPortMAC(random [3]byte) string {
	return FormatMAC([6]byte{MidokuraOUI[0], MidokuraOUI[1], MidokuraOUI[2], random[0], random[1], random[2]})
}

func ids(l []ID) []ID {
	if l == nil {
		return []ID{}
	}
	return l
}

// hasID reports whether l contains id.
func hasID(l []ID, id ID) bool {
	for _, x := range l {
		if x == id {
			return true
		}
	}
	return false
}

// removeID returns l without id.
func removeID(l []ID, id ID) []ID {
	out := l[:0:0]
	for _, x := range l {
		if x != id {
			out = append(out, x)
		}
	}
	return out
}

func lower(s string) string { return strings.ToLower(s) }

// KindTunnelKey holds the claims on port tunnel keys.
const KindTunnelKey = "tunnel_keys"

// TunnelKeyClaim reserves a tunnel key for a port. Keys are picked at random
// in the 24-bit VXLAN VNI space and claimed by creating this object, so that
// concurrent port creations do not contend on one counter.
type TunnelKeyClaim struct {
	Key    int64 `json:"key"`
	PortID ID    `json:"portId"`
}

func (TunnelKeyClaim) Kind() string       { return KindTunnelKey }
func (c TunnelKeyClaim) ObjectID() string { return strconv.FormatInt(c.Key, 10) }

// MaxTunnelKey bounds port tunnel keys: they travel as the VXLAN VNI, and
// 0xFFFFFF is reserved for flow-state messages.
const MaxTunnelKey = 1<<24 - 2

// AllocateTunnelKey gives a port a free tunnel key, drawing candidates from
// random (which returns values in [0, n)).
func AllocateTunnelKey(s Store, p *Port, random func(n int64) int64) error {
	for range 32 {
		key := 1 + random(MaxTunnelKey)
		taken, err := s.Exists(KindTunnelKey, strconv.FormatInt(key, 10))
		if err != nil {
			return err
		}
		if !taken {
			p.TunnelKey = key
			return s.Create(&TunnelKeyClaim{Key: key, PortID: p.ID})
		}
	}
	return Errorf(ErrBusy, "no free tunnel key found for port %s; retry", p.ID)
}
