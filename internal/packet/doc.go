// Package packet decodes and encodes the headers the virtual network handles
// (Ethernet, 802.1Q, ARP, IPv4, IPv6, ICMP, TCP, UDP, VXLAN) without
// allocating, computes and incrementally updates checksums, and defines
// FlowKey, the comparable flow match shared by the simulation and the
// datapaths.
package packet
