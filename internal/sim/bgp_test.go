package sim

import (
	"testing"

	"github.com/midonet/midonet/internal/topology"
)

// TestBGPDivert: a BGP uplink's sessions with its peers go to the port's
// helper untouched; the rest of the traffic to the port is the router's,
// with masks that keep the two apart.
func TestBGPDivert(t *testing.T) {
	const peerMAC, peerIP = "02:00:00:00:00:fe", gatewayIP // the uplink's gateway is the peer
	tests := []struct {
		name      string
		noBGP     bool
		noAS      bool
		spec      PacketSpec
		kind      Kind
		toHelper  bool
		wantSeen  FieldSet // fields the mask must cover
		wantLearn bool
	}{{
		name: "the peer connects to the port's BGP", spec: tcp(peerMAC, upMAC, peerIP, upIP, 40000, 179),
		kind: Forward, toHelper: true, wantSeen: FieldNwSrc | FieldNwDst | FieldNwProto | FieldTpDst,
	}, {
		name: "the peer answers the port's connection", spec: tcp(peerMAC, upMAC, peerIP, upIP, 179, 40000),
		kind: Forward, toHelper: true, wantSeen: FieldNwSrc | FieldNwDst | FieldNwProto | FieldTpSrc | FieldTpDst,
	}, {
		name: "other TCP from the peer is the router's, matched on its ports", spec: tcp(peerMAC, upMAC, peerIP, upIP, 40000, 22),
		kind: TemporaryDrop, wantSeen: FieldTpSrc | FieldTpDst,
	}, {
		name: "BGP from a stranger is the router's", spec: tcp("02:00:00:00:00:77", upMAC, "192.0.2.77", upIP, 40000, 179),
		kind: TemporaryDrop, wantSeen: FieldNwSrc,
	}, {
		name: "BGP to a port without peers is the router's", noBGP: true, spec: tcp(peerMAC, upMAC, peerIP, upIP, 40000, 179),
		kind: TemporaryDrop,
	}, {
		name: "an ARP reply from the peer: learned, and copied to the helper",
		spec: PacketSpec{EthSrc: mac(peerMAC), EthDst: mac(upMAC), ARPOp: arpOpReply, Src: ip(peerIP), Dst: ip(upIP)},
		kind: UserspaceOnly, toHelper: true, wantLearn: true,
	}, {
		name: "an ARP request from the peer is answered by the router",
		spec: arpReq(peerMAC, peerIP, upIP), kind: Consumed, wantLearn: true,
	}, {
		name: "a router without an AS number speaks no BGP", noAS: true, spec: tcp(peerMAC, upMAC, peerIP, upIP, 40000, 179),
		kind: TemporaryDrop,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, ids := routerTopo(t)
			if !tt.noAS {
				tp.in.Routers[0].ASNumber = 65000
			}
			if !tt.noBGP {
				tp.in.BGPPeers = []topology.BGPPeer{{ID: id("peer"), RouterID: ids["rtr"], Address: topology.Str(peerIP), ASNumber: 65001}}
			}
			r := run(t, tp.snapshot(), nil, ids["up"], tt.spec)
			if r.Kind != tt.kind {
				t.Fatalf("%v %v, want %v", r.Kind, r.Reason, tt.kind)
			}
			helper := BGPHelperPort(ids["up"])
			if tt.toHelper {
				if len(r.Egress) != 1 || r.Egress[0].Port != helper || r.Egress[0].Set != 0 {
					t.Fatalf("egress %+v, want the helper %s untouched", r.Egress, helper)
				}
				if !hasTag(r, DeviceTag(ids["up"])) || !hasTag(r, DeviceTag(ids["rtr"])) {
					t.Error("a diverted flow lacks the port's or the router's tag")
				}
			} else {
				for _, e := range r.Egress {
					if e.Port == helper {
						t.Fatalf("sent to the helper: %+v", r.Egress)
					}
				}
			}
			if r.Seen&tt.wantSeen != tt.wantSeen {
				t.Errorf("seen %v, want at least %v", r.Seen, tt.wantSeen)
			}
			if got := len(r.LearnedARP) > 0; got != tt.wantLearn {
				t.Errorf("router learned ARP: %v, want %v", r.LearnedARP, tt.wantLearn)
			}
		})
	}
}
