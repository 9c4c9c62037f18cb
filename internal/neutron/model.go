package neutron

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/midonet/midonet/internal/topology"
)

// ID is an object id.
type ID = topology.ID

// Collection kinds under which the Neutron objects are stored. They share
// the topology's key space, so one store transaction covers a Neutron
// object and its translation; agents ignore kinds they do not know.
const (
	KindNetwork           = "neutron_networks"
	KindSubnet            = "neutron_subnets"
	KindPort              = "neutron_ports"
	KindRouter            = "neutron_routers"
	KindFloatingIP        = "neutron_floating_ips"
	KindSecurityGroup     = "neutron_security_groups"
	KindSecurityGroupRule = "neutron_security_group_rules"
)

// Device owners of Neutron ports that the translation tells apart.
const (
	OwnerDHCP            = "network:dhcp"
	OwnerRouterInterface = "network:router_interface"
	OwnerRouterGateway   = "network:router_gateway"
	OwnerFloatingIP      = "network:floatingip"
	OwnerComputePrefix   = "compute:"
)

// Network types of the provider extension.
const (
	NetworkTypeMidonet = "midonet"
	NetworkTypeLocal   = "local"
	NetworkTypeVXLAN   = "vxlan"
	NetworkTypeUplink  = "uplink"
)

// Each Neutron type keeps the fields the translation reads as typed fields
// and every other field of the posted body in rest, so that a GET returns
// what Neutron posted (extension attributes included) while the
// translation works on types.

// Network is a Neutron network.
type Network struct {
	ID              ID      `json:"id"`
	TenantID        string  `json:"tenant_id"`
	ProjectID       string  `json:"project_id"`
	Name            string  `json:"name"`
	AdminStateUp    *bool   `json:"admin_state_up"`
	Shared          bool    `json:"shared"`
	External        bool    `json:"router:external"`
	NetworkType     *string `json:"provider:network_type"`
	PhysicalNetwork *string `json:"provider:physical_network"`
	SegmentationID  *int    `json:"provider:segmentation_id"`
	QoSPolicyID     *string `json:"qos_policy_id"`
	// MTU is the network's MTU, which DHCP tells the VMs (option 26).
	MTU *int `json:"mtu"`

	rest map[string]json.RawMessage
}

// Subnet is a Neutron subnet.
type Subnet struct {
	ID              ID               `json:"id"`
	TenantID        string           `json:"tenant_id"`
	ProjectID       string           `json:"project_id"`
	NetworkID       ID               `json:"network_id"`
	Name            string           `json:"name"`
	IPVersion       int              `json:"ip_version"`
	CIDR            string           `json:"cidr"`
	GatewayIP       *string          `json:"gateway_ip"`
	EnableDHCP      *bool            `json:"enable_dhcp"`
	DNSNameservers  []string         `json:"dns_nameservers"`
	HostRoutes      []HostRoute      `json:"host_routes"`
	AllocationPools []AllocationPool `json:"allocation_pools"`
	// IPv6AddressMode and IPv6RAMode say how an IPv6 subnet's VMs get
	// their addresses: only DHCPv6 (stateful, or unset) is served.
	IPv6AddressMode *string `json:"ipv6_address_mode"`
	IPv6RAMode      *string `json:"ipv6_ra_mode"`

	rest map[string]json.RawMessage
}

// HostRoute is a route a subnet hands out by DHCP (option 121), also the
// shape of a router's extra route.
type HostRoute struct {
	Destination string `json:"destination"`
	Nexthop     string `json:"nexthop"`
}

// AllocationPool is a range of a subnet's addresses Neutron allocates from.
type AllocationPool struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// FixedIP is one address of a port.
type FixedIP struct {
	SubnetID  ID     `json:"subnet_id"`
	IPAddress string `json:"ip_address"`
}

// AddressPair is an allowed address pair: traffic from this IP (or
// prefix) and MAC passes the port's anti-spoofing rules.
type AddressPair struct {
	IPAddress  string `json:"ip_address"`
	MACAddress string `json:"mac_address"`
}

// ExtraDHCPOpt is a DHCP option for one port.
type ExtraDHCPOpt struct {
	OptName   string `json:"opt_name"`
	OptValue  string `json:"opt_value"`
	IPVersion *int   `json:"ip_version"`
}

// BindingProfile is the binding:profile of a port: the host interface
// the port is plugged into.
type BindingProfile struct {
	InterfaceName string `json:"interface_name"`

	rest map[string]json.RawMessage
}

// Port is a Neutron port.
type Port struct {
	ID                  ID              `json:"id"`
	TenantID            string          `json:"tenant_id"`
	ProjectID           string          `json:"project_id"`
	NetworkID           ID              `json:"network_id"`
	Name                string          `json:"name"`
	AdminStateUp        *bool           `json:"admin_state_up"`
	MACAddress          string          `json:"mac_address"`
	FixedIPs            []FixedIP       `json:"fixed_ips"`
	AllowedAddressPairs []AddressPair   `json:"allowed_address_pairs"`
	PortSecurityEnabled *bool           `json:"port_security_enabled"`
	SecurityGroups      []ID            `json:"security_groups"`
	ExtraDHCPOpts       []ExtraDHCPOpt  `json:"extra_dhcp_opts"`
	HostID              string          `json:"binding:host_id"`
	Profile             *BindingProfile `json:"binding:profile"`
	DeviceOwner         string          `json:"device_owner"`
	DeviceID            string          `json:"device_id"`
	QoSPolicyID         *string         `json:"qos_policy_id"`

	rest map[string]json.RawMessage
}

// GatewayInfo is a router's external gateway.
type GatewayInfo struct {
	NetworkID        ID        `json:"network_id"`
	EnableSNAT       *bool     `json:"enable_snat"`
	ExternalFixedIPs []FixedIP `json:"external_fixed_ips"`
}

// Router is a Neutron router.
type Router struct {
	ID           ID           `json:"id"`
	TenantID     string       `json:"tenant_id"`
	ProjectID    string       `json:"project_id"`
	Name         string       `json:"name"`
	AdminStateUp *bool        `json:"admin_state_up"`
	Gateway      *GatewayInfo `json:"external_gateway_info"`
	GwPortID     *ID          `json:"gw_port_id"`
	Routes       []HostRoute  `json:"routes"`

	rest map[string]json.RawMessage
}

// RouterInterface is the body of add_router_interface and
// remove_router_interface: id is the router's.
type RouterInterface struct {
	ID        ID     `json:"id"`
	TenantID  string `json:"tenant_id"`
	PortID    *ID    `json:"port_id"`
	SubnetID  *ID    `json:"subnet_id"`
	SubnetIDs []ID   `json:"subnet_ids"`
	NetworkID *ID    `json:"network_id"`
}

// FloatingIP is a Neutron floating IP.
type FloatingIP struct {
	ID                ID      `json:"id"`
	TenantID          string  `json:"tenant_id"`
	ProjectID         string  `json:"project_id"`
	FloatingIPAddress string  `json:"floating_ip_address"`
	FloatingNetworkID ID      `json:"floating_network_id"`
	RouterID          *ID     `json:"router_id"`
	PortID            *ID     `json:"port_id"`
	FixedIPAddress    *string `json:"fixed_ip_address"`

	rest map[string]json.RawMessage
}

// SecurityGroup is a Neutron security group with the rules Neutron
// creates with it.
type SecurityGroup struct {
	ID          ID                  `json:"id"`
	TenantID    string              `json:"tenant_id"`
	ProjectID   string              `json:"project_id"`
	Name        string              `json:"name"`
	Description string              `json:"description"`
	Stateful    *bool               `json:"stateful"`
	Rules       []SecurityGroupRule `json:"security_group_rules"`

	rest map[string]json.RawMessage
}

// SecurityGroupRule is a Neutron security group rule.
type SecurityGroupRule struct {
	ID              ID       `json:"id"`
	TenantID        string   `json:"tenant_id"`
	ProjectID       string   `json:"project_id"`
	SecurityGroupID ID       `json:"security_group_id"`
	Direction       string   `json:"direction"`
	Ethertype       string   `json:"ethertype"`
	Protocol        Protocol `json:"protocol"`
	PortRangeMin    *int     `json:"port_range_min"`
	PortRangeMax    *int     `json:"port_range_max"`
	RemoteIPPrefix  *string  `json:"remote_ip_prefix"`
	RemoteGroupID   *ID      `json:"remote_group_id"`
	// RemoteAddressGroupID names a Neutron address group (refused: not
	// translated).
	RemoteAddressGroupID *string `json:"remote_address_group_id"`

	rest map[string]json.RawMessage
}

// Protocol is a security group rule's protocol: Neutron sends a name
// ("tcp"), a number as a string ("6"), a number, or null.
type Protocol struct {
	raw json.RawMessage
}

// UnmarshalJSON keeps the value as sent.
func (p *Protocol) UnmarshalJSON(b []byte) error {
	p.raw = append(json.RawMessage(nil), b...)
	return nil
}

// MarshalJSON writes the value as it was sent.
func (p Protocol) MarshalJSON() ([]byte, error) {
	if len(p.raw) == 0 {
		return []byte("null"), nil
	}
	return p.raw, nil
}

// protocolNumbers are the names Neutron accepts for IP protocols.
var protocolNumbers = map[string]int{
	"ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "icmp": 1, "icmpv6": 58, "igmp": 2,
	"ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "ipv6-nonxt": 59,
	"ipv6-opts": 60, "ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132,
	"tcp": 6, "udp": 17, "udplite": 136, "vrrp": 112,
}

// Number returns the IP protocol number; ok is false for "any" (null, ""
// or "any").
func (p Protocol) Number() (n int, ok bool, err error) {
	if len(p.raw) == 0 || string(p.raw) == "null" {
		return 0, false, nil
	}
	var s string
	if err := json.Unmarshal(p.raw, &s); err != nil {
		if err := json.Unmarshal(p.raw, &n); err != nil || n < 0 || n > 255 {
			return 0, false, fmt.Errorf("protocol %s is neither a name nor a number 0-255", p.raw)
		}
		return n, true, nil
	}
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || s == "any" {
		return 0, false, nil
	}
	if n, ok := protocolNumbers[s]; ok {
		return n, true, nil
	}
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n < 0 || n > 255 || fmt.Sprint(n) != s {
		return 0, false, fmt.Errorf("protocol %q is neither a known name nor a number 0-255", s)
	}
	return n, true, nil
}

// ProtocolOf returns the Protocol for a JSON value (tests, bodies built in
// code).
func ProtocolOf(v any) Protocol {
	b, _ := json.Marshal(v)
	return Protocol{raw: b}
}

// Owner returns the tenant of an object: tenant_id, or project_id when
// Neutron sent only that.
func owner(tenant, project string) string {
	if tenant != "" {
		return tenant
	}
	return project
}

func (n *Network) Owner() string       { return owner(n.TenantID, n.ProjectID) }
func (s *Subnet) Owner() string        { return owner(s.TenantID, s.ProjectID) }
func (p *Port) Owner() string          { return owner(p.TenantID, p.ProjectID) }
func (r *Router) Owner() string        { return owner(r.TenantID, r.ProjectID) }
func (f *FloatingIP) Owner() string    { return owner(f.TenantID, f.ProjectID) }
func (g *SecurityGroup) Owner() string { return owner(g.TenantID, g.ProjectID) }
func (r *SecurityGroupRule) Owner() string {
	return owner(r.TenantID, r.ProjectID)
}

// Kind and ObjectID make the Neutron types storable objects.
func (Network) Kind() string                 { return KindNetwork }
func (n Network) ObjectID() string           { return n.ID.String() }
func (Subnet) Kind() string                  { return KindSubnet }
func (s Subnet) ObjectID() string            { return s.ID.String() }
func (Port) Kind() string                    { return KindPort }
func (p Port) ObjectID() string              { return p.ID.String() }
func (Router) Kind() string                  { return KindRouter }
func (r Router) ObjectID() string            { return r.ID.String() }
func (FloatingIP) Kind() string              { return KindFloatingIP }
func (f FloatingIP) ObjectID() string        { return f.ID.String() }
func (SecurityGroup) Kind() string           { return KindSecurityGroup }
func (g SecurityGroup) ObjectID() string     { return g.ID.String() }
func (SecurityGroupRule) Kind() string       { return KindSecurityGroupRule }
func (r SecurityGroupRule) ObjectID() string { return r.ID.String() }

// IsUp reports the admin state (Neutron's default is up).
func isUp(b *bool) bool { return b == nil || *b }

// The JSON methods: each type decodes its typed fields and keeps the rest.

func (n *Network) UnmarshalJSON(b []byte) error {
	type plain Network
	return decodeKeep(b, (*plain)(n), &n.rest)
}
func (n Network) MarshalJSON() ([]byte, error) {
	type plain Network
	return encodeKeep(plain(n), n.rest)
}
func (s *Subnet) UnmarshalJSON(b []byte) error {
	type plain Subnet
	return decodeKeep(b, (*plain)(s), &s.rest)
}
func (s Subnet) MarshalJSON() ([]byte, error) {
	type plain Subnet
	return encodeKeep(plain(s), s.rest)
}
func (p *BindingProfile) UnmarshalJSON(b []byte) error {
	type plain BindingProfile
	return decodeKeep(b, (*plain)(p), &p.rest)
}
func (p BindingProfile) MarshalJSON() ([]byte, error) {
	type plain BindingProfile
	return encodeKeep(plain(p), p.rest)
}
func (p *Port) UnmarshalJSON(b []byte) error {
	type plain Port
	return decodeKeep(b, (*plain)(p), &p.rest)
}
func (p Port) MarshalJSON() ([]byte, error) {
	type plain Port
	return encodeKeep(plain(p), p.rest)
}
func (r *Router) UnmarshalJSON(b []byte) error {
	type plain Router
	return decodeKeep(b, (*plain)(r), &r.rest)
}
func (r Router) MarshalJSON() ([]byte, error) {
	type plain Router
	return encodeKeep(plain(r), r.rest)
}
func (f *FloatingIP) UnmarshalJSON(b []byte) error {
	type plain FloatingIP
	return decodeKeep(b, (*plain)(f), &f.rest)
}
func (f FloatingIP) MarshalJSON() ([]byte, error) {
	type plain FloatingIP
	return encodeKeep(plain(f), f.rest)
}
func (g *SecurityGroup) UnmarshalJSON(b []byte) error {
	type plain SecurityGroup
	return decodeKeep(b, (*plain)(g), &g.rest)
}
func (g SecurityGroup) MarshalJSON() ([]byte, error) {
	type plain SecurityGroup
	return encodeKeep(plain(g), g.rest)
}
func (r *SecurityGroupRule) UnmarshalJSON(b []byte) error {
	type plain SecurityGroupRule
	return decodeKeep(b, (*plain)(r), &r.rest)
}
func (r SecurityGroupRule) MarshalJSON() ([]byte, error) {
	type plain SecurityGroupRule
	return encodeKeep(plain(r), r.rest)
}

// decodeKeep decodes b into the struct v points to and keeps every member
// of b in *rest, so that encoding gives back what was posted.
func decodeKeep(b []byte, v any, rest *map[string]json.RawMessage) error {
	if err := json.Unmarshal(b, v); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	*rest = all
	return nil
}

// encodeKeep encodes the struct v over the members of rest: a typed field
// replaces the posted member of its name, and is added when it was not
// posted unless it is empty (null, "", [], {}, false, 0), so that a GET
// shows what was posted plus what the translation set.
func encodeKeep(v any, rest map[string]json.RawMessage) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var typed map[string]json.RawMessage
	if err := json.Unmarshal(b, &typed); err != nil {
		return nil, err
	}
	all := make(map[string]json.RawMessage, len(rest)+len(typed))
	for k, v := range rest {
		all[k] = v
	}
	for k, v := range typed {
		if _, posted := rest[k]; posted || !isEmptyJSON(v) {
			all[k] = v
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(all); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

func isEmptyJSON(v json.RawMessage) bool {
	switch string(bytes.TrimSpace(v)) {
	case "null", `""`, "[]", "{}", "false", "0":
		return true
	}
	return false
}
