package bgp

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/midonet/midonet/internal/topology"
)

// PortSpec is everything needed to serve one uplink: a router port bound
// to this host, with the router's peers whose addresses lie on its subnet.
type PortSpec struct {
	Uplink
	MAC [6]byte
	// Speaker is the speaker's configuration.
	Speaker SpeakerConfig
	// Off, when set, says why no speaker runs for the port (the router
	// has no AS number, the port is down): the port's status and its
	// peers' say it rather than nothing.
	Off string
}

// Peers returns the addresses of the spec's peers.
func (s *PortSpec) Peers() []netip.Addr {
	out := make([]netip.Addr, len(s.Speaker.Peers))
	for i, p := range s.Speaker.Peers {
		out[i] = p.Address
	}
	return out
}

// Topology is what Plan reads: the objects as the store holds them.
type Topology struct {
	Routers  []topology.Router
	Ports    []topology.Port
	Peers    []topology.BGPPeer
	Networks []topology.BGPNetwork
}

// Plan returns the uplinks host serves: each router port bound to host
// that has an IPv4 address and at least one BGP peer of its router on its
// subnet (MidoNet's BgpPortMapper), in port id order. A peer on the subnets
// of two such ports is served by each.
func Plan(host topology.ID, t Topology) []PortSpec { return plan(&host, t) }

// PlanAll is Plan for every host: the uplinks of the whole cloud.
func PlanAll(t Topology) []PortSpec { return plan(nil, t) }

// Equal reports whether two specs are the same.
func (s *PortSpec) Equal(o *PortSpec) bool {
	return s.Uplink == o.Uplink && s.MAC == o.MAC && s.Off == o.Off && s.Speaker.Equal(o.Speaker)
}

func plan(host *topology.ID, t Topology) []PortSpec {
	routers := make(map[topology.ID]*topology.Router, len(t.Routers))
	for i := range t.Routers {
		routers[t.Routers[i].ID] = &t.Routers[i]
	}
	var out []PortSpec
	for i := range t.Ports {
		p := &t.Ports[i]
		if !p.IsRouterPort() || !p.IsExterior() || p.PeerID != nil || (host != nil && *p.HostID != *host) {
			continue
		}
		r, ok := routers[p.DeviceID]
		if !ok {
			continue
		}
		subnet, ok := p.Subnet4()
		if !ok {
			continue
		}
		mac, _ := topology.ParseMAC(deref(p.PortMAC))
		spec := PortSpec{
			Uplink:  Uplink{Router: r.ID, Port: p.ID, Subnet: subnet},
			MAC:     mac,
			Speaker: SpeakerConfig{RouterID: subnet.Addr(), LocalAS: uint32(max(r.ASNumber, 0))},
		}
		for j := range t.Peers {
			bp := &t.Peers[j]
			a, ok := topology.BGPPeerOnPort(bp, p)
			if !ok {
				continue
			}
			spec.Speaker.Peers = append(spec.Speaker.Peers, PeerConfig{
				ID: bp.ID, Address: a, AS: uint32(max(bp.ASNumber, 0)),
				KeepAlive: seconds(bp.KeepAlive), HoldTime: seconds(bp.HoldTime), ConnectRetry: seconds(bp.ConnectRetry),
				Password: deref(bp.Password),
			})
		}
		if len(spec.Speaker.Peers) == 0 {
			continue
		}
		spec.Off = topology.BGPOff(r, p)
		slices.SortFunc(spec.Speaker.Peers, func(a, b PeerConfig) int { return a.Address.Compare(b.Address) })
		for j := range t.Networks {
			n := &t.Networks[j]
			if n.RouterID != r.ID || n.SubnetAddress == nil {
				continue
			}
			if pfx, ok := topology.Prefix4(*n.SubnetAddress, n.SubnetLength); ok {
				spec.Speaker.Networks = append(spec.Speaker.Networks, pfx.Masked())
			}
		}
		slices.SortFunc(spec.Speaker.Networks, func(a, b netip.Prefix) int {
			if c := a.Addr().Compare(b.Addr()); c != 0 {
				return c
			}
			return cmp.Compare(a.Bits(), b.Bits())
		})
		spec.Speaker.Networks = slices.Compact(spec.Speaker.Networks)
		out = append(out, spec)
	}
	slices.SortFunc(out, func(a, b PortSpec) int { return slices.Compare(a.Port[:], b.Port[:]) })
	return out
}

func seconds(v *int) time.Duration {
	if v == nil {
		return 0
	}
	return time.Duration(*v) * time.Second
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
