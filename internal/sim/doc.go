// Package sim simulates a packet through the virtual topology: ingress port,
// filter chains, bridges and routers, NAT and connection tracking, to the
// exterior ports it leaves by. It returns a Result the agent turns into a
// datapath flow: egress ports with header rewrites, the megaflow mask made of
// the header fields the simulation read, the flow tags that invalidate the
// flow when what it depends on changes, the flow-state keys to replicate, and
// any packets the devices generated (ARP and ICMP replies and errors).
//
// The package is pure: it reads an immutable Snapshot and the flow-state
// tables, takes the time and a random source as inputs, performs no I/O and
// starts no goroutines. Anything that must wait is a result kind the agent
// acts on before simulating the packet again (an unresolved next-hop MAC, a
// SNAT port block to lease).
//
// A Builder compiles the topology into snapshots change by change: compiled
// objects refer to each other by handles into the snapshot's tables, so a
// write costs an agent what it changes (and what depends on it: a port's
// bridge and peer, a rule's chains), not a compilation of the whole cloud,
// and unchanged objects are shared between snapshots. NewSnapshot compiles
// a topology whole.
//
// What is simulated: ports (filter chains, mirrors, admin state, exterior
// emission, interior hand-off, the 12-device loop guard), bridges (MAC
// learning per VLAN, flooding, ARP answering, VLAN-aware bridges), routers
// (longest-prefix routing with source prefixes, weights and ECMP, local,
// blackhole and reject routes, ARP, TTL, ICMP echo replies and errors),
// chains and rules with every condition field, static and dynamic NAT,
// connection tracking, L4 load balancers, QoS DSCP marking, mirrors,
// l2_transform and redirect rules with L2 insertions (service ports in the
// path of a protected port), and DHCP: a request from a VM to a bridge with
// DHCP subnets is answered where it enters, from the static leases (package
// dhcp), and consumed without a flow. Trace requests are evaluated at the
// entry of their port, bridge or router: a match is reported in the result
// (the agent then simulates the packet again with a trace) and never
// changes the packet's course. Not simulated yet (2026-11): VTEP router
// ports, BGP traffic shuttling, IPv6 routing, router hairpinning, and VLAN
// stacks (a push onto a tagged frame drops it).
//
// A Simulator holds one worker's scratch space. Simulating a packet on the
// bridge and router paths does not allocate once the scratch has grown; the
// Result it returns points into that scratch and is valid until the next call.
package sim
