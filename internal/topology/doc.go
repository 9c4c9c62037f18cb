// Package topology is the virtual network model: bridges, routers, ports,
// routes, chains and rules, port and IP address groups, hosts, tunnel zones,
// DHCP, load balancers, mirrors, QoS policies, BGP and trace requests.
//
// The types are the stored form and the wire form of MidoNet's REST API at
// once: JSON field names are the API's, addresses are kept as the strings a
// client sent (MidoNet echoes a MAC's case back), and every object validates
// itself. Fields the API does not show (ordered rule lists, group members)
// have JSON names starting with "_". The simulation never reads these
// structs on the packet path: the agent compiles them into a snapshot.
//
// Referential integrity (what a delete cascades to, clears or refuses, and
// which references must name existing objects) lives here too, written
// against the small Store interface a transaction of the NSDB satisfies.
package topology
