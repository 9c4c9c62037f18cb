package topology

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Opt121Route is a classless static route handed out by DHCP.
type Opt121Route struct {
	DestinationPrefix *string `json:"destinationPrefix"`
	DestinationLength int     `json:"destinationLength"`
	GatewayAddr       *string `json:"gatewayAddr"`
}

// DHCPOption is an extra option for one DHCP host.
type DHCPOption struct {
	OptName  string `json:"optName"`
	OptValue string `json:"optValue"`
}

// DHCPHost is a static lease of a DHCP subnet.
type DHCPHost struct {
	MacAddr       *string      `json:"macAddr"`
	IPAddr        *string      `json:"ipAddr"`
	Name          *string      `json:"name"`
	ExtraDHCPOpts []DHCPOption `json:"extraDhcpOpts"`
}

// Normalize replaces a nil option list with an empty one.
func (h *DHCPHost) Normalize() {
	if h.ExtraDHCPOpts == nil {
		h.ExtraDHCPOpts = []DHCPOption{}
	}
}

// Validate checks a DHCP host.
func (h *DHCPHost) Validate() error {
	var v violations
	v.checkMAC("macAddr", h.MacAddr, true)
	v.checkIPv4("ipAddr", h.IPAddr, true)
	return v.err()
}

// DHCPSubnet is a subnet a bridge serves DHCP on. It has no id of its own in
// the API; it is stored under its bridge id and prefix.
type DHCPSubnet struct {
	SubnetPrefix   *string       `json:"subnetPrefix"`
	SubnetLength   int           `json:"subnetLength"`
	DefaultGateway *string       `json:"defaultGateway"`
	ServerAddr     *string       `json:"serverAddr"`
	DNSServerAddrs []string      `json:"dnsServerAddrs"`
	InterfaceMTU   *int          `json:"interfaceMTU"`
	Opt121Routes   []Opt121Route `json:"opt121Routes"`
	Enabled        bool          `json:"enabled"`
	BridgeID       ID            `json:"_bridgeId"`
	Hosts          []DHCPHost    `json:"_hosts"`
}

func (DHCPSubnet) Kind() string { return KindDHCPSubnet }

// ObjectID is the bridge id and the subnet, e.g. <uuid>_10.0.0.0_24.
func (s DHCPSubnet) ObjectID() string { return DHCPSubnetID(s.BridgeID, s.SubnetKey()) }

// SubnetKey is the subnet as it appears in URLs: 10.0.0.0_24.
func (s *DHCPSubnet) SubnetKey() string {
	return deref(s.SubnetPrefix) + "_" + strconv.Itoa(s.SubnetLength)
}

// DHCPSubnetID is the stored id of a bridge's subnet.
func DHCPSubnetID(bridge ID, subnetKey string) string { return bridge.String() + "_" + subnetKey }

func (s *DHCPSubnet) Normalize() {
	if len(s.DNSServerAddrs) == 0 {
		s.DNSServerAddrs = nil
	}
	if s.Opt121Routes == nil {
		s.Opt121Routes = []Opt121Route{}
	}
	if s.Hosts == nil {
		s.Hosts = []DHCPHost{}
	}
}

func (s *DHCPSubnet) Validate() error {
	var v violations
	v.checkIPv4("subnetPrefix", s.SubnetPrefix, true)
	v.checkRange("subnetLength", int64(s.SubnetLength), 0, 32)
	v.checkIPv4("defaultGateway", s.DefaultGateway, false)
	v.checkIPv4("serverAddr", s.ServerAddr, false)
	for i, a := range s.DNSServerAddrs {
		v.checkIPv4("dnsServerAddrs["+strconv.Itoa(i)+"]", &a, true)
	}
	if s.InterfaceMTU != nil {
		v.checkRange("interfaceMTU", int64(*s.InterfaceMTU), 0, 65536)
	}
	for i, r := range s.Opt121Routes {
		p := "opt121Routes[" + strconv.Itoa(i) + "]."
		v.checkIPv4(p+"destinationPrefix", r.DestinationPrefix, true)
		v.checkRange(p+"destinationLength", int64(r.DestinationLength), 0, 32)
		v.checkIPv4(p+"gatewayAddr", r.GatewayAddr, true)
	}
	return v.err()
}

// Host returns the index of the host with a MAC, compared by value.
func (s *DHCPSubnet) Host(mac string) int {
	m, ok := ParseMAC(mac)
	for i, h := range s.Hosts {
		if hm, ok2 := ParseMAC(deref(h.MacAddr)); ok && ok2 && hm == m {
			return i
		}
		if !ok && strings.EqualFold(deref(h.MacAddr), mac) {
			return i
		}
	}
	return -1
}

// DHCPHostV6 is a static DHCPv6 lease: the client's DUID (or MAC) and
// its fixed address.
type DHCPHostV6 struct {
	ClientID     *string `json:"clientId"`
	FixedAddress *string `json:"fixedAddress"`
	Name         *string `json:"name"`
}

// Validate checks a DHCPv6 host; the client id's syntax is checked where it
// is parsed (package dhcp), by the API.
func (h *DHCPHostV6) Validate() error {
	var v violations
	if h.ClientID == nil || strings.TrimSpace(*h.ClientID) == "" {
		v.add("clientId", "may not be null")
	}
	checkIPv6(&v, "fixedAddress", h.FixedAddress, true)
	return v.err()
}

// DHCPSubnetV6 is an IPv6 subnet a bridge serves DHCPv6 on, stored under
// its bridge id and prefix like DHCPSubnet. DNSServerAddrs extends
// MidoNet's model: the DNS servers (option 23) its replies carry.
type DHCPSubnetV6 struct {
	Prefix         *string      `json:"prefix"`
	PrefixLength   int          `json:"prefixLength"`
	DNSServerAddrs []string     `json:"dnsServerAddrs"`
	BridgeID       ID           `json:"_bridgeId"`
	Hosts          []DHCPHostV6 `json:"_hosts"`
}

func (DHCPSubnetV6) Kind() string { return KindDHCPSubnetV6 }

// ObjectID is the bridge id and the subnet, e.g. <uuid>_2001:db8::_64.
func (s DHCPSubnetV6) ObjectID() string { return DHCPSubnetID(s.BridgeID, s.SubnetKey()) }

// SubnetKey is the subnet as it appears in URLs: 2001:db8::_64.
func (s *DHCPSubnetV6) SubnetKey() string {
	return deref(s.Prefix) + "_" + strconv.Itoa(s.PrefixLength)
}

func (s *DHCPSubnetV6) Normalize() {
	if len(s.DNSServerAddrs) == 0 {
		s.DNSServerAddrs = nil
	}
	if s.Hosts == nil {
		s.Hosts = []DHCPHostV6{}
	}
	if s.Prefix != nil {
		// One spelling per subnet, so that its key is unique.
		if a, err := netip.ParseAddr(*s.Prefix); err == nil && a.Is6() {
			if p, err := a.Prefix(min(max(s.PrefixLength, 0), 128)); err == nil {
				s.Prefix = Str(p.Addr().String())
			}
		}
	}
}

func (s *DHCPSubnetV6) Validate() error {
	var v violations
	checkIPv6(&v, "prefix", s.Prefix, true)
	v.checkRange("prefixLength", int64(s.PrefixLength), 0, 128)
	for i, a := range s.DNSServerAddrs {
		checkIPv6(&v, "dnsServerAddrs["+strconv.Itoa(i)+"]", &a, true)
	}
	return v.err()
}

// Host returns the index of the host with a client id, compared without
// regard to case or to '-' written for ':'.
func (s *DHCPSubnetV6) Host(clientID string) int {
	norm := func(x string) string { return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(x), "-", ":")) }
	for i, h := range s.Hosts {
		if norm(deref(h.ClientID)) == norm(clientID) {
			return i
		}
	}
	return -1
}

func checkIPv6(v *violations, prop string, s *string, required bool) {
	if s == nil {
		if required {
			v.add(prop, "may not be null")
		}
		return
	}
	if a, err := netip.ParseAddr(*s); err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
		v.add(prop, "is an invalid IPv6 format")
	}
}

// LoadBalancer is an L4 load balancer attached to a router.
type LoadBalancer struct {
	ID           ID   `json:"id"`
	RouterID     *ID  `json:"routerId"`
	AdminStateUp bool `json:"adminStateUp"`
}

func (LoadBalancer) Kind() string       { return KindLoadBalancer }
func (l LoadBalancer) ObjectID() string { return l.ID.String() }
func (l *LoadBalancer) Normalize()      {}
func (l *LoadBalancer) Validate() error { return nil }

// Pool is a set of back ends of a load balancer.
type Pool struct {
	ID              ID      `json:"id"`
	LoadBalancerID  *ID     `json:"loadBalancerId"`
	HealthMonitorID *ID     `json:"healthMonitorId"`
	LBMethod        *string `json:"lbMethod"`
	Protocol        string  `json:"protocol"`
	AdminStateUp    bool    `json:"adminStateUp"`
	Status          string  `json:"status"`
}

func (Pool) Kind() string       { return KindPool }
func (p Pool) ObjectID() string { return p.ID.String() }
func (p *Pool) Normalize()      {}
func (p *Pool) Validate() error {
	var v violations
	if p.LBMethod == nil {
		v.add("lbMethod", "may not be null")
	} else if *p.LBMethod != "ROUND_ROBIN" {
		v.add("lbMethod", "must be ROUND_ROBIN")
	}
	if p.LoadBalancerID == nil {
		v.add("loadBalancerId", "may not be null")
	}
	return v.err()
}

// PoolMember is one back end of a pool.
type PoolMember struct {
	ID           ID      `json:"id"`
	PoolID       *ID     `json:"poolId"`
	Address      *string `json:"address"`
	ProtocolPort int     `json:"protocolPort"`
	Weight       int     `json:"weight"`
	AdminStateUp bool    `json:"adminStateUp"`
	Status       string  `json:"status"`
}

func (PoolMember) Kind() string       { return KindPoolMember }
func (m PoolMember) ObjectID() string { return m.ID.String() }
func (m *PoolMember) Normalize()      {}
func (m *PoolMember) Validate() error {
	var v violations
	if m.PoolID == nil {
		v.add("poolId", "may not be null")
	}
	v.checkIPv4("address", m.Address, true)
	v.checkRange("protocolPort", int64(m.ProtocolPort), 0, 65535)
	if m.Weight < 1 {
		v.add("weight", "must be greater than or equal to 1")
	}
	return v.err()
}

// VIP is the address a pool is reached at.
type VIP struct {
	ID                 ID      `json:"id"`
	PoolID             *ID     `json:"poolId"`
	LoadBalancerID     *ID     `json:"loadBalancerId"`
	Address            *string `json:"address"`
	ProtocolPort       int     `json:"protocolPort"`
	SessionPersistence *string `json:"sessionPersistence"`
	AdminStateUp       bool    `json:"adminStateUp"`
}

func (VIP) Kind() string       { return KindVIP }
func (x VIP) ObjectID() string { return x.ID.String() }
func (x *VIP) Normalize()      {}
func (x *VIP) Validate() error {
	var v violations
	if x.PoolID == nil {
		v.add("poolId", "may not be null")
	}
	v.checkIPv4("address", x.Address, true)
	v.checkRange("protocolPort", int64(x.ProtocolPort), 0, 65535)
	if x.SessionPersistence != nil && *x.SessionPersistence != "SOURCE_IP" {
		v.add("sessionPersistence", "must be SOURCE_IP or null")
	}
	return v.err()
}

// Health monitor types: MidoNet's TCP connect check, and an HTTP GET
// checked against expected status codes (Neutron LBaaS's HTTP monitor).
const (
	HealthMonitorTCP  = "TCP"
	HealthMonitorHTTP = "HTTP"
)

// HealthMonitor checks the members of the pools that use it: every Delay
// seconds, a check that must succeed within Timeout seconds; a member is
// INACTIVE after MaxRetries failures in a row. URLPath and ExpectedCodes
// are for HTTP monitors, and extend MidoNet's DTO (whose clients ignore
// them).
type HealthMonitor struct {
	ID           ID      `json:"id"`
	Type         *string `json:"type"`
	Delay        int     `json:"delay"`
	Timeout      int     `json:"timeout"`
	MaxRetries   int     `json:"maxRetries"`
	AdminStateUp bool    `json:"adminStateUp"`
	// URLPath is the path an HTTP monitor gets (default "/").
	URLPath *string `json:"urlPath"`
	// ExpectedCodes are the HTTP statuses that pass, in Neutron's syntax:
	// "200", "200,202" or "200-204" (default "200").
	ExpectedCodes *string `json:"expectedCodes"`
}

func (HealthMonitor) Kind() string       { return KindHealthMonitor }
func (h HealthMonitor) ObjectID() string { return h.ID.String() }
func (h *HealthMonitor) Normalize()      {}
func (h *HealthMonitor) Validate() error {
	var v violations
	if h.Type == nil {
		v.add("type", "may not be null")
	} else if *h.Type != HealthMonitorTCP && *h.Type != HealthMonitorHTTP {
		v.add("type", "must be TCP or HTTP")
	}
	v.checkRange("delay", int64(h.Delay), 0, 3600)
	v.checkRange("timeout", int64(h.Timeout), 0, 3600)
	v.checkRange("maxRetries", int64(h.MaxRetries), 0, 100)
	if h.URLPath != nil && !strings.HasPrefix(*h.URLPath, "/") {
		v.add("urlPath", "must start with /")
	}
	if h.ExpectedCodes != nil {
		if _, ok := ParseExpectedCodes(*h.ExpectedCodes); !ok {
			v.add("expectedCodes", "must be a status (200), a list (200,202) or a range (200-204) of HTTP statuses")
		}
	}
	return v.err()
}

// ParseExpectedCodes parses an HTTP monitor's expected codes ("200",
// "200,202", "200-204", or a mix) into the statuses that pass.
func ParseExpectedCodes(s string) (map[int]bool, bool) {
	out := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(strings.TrimSpace(hi))
		}
		if err1 != nil || err2 != nil || a < 100 || b > 599 || a > b {
			return nil, false
		}
		for c := a; c <= b; c++ {
			out[c] = true
		}
	}
	return out, true
}

// Mirror copies traffic matching any of its conditions to a port.
type Mirror struct {
	ID         ID                `json:"id"`
	ToPortID   *ID               `json:"toPortId"`
	Conditions []MirrorCondition `json:"conditions"`
}

// MirrorCondition is a condition as mirrors and traces embed it: with a
// null uri.
type MirrorCondition struct {
	Condition
	URI *string `json:"uri"`
}

func (Mirror) Kind() string       { return KindMirror }
func (m Mirror) ObjectID() string { return m.ID.String() }
func (m *Mirror) Normalize() {
	if m.Conditions == nil {
		m.Conditions = []MirrorCondition{}
	}
	for i := range m.Conditions {
		m.Conditions[i].NormalizeCondition()
		m.Conditions[i].URI = nil
	}
}
func (m *Mirror) Validate() error {
	var v violations
	if m.ToPortID == nil {
		v.add("toPortId", "may not be null")
	}
	for i := range m.Conditions {
		m.Conditions[i].validateCondition(&v, "conditions["+strconv.Itoa(i)+"].")
	}
	return v.err()
}

// QOSRuleSpec is an inline rule in a QoS policy body.
type QOSRuleSpec struct {
	ID           ID     `json:"id"`
	Type         string `json:"type"`
	MaxKbps      int    `json:"max_kbps"`
	MaxBurstKbps int    `json:"max_burst_kbps"`
	DSCPMark     int    `json:"dscp_mark"`
}

// QOSPolicy groups bandwidth-limit and DSCP rules.
type QOSPolicy struct {
	ID          ID            `json:"id"`
	Name        *string       `json:"name"`
	Description *string       `json:"description"`
	Shared      *bool         `json:"shared"`
	TenantID    *string       `json:"tenant_id"`
	Rules       []QOSRuleSpec `json:"rules"`
}

func (QOSPolicy) Kind() string       { return KindQOSPolicy }
func (q QOSPolicy) ObjectID() string { return q.ID.String() }
func (q *QOSPolicy) Normalize()      {}
func (q *QOSPolicy) Validate() error {
	var v violations
	seen := map[string]bool{}
	for i, r := range q.Rules {
		if r.Type != "bandwidth_limit" && r.Type != "dscp_marking" {
			v.add("rules["+strconv.Itoa(i)+"].type", "must be bandwidth_limit or dscp_marking")
		} else if seen[r.Type] {
			// The agents apply one rule of each type, as Neutron allows.
			v.add("rules["+strconv.Itoa(i)+"].type", "a policy has at most one "+r.Type+" rule")
		}
		seen[r.Type] = true
	}
	return v.err()
}

// QOSBWLimitRule limits the bandwidth of a port or bridge. The burst is
// maxBurstKb in the API contract and maxBurstKbps in MidoNet's server and
// Python client: both names are accepted and shown.
type QOSBWLimitRule struct {
	ID         ID   `json:"id"`
	MaxKbps    int  `json:"maxKbps"`
	MaxBurstKb *int `json:"maxBurstKb"`
	PolicyID   *ID  `json:"policyId"`
	// MaxBurstKbps mirrors MaxBurstKb under MidoNet's own name.
	MaxBurstKbps *int `json:"maxBurstKbps"`
}

func (QOSBWLimitRule) Kind() string       { return KindQOSBWLimitRule }
func (r QOSBWLimitRule) ObjectID() string { return r.ID.String() }
func (r *QOSBWLimitRule) Normalize() {
	if r.MaxBurstKb == nil {
		r.MaxBurstKb = r.MaxBurstKbps
	}
	r.MaxBurstKbps = r.MaxBurstKb
}
func (r *QOSBWLimitRule) Validate() error {
	var v violations
	if r.MaxKbps < 0 {
		v.add("maxKbps", "must be greater than or equal to 0")
	}
	return v.err()
}

// QOSDSCPRule marks packets with a DSCP value.
type QOSDSCPRule struct {
	ID       ID  `json:"id"`
	DSCPMark int `json:"dscpMark"`
	PolicyID *ID `json:"policyId"`
}

func (QOSDSCPRule) Kind() string       { return KindQOSDSCPRule }
func (r QOSDSCPRule) ObjectID() string { return r.ID.String() }
func (r *QOSDSCPRule) Normalize()      {}
func (r *QOSDSCPRule) Validate() error {
	var v violations
	v.checkRange("dscpMark", int64(r.DSCPMark), 0, 63)
	return v.err()
}

// BGPPeer is a BGP neighbour of a router.
type BGPPeer struct {
	ID           ID      `json:"id"`
	ASNumber     int     `json:"asNumber"`
	Address      *string `json:"address"`
	KeepAlive    *int    `json:"keepAlive"`
	HoldTime     *int    `json:"holdTime"`
	ConnectRetry *int    `json:"connectRetry"`
	Password     *string `json:"password"`
	RouterID     ID      `json:"_routerId"`
	// Status is the session's state as its agent reports it: read-only,
	// filled by the API from the state store (nil when no agent speaks
	// to the peer), never stored.
	Status *BGPSessionStatus `json:"status"`
}

func (BGPPeer) Kind() string       { return KindBGPPeer }
func (p BGPPeer) ObjectID() string { return p.ID.String() }
func (p *BGPPeer) Normalize()      {}
func (p *BGPPeer) Validate() error {
	var v violations
	if p.ASNumber < 1 {
		v.add("asNumber", "must be greater than or equal to 1")
	}
	v.checkIPv4("address", p.Address, true)
	for _, f := range []struct {
		prop     string
		val      *int
		min, max int64
	}{{"keepAlive", p.KeepAlive, 5, 3600}, {"holdTime", p.HoldTime, 5, 7200}, {"connectRetry", p.ConnectRetry, 5, 3600}} {
		if f.val != nil {
			v.checkRange(f.prop, int64(*f.val), f.min, f.max)
		}
	}
	return v.err()
}

// BGPPeerOnPort reports whether a BGP peer is reached through router port
// p, and returns its address: p belongs to the peer's router and the peer's
// address lies on p's IPv4 subnet without being p's own (MidoNet's
// BgpPortMapper). A peer on the subnets of two ports is reached through
// each.
func BGPPeerOnPort(peer *BGPPeer, p *Port) (netip.Addr, bool) {
	if peer.RouterID != p.DeviceID || !p.IsRouterPort() || peer.Address == nil {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(*peer.Address)
	subnet, ok := p.Subnet4()
	if err != nil || !ok || !a.Is4() || !subnet.Contains(a) || a == subnet.Addr() {
		return netip.Addr{}, false
	}
	return a, true
}

// BGPOff says why a router port that reaches BGP peers speaks no BGP, or
// "" when it does: the port must be bound to a host interface (exterior),
// and the port and its router up, the router with an AS number.
func BGPOff(r *Router, p *Port) string {
	switch {
	case !p.IsExterior() || p.PeerID != nil:
		return "the port is not bound to a host interface"
	case r.ASNumber <= 0:
		return "the router has no AS number (asNumber 0)"
	case !p.AdminStateUp:
		return "the port is administratively down"
	case !r.AdminStateUp:
		return "the router is administratively down"
	}
	return ""
}

// BGPSessionStatus is the state of a BGP peer's session as the agent that
// speaks to it reports it (the peer's status state key).
type BGPSessionStatus struct {
	// State is the session's state (RFC 4271): Idle, Connect, Active,
	// OpenSent, OpenConfirm or Established; or "Off" when no speaker runs
	// for the peer's port, with Reason saying why.
	State string `json:"state"`
	// Since is when the session entered State.
	Since time.Time `json:"since,omitzero"`
	// Reason says why the session is down, when it is known.
	Reason string `json:"reason,omitempty"`
	// PortID is the uplink port the session runs on, HostID the host whose
	// agent runs it.
	PortID ID `json:"portId"`
	HostID ID `json:"hostId"`
	// Routes is how many prefixes the router learned from the peer.
	Routes int `json:"routes"`
}

// BGPNetwork is a prefix a router announces.
type BGPNetwork struct {
	ID            ID      `json:"id"`
	SubnetAddress *string `json:"subnetAddress"`
	SubnetLength  int     `json:"subnetLength"`
	RouterID      ID      `json:"_routerId"`
}

func (BGPNetwork) Kind() string       { return KindBGPNetwork }
func (n BGPNetwork) ObjectID() string { return n.ID.String() }
func (n *BGPNetwork) Normalize()      {}
func (n *BGPNetwork) Validate() error {
	var v violations
	v.checkIPv4("subnetAddress", n.SubnetAddress, true)
	v.checkRange("subnetLength", int64(n.SubnetLength), 0, 32)
	return v.err()
}

// Trace device types.
const (
	TraceBridge = "BRIDGE"
	TracePort   = "PORT"
	TraceRouter = "ROUTER"
)

// TraceRequest asks agents to trace the packets matching a condition.
type TraceRequest struct {
	ID                  ID               `json:"id"`
	Name                *string          `json:"name"`
	DeviceType          *string          `json:"deviceType"`
	DeviceID            *ID              `json:"deviceId"`
	Condition           *MirrorCondition `json:"condition"`
	Limit               int64            `json:"limit"`
	Enabled             bool             `json:"enabled"`
	CreationTimestampMs int64            `json:"creationTimestampMs"`
}

func (TraceRequest) Kind() string       { return KindTrace }
func (t TraceRequest) ObjectID() string { return t.ID.String() }
func (t *TraceRequest) Normalize() {
	if t.Condition != nil {
		t.Condition.NormalizeCondition()
		t.Condition.URI = nil
	}
}
func (t *TraceRequest) Validate() error {
	var v violations
	v.checkLen("name", t.Name, 1, 255)
	if t.DeviceType == nil {
		v.add("deviceType", "may not be null")
	} else if d := *t.DeviceType; d != TraceBridge && d != TracePort && d != TraceRouter {
		v.add("deviceType", "must be BRIDGE, PORT or ROUTER")
	}
	if t.DeviceID == nil {
		v.add("deviceId", "may not be null")
	}
	if t.Condition == nil {
		v.add("condition", "may not be null")
	} else {
		t.Condition.validateCondition(&v, "condition.")
	}
	return v.err()
}

// TracedPacket is a packet an agent traced for one or more enabled trace
// requests: the first packet of a flow (or any packet the agent simulates)
// that matched a request's condition at its device, with what the
// simulation did to it device by device. Agents publish the last few of
// each request in the state store; GET /traces/{id}/packets lists them.
type TracedPacket struct {
	// Time is when the agent simulated the packet.
	Time time.Time `json:"time"`
	// HostID is the host whose agent simulated it; PortID the port it
	// entered the virtual network by.
	HostID ID `json:"hostId"`
	PortID ID `json:"portId"`
	// TraceRequestIDs are the requests it matched that were under their
	// limit on that host.
	TraceRequestIDs []ID `json:"traceRequestIds"`
	// Packet describes its headers as they entered.
	Packet string `json:"packet"`
	// Result is what the agent did: forward, drop, temporary-drop,
	// userspace-only, consumed; Reason says why a packet was dropped.
	Result string `json:"result"`
	Reason string `json:"reason"`
	// Trace is the simulation step by step, as `midonet trace` shows it.
	Trace []TraceStep `json:"trace"`
}

// TraceStep is one step of a traced simulation.
type TraceStep struct {
	// DeviceType is "port", "bridge", "router", "chain", "rule",
	// "mirror" or "trace-request".
	DeviceType string `json:"deviceType"`
	Device     ID     `json:"device"`
	Name       string `json:"name,omitempty"`
	Event      string `json:"event"`
	Detail     string `json:"detail,omitempty"`
}

// L2Insertion puts a service (a VM behind SrvPortID) in the path of the
// traffic to and from the VM behind PortID whose MAC is MAC: frames are
// redirected out of the service port and continue when the service sends
// them back (reference §1.13, §2.12). Several insertions on one port chain
// services by Position. A service port that is down drops the traffic,
// unless FailOpen, when the traffic skips it. A non-zero VLAN tags frames
// towards the service with that VLAN id (and a priority marking their
// direction).
type L2Insertion struct {
	ID        ID      `json:"id"`
	PortID    *ID     `json:"portId"`
	SrvPortID *ID     `json:"srvPortId"`
	VLAN      int     `json:"vlan"`
	Position  int     `json:"position"`
	FailOpen  bool    `json:"failOpen"`
	MAC       *string `json:"mac"`
}

func (L2Insertion) Kind() string       { return KindL2Insertion }
func (x L2Insertion) ObjectID() string { return x.ID.String() }
func (x *L2Insertion) Normalize()      {}
func (x *L2Insertion) Validate() error {
	var v violations
	if x.PortID == nil {
		v.add("portId", "may not be null")
	}
	if x.SrvPortID == nil {
		v.add("srvPortId", "may not be null")
	}
	if x.PortID != nil && x.SrvPortID != nil && *x.PortID == *x.SrvPortID {
		v.add("srvPortId", "must differ from portId")
	}
	v.checkMAC("mac", x.MAC, true)
	v.checkRange("vlan", int64(x.VLAN), 0, 4095)
	return v.err()
}
