// Package packet decodes and encodes the headers the virtual network handles
// (Ethernet, 802.1Q, ARP, IPv4, IPv6, ICMP, TCP, UDP, VXLAN) without
// allocating, computes and incrementally updates checksums, and defines
// FlowKey, the comparable flow match shared by the simulation and the
// datapaths.
//
// It has its own small types instead of a general packet library because
// every function here runs per packet: decoding, flow-key extraction and
// rewrites must not allocate (each has an AllocsPerRun test).
//
// The pieces:
//
//   - Views (Ethernet, VLANTag, ARP, IPv4, IPv6, ICMPv4, TCP, UDP, VXLAN) are
//     named byte slices read and written in place. Check validity first
//     (IsValid, or go through Parsed); the accessors assume a long enough
//     slice.
//   - Parsed is the main entry: Decode fills it from a frame with values
//     (MACs, netip.Addr, ports) and header offsets, never copies, and returns
//     views of each header. Malformed input stops decoding at the last
//     complete layer (Parsed.Layer); it never panics.
//   - ExtractFlowKey (or Parsed.FlowKey) turns a frame into a FlowKey.
//   - Parsed's Set* methods and DecTTL rewrite headers in place and patch
//     checksums with RFC 1624 incremental updates; PushVLAN, PopVLAN and the
//     headroom variants change the frame's length.
//   - Append* builders append generated frames (ARP, ICMP echo reply and
//     errors, IPv4/UDP, VXLAN) to a caller's buffer, allocating only when
//     it lacks capacity.
//
// Ownership: frames always belong to the caller. Parsed and the views keep
// references into the frame, so it must not be reused while they are in
// use; builders copy what they need and keep no references.
//
// Headroom: a receive buffer that leaves VXLANEncapLen free bytes in front
// of the frame lets EncapVXLANHeadroom and PushVLANHeadroom prepend headers
// without copying the payload:
//
//	buf: [ headroom (>= 50 bytes) | inner Ethernet frame ........ ]
//	                              ^ start
//	EncapVXLANHeadroom(buf, start, f, vni) returns
//	     [ ... | Eth | IPv4 | UDP | VXLAN | inner Ethernet frame ]
//	           ^ start-VXLANEncapLen
package packet
