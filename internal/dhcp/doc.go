// Package dhcp answers DHCPv4 and DHCPv6 requests from the static leases of
// a bridge's DHCP subnets, as MidoNet's agent does: on the host where the
// request enters the virtual network, without a daemon, a socket or a flow.
//
// It has three parts. The wire code decodes a client's request in place
// (Request4.Decode, Request6.Decode) and writes a complete reply frame,
// Ethernet to DHCP, checksums included, into a caller's buffer
// (Server4.AppendAnswer, Server6.AppendAnswer). The compiler turns the
// stored subnets and hosts (topology.DHCPSubnet, topology.DHCPSubnetV6) into
// servers whose per-host options are encoded once, so that answering is a
// lookup and a copy. The option table parses the extra options an operator
// gives a host (extraDhcpOpts) by name or number into their wire values.
//
// The package is pure, like the simulation that calls it: no I/O, no clock
// (lease times are durations), no goroutines. Decoding and answering do not
// allocate; malformed requests give one of the sentinel errors below, which
// the caller counts and drops.
package dhcp
