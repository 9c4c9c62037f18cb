// Package neutron is MidoNet's Neutron integration on the cluster side: the
// Neutron objects (networks, subnets, ports, routers, router interfaces,
// floating IPs, security groups and their rules) stored as Neutron posted
// them, and their translation into topology objects (bridges, router ports,
// routes, chains and rules, NAT, IP address groups, DHCP subnets and hosts,
// seeded MAC and ARP entries, host bindings) rule by rule as MidoNet's C3PO
// translators did.
//
// Every call (create, update, delete of one object, or a bulk create) runs
// in one store transaction: the Neutron object and everything its
// translation writes commit together or not at all. Objects the
// translation owns get ids derived from the Neutron object's id
// (DerivedID), so a retried call finds what an earlier attempt made, and a
// delete removes exactly what the create made without searching for it.
//
// What the translation does not support is refused with an error wrapping
// ErrUnsupported (the API answers 501), never accepted and dropped:
// IPv6 beyond what the agents' DHCPv6 and bridges do (SLAAC, stateless
// DHCPv6 and router advertisement modes, IPv6 host routes, router
// interfaces and gateways on IPv6 subnets, IPv6 allowed address pairs,
// security group prefixes and floating IPs: the routers route and the rule
// engine filters IPv4 only), uplink and VLAN/flat provider networks, Neutron QoS policies and
// address groups, stateless security groups, and the services MidoNet's
// endpoints also carried (LBaaS, FWaaS, VPNaaS, L2 gateways, BGP, TaaS).
package neutron
