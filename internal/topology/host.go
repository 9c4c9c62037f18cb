package topology

import (
	"net/netip"
	"slices"
)

// Host is a machine running an agent.
type Host struct {
	ID                    ID          `json:"id"`
	Name                  *string     `json:"name"`
	Alive                 bool        `json:"alive"`
	Addresses             []string    `json:"addresses"`
	HostInterfaces        []Interface `json:"hostInterfaces"`
	FloodingProxyWeight   int         `json:"floodingProxyWeight"`
	ContainerWeight       int         `json:"containerWeight"`
	ContainerLimit        int         `json:"containerLimit"`
	EnforceContainerLimit bool        `json:"enforceContainerLimit"`
}

func (Host) Kind() string       { return KindHost }
func (h Host) ObjectID() string { return h.ID.String() }
func (h *Host) Normalize() {
	if h.Addresses == nil {
		h.Addresses = []string{}
	}
	if h.HostInterfaces == nil {
		h.HostInterfaces = []Interface{}
	}
}
func (h *Host) Validate() error {
	var v violations
	v.checkLen("name", h.Name, 0, 255)
	v.checkRange("floodingProxyWeight", int64(h.FloodingProxyWeight), 0, 65535)
	if h.ContainerWeight < 0 {
		v.add("containerWeight", "must be greater than or equal to 0")
	}
	if h.ContainerLimit < -1 {
		v.add("containerLimit", "must be greater than or equal to -1")
	}
	return v.err()
}

// Interface status bits.
const (
	InterfaceUp      = 1
	InterfaceHasLink = 2
)

// Interface is a network interface an agent reports for its host.
type Interface struct {
	HostID    ID       `json:"hostId"`
	Name      string   `json:"name"`
	MAC       *string  `json:"mac"`
	MTU       int      `json:"mtu"`
	Type      string   `json:"type"`
	Endpoint  string   `json:"endpoint"`
	PortType  *string  `json:"portType"`
	Addresses []string `json:"addresses"`
	Status    int      `json:"status"`
}

// Tunnel zone types.
const (
	TunnelZoneGRE   = "gre"
	TunnelZoneVXLAN = "vxlan"
	TunnelZoneVTEP  = "vtep"
)

// TunnelZoneMember is a host's address in a tunnel zone.
type TunnelZoneMember struct {
	HostID    ID     `json:"hostId"`
	IPAddress string `json:"ipAddress"`
}

// TunnelZone is a set of hosts that reach each other through tunnels.
type TunnelZone struct {
	ID      ID                 `json:"id"`
	Name    *string            `json:"name"`
	Type    *string            `json:"type"`
	Members []TunnelZoneMember `json:"_members"`
}

func (TunnelZone) Kind() string       { return KindTunnelZone }
func (z TunnelZone) ObjectID() string { return z.ID.String() }
func (z *TunnelZone) Normalize() {
	if z.Members == nil {
		z.Members = []TunnelZoneMember{}
	}
}
func (z *TunnelZone) Validate() error {
	var v violations
	v.checkLen("name", z.Name, 1, 255)
	if z.Type == nil {
		v.add("type", "may not be null")
	} else if t := *z.Type; t != TunnelZoneGRE && t != TunnelZoneVXLAN && t != TunnelZoneVTEP {
		v.add("type", "must be one of gre, vxlan, vtep")
	}
	return v.err()
}

// Member returns the member entry of a host, if any.
func (z *TunnelZone) Member(host ID) (TunnelZoneMember, bool) {
	for _, m := range z.Members {
		if m.HostID == host {
			return m, true
		}
	}
	return TunnelZoneMember{}, false
}

// UnderlayMTU returns the smallest MTU of the interfaces that carry the
// tunnel-zone members' addresses, among ifaces (hosts' interfaces, as
// their agents publish them): the largest packet every overlay path takes.
// It is 0 when no member's interface is known. VTEP zones do not count:
// their members are switches, whose MTU no agent reports.
func UnderlayMTU(zones []TunnelZone, ifaces []Interface) int {
	byHost := map[ID][]*Interface{}
	for i := range ifaces {
		byHost[ifaces[i].HostID] = append(byHost[ifaces[i].HostID], &ifaces[i])
	}
	least := 0
	for _, z := range zones {
		if z.Type != nil && *z.Type == TunnelZoneVTEP {
			continue
		}
		for _, m := range z.Members {
			want, err := netip.ParseAddr(m.IPAddress)
			if err != nil {
				continue
			}
			for _, itf := range byHost[m.HostID] {
				if itf.MTU <= 0 || !slices.ContainsFunc(itf.Addresses, func(a string) bool {
					got, err := netip.ParseAddr(a)
					return err == nil && got.Unmap() == want.Unmap()
				}) {
					continue
				}
				if least == 0 || itf.MTU < least {
					least = itf.MTU
				}
			}
		}
	}
	return least
}
