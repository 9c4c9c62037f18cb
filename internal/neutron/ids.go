package neutron

import (
	"net/netip"

	"github.com/google/uuid"
)

// idSpace is the namespace of derived ids (a random UUID of this project).
var idSpace = uuid.MustParse("5b0f3c2e-9a41-4d7e-b8a6-0c6d1e2f7a93")

// DerivedID returns the id of an object a translation makes for the
// Neutron object id, named by its role: the same inputs give the same id,
// so retries and deletes find the object without searching.
func DerivedID(id ID, role string) ID {
	return uuid.NewSHA1(idSpace, append(id[:], role...))
}

// derivedIDAddr is DerivedID for an object made per address (a route to
// each of a port's addresses).
func derivedIDAddr(id ID, role string, a netip.Addr) ID {
	return DerivedID(id, role+"/"+a.String())
}

// The roles of derived objects. Chains and groups of a device.
const (
	roleInChain        = "chain/in"      // port, router, security group: inbound filter
	roleOutChain       = "chain/out"     // outbound filter
	roleAntiSpoofChain = "chain/spoof"   // port anti-spoofing chain
	roleFwdChain       = "chain/forward" // router forward chain
	roleSkipSNATChain  = "chain/skip-snat"
	roleFloatSNATExact = "chain/float-snat-exact"
	roleFloatSNAT      = "chain/float-snat"
	roleEdgeGroup      = "port-group/edge" // router: uplink ports (stateful)
	roleRIFGroup       = "port-group/rif"  // router: its interfaces

	// Rules.
	roleAntiSpoofJump   = "rule/spoof-jump"
	roleNonHeader       = "rule/non-header" // the non-first-fragment twin of an L4 SG rule
	roleSkipSNATAccept  = "rule/skip-snat-accept"
	roleSkipSNATJump    = "rule/skip-snat-jump"
	roleFloatSNATExJump = "rule/float-snat-exact-jump"
	roleFloatSNATJump   = "rule/float-snat-jump"
	roleSNAT            = "rule/snat"
	roleSNATDstRewrite  = "rule/snat-dst-rewritten"
	roleSNATDropFrags   = "rule/snat-drop-fragments"
	roleRevSNAT         = "rule/rev-snat"
	roleDropToGw        = "rule/drop-non-icmp-to-gw"
	roleSkipSNATOutGw   = "rule/skip-snat-out-gw"
	roleSkipSNATInGw    = "rule/skip-snat-in-gw"
	roleSameSubnetSNAT  = "rule/same-subnet-snat"
	roleSameSubnetRev   = "rule/same-subnet-rev-snat"
	roleFIPSNAT         = "rule/fip-snat"
	roleFIPSNATExact    = "rule/fip-snat-exact"
	roleFIPDNAT         = "rule/fip-dnat"
	roleFIPSkipOut      = "rule/fip-skip-snat-out"
	roleFIPSkipIn       = "rule/fip-skip-snat-in"

	// Ports and routes.
	roleRouterPeer   = "port/router-peer" // the router side of a router interface or gateway port
	roleLocalRoute   = "route/local"
	rolePortRoute    = "route/port"
	roleDefaultRoute = "route/default"
	roleMetaRoute    = "route/metadata"
	roleExtraRoute   = "route/extra"
)
