package fastpath

import (
	"github.com/cilium/ebpf/asm"

	"github.com/midonet/midonet/internal/packet"
)

// IP protocols the programs tell apart, as instruction immediates.
const (
	tcp  = int32(packet.IPProtoTCP)
	udp  = int32(packet.IPProtoUDP)
	icmp = int32(packet.IPProtoICMP)
)

// The two programs share their layouts with the Go side through the
// constants below. Every multi-byte packet field is kept as the bytes on
// the wire, so the programs copy and compare without byte swaps; only the
// interface index and the mask number are native integers.

// Flow key (40 bytes), the same layout for keys and masks.
const (
	keyIfindex = 0  // u32, native: the interface the packet came in on
	keyEthDst  = 4  // 6 bytes
	keyEthSrc  = 10 // 6 bytes
	keyEthType = 16 // 2 bytes, wire order
	keyProto   = 18
	keyTOS     = 19
	keyTTL     = 20
	keyMaskNo  = 22 // u16, native: which mask the key was masked with (zero in masks)
	keyNwSrc   = 24 // 4 bytes
	keyNwDst   = 28 // 4 bytes
	keyTpSrc   = 32 // 2 bytes, wire order; ICMP: 0, type
	keyTpDst   = 34 // 2 bytes, wire order; ICMP: 0, code
	keyICMPID  = 36 // 2 bytes, wire order: an echo's identifier
	keySize    = 40
)

// Flow value (96 bytes): the actions, then counters the programs update.
const (
	valFlags  = 0  // u32: act* bits
	valOutIf  = 4  // u32, native: output interface (the underlay's for the overlay); 0 drops
	valEthDst = 8  // 6 bytes
	valEthSrc = 14 // 6 bytes
	valNwSrc  = 20 // 4 bytes
	valNwDst  = 24 // 4 bytes
	valTpSrc  = 28 // 2 bytes, wire order
	valTpDst  = 30 // 2 bytes, wire order
	valTTL    = 32
	valTOS    = 33
	// The overlay (actTunnel): the outer headers to push.
	valVNI      = 36 // 4 bytes: the VXLAN header's second word, wire order
	valTunSrc   = 40 // 4 bytes
	valTunDst   = 44 // 4 bytes
	valTunTOS   = 48
	valTunTTL   = 49
	valTunDport = 52 // 2 bytes, wire order
	valMaxLen   = 54 // u16, native: the longest frame the underlay takes once encapsulated
	valActSize  = 64 // the actions end here
	valPackets  = 64 // u64
	valBytes    = 72 // u64
	valUsed     = 80 // u64: bpf_ktime_get_ns of the last packet
	valTCPFlags = 88 // u64: OR of the TCP flags seen
	valSize     = 96
)

// Action bits of valFlags.
const (
	actEthDst = 1 << iota
	actEthSrc
	actNwSrc
	actNwDst
	actTOS
	actTTL
	actTpSrc
	actTpDst
	actTunnel // encapsulate in VXLAN and send to the underlay's next hop
)

// tunnelTCPMax is the longest TCP frame the kernel puts in the overlay.
// A stream's super-frames take the agent's path; its full-sized segments
// go along with them, so that the kernel's quicker path does not reorder
// a bulk stream (receivers count reordering as loss). Requests, replies
// and acknowledgements are shorter and take the kernel.
const tunnelTCPMax = 1024

// vxlanOverhead is what encapsulation adds in front of a frame (outer
// IPv4, UDP and VXLAN headers; the outer Ethernet header replaces none).
const vxlanOverhead = packet.VXLANEncapLen - packet.EthernetHeaderLen

// The mask table (one array entry): how many slots are in use, then the
// masks. A flow's key carries the number of the mask it was masked with.
const (
	maxMasks     = 32
	masksCount   = 0 // u32
	masksFirst   = 8
	masksValSize = masksFirst + maxMasks*keySize
)

// The hand-over from the socket filter to the tc program (per processor):
// the filter classified the packet and keeps it from the agent; the tc
// program, which the kernel runs next for the same packet on the same
// processor, finds the verdict here and forwards.
const (
	hoIfindex = 0   // u32: the packet's interface; 0 = nothing handed over
	hoLen     = 4   // u32: the packet's length
	hoTag     = 8   // 8 bytes: IPv4 header bytes 4-11 (id, fragment, TTL, protocol, checksum)
	hoAction  = 16  // valActSize bytes copied from the flow
	hoIP      = 80  // 20 bytes: the IPv4 header as received
	hoPorts   = 100 // 4 bytes: the L4 ports as received
	hoSize    = 104
)

// Counters (per processor): packets and bytes forwarded by flows here.
const (
	ctrPackets = 0
	ctrBytes   = 8
	ctrSize    = 16
)

// Port counters (per processor, by interface index): what the kernel's
// flows took in from and sent out of each attached interface.
const (
	portRxPackets = 0
	portRxBytes   = 8
	portTxPackets = 16
	portTxBytes   = 24
	portValSize   = 32
)

// Offsets in struct __sk_buff.
const (
	skbLen         = 0
	skbVLANPresent = 20
	skbIfindex     = 40
	skbGSOSize     = 176
)

// Frame offsets of an untagged IPv4 packet without options, the only kind
// the fast path takes.
const (
	ethLen     = packet.EthernetHeaderLen
	ipOff      = ethLen
	ipCsumOff  = ipOff + 10
	ipSrcOff   = ipOff + 12
	ipDstOff   = ipOff + 16
	l4Off      = ipOff + 20
	tcpCsumOff = l4Off + 16
	udpCsumOff = l4Off + 6
)

// Kernel constants.
const (
	bpfPseudoHdr    = 1 << 4 // BPF_F_PSEUDO_HDR
	bpfMarkMangled0 = 1 << 5 // BPF_F_MARK_MANGLED_0
	tcxNext         = -1     // TCX_NEXT: not ours, go on as without the program
	tcxDrop         = 2      // TCX_DROP
)

// count adds the packet in R6, lenAdj bytes longer, to the per-processor
// counters at R0, or jumps to label if R0 is nil.
func count(label string, pkts, bytes int16, lenAdj int32) asm.Instructions {
	p := asm.Instructions{
		asm.JEq.Imm(asm.R0, 0, label),
		asm.LoadMem(asm.R1, asm.R0, pkts, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, pkts, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R0, bytes, asm.DWord),
		asm.LoadMem(asm.R2, asm.R6, skbLen, asm.Word),
	}
	if lenAdj != 0 {
		p = append(p, asm.Add.Imm(asm.R2, lenAdj))
	}
	return append(p,
		asm.Add.Reg(asm.R1, asm.R2),
		asm.StoreMem(asm.R0, bytes, asm.R1, asm.DWord),
	)
}

// lookupAt looks up the key at fp+key in the map; the value, or nil, is in R0.
func lookupAt(mapFD int, key int16) asm.Instructions {
	return asm.Instructions{
		asm.LoadMapPtr(asm.R1, mapFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(key)),
		asm.FnMapLookupElem.Call(),
	}
}

// prologue starts the classifier and the forwarder: the packet in R6, 0 at
// stZero, this processor's hand-over entry in R8 (or a jump to miss).
func prologue(handover int, miss string) asm.Instructions {
	p := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.StoreImm(asm.RFP, stZero, 0, asm.Word),
	}
	p = append(p, lookupAt(handover, stZero)...)
	return append(p,
		asm.JEq.Imm(asm.R0, 0, miss),
		asm.Mov.Reg(asm.R8, asm.R0),
	)
}

// skbBytes calls bpf_skb_load_bytes or bpf_skb_store_bytes (flags 0) on
// the packet in R6, at frame offset off, n bytes to or from base+disp, and
// jumps to fail if the helper fails.
func skbBytes(fn asm.BuiltinFunc, off int32, base asm.Register, disp int16, n int32, fail string) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, off),
		asm.Mov.Reg(asm.R3, base),
		asm.Add.Imm(asm.R3, int32(disp)),
		asm.Mov.Imm(asm.R4, n),
		asm.Mov.Imm(asm.R5, 0),
		fn.Call(),
		asm.JNE.Imm(asm.R0, 0, fail),
	}
}

// Stack layout of the classifier (offsets from the frame pointer).
const (
	stZero   = -8   // u32 0: the key of the one-entry arrays
	stL4     = -16  // 8 bytes of scratch for L4 loads
	stIP     = -40  // 20 bytes: the IPv4 header
	stKey    = -80  // the packet's flow key
	stMasked = -120 // the key masked by one mask
)

// classifier builds the socket filter on each port's AF_PACKET socket. It
// computes the flow key of an untagged IPv4 frame exactly as
// packet.ExtractFlowKey does, looks it up mask by mask, and on a hit counts
// it, leaves the verdict for the tc program and keeps the frame from the
// socket (returns 0). Anything else, and any frame whose key the program
// could get wrong (IP options, fragments, truncated headers), goes to the
// socket as before (returns the whole length).
func classifier(masks, flows, handover, counters, ports int) asm.Instructions {
	r0, r1, r2, r6, r7, r8, r9, fp := asm.R0, asm.R1, asm.R2, asm.R6, asm.R7, asm.R8, asm.R9, asm.RFP
	loadBytes := func(off int32, to int16, n int32) asm.Instructions {
		return skbBytes(asm.FnSkbLoadBytes, off, fp, to, n, "accept")
	}
	p := prologue(handover, "accept")
	p = append(p,
		asm.StoreImm(r8, hoIfindex, 0, asm.Word), // no stale verdict
		asm.LoadMem(r7, r6, skbLen, asm.Word),
		asm.JLT.Imm(r7, l4Off, "accept"),
		asm.LoadMem(r0, r6, skbVLANPresent, asm.Word),
		asm.JNE.Imm(r0, 0, "accept"),
	)
	p = append(p, asm.Mov.Imm(r0, 0))
	for w := int16(0); w < keySize; w += 8 {
		p = append(p, asm.StoreMem(fp, stKey+w, r0, asm.DWord))
	}
	p = append(p, loadBytes(0, stKey+keyEthDst, ethLen)...) // both addresses and the ethertype
	p = append(p,
		asm.LoadMem(r0, fp, stKey+keyEthType, asm.Half),
		asm.JNE.Imm(r0, 0x0008, "accept"), // 08 00 read as little-endian
	)
	p = append(p, loadBytes(ipOff, stIP, 20)...)
	p = append(p,
		asm.LoadMem(r0, fp, stIP, asm.Byte),
		asm.JNE.Imm(r0, 0x45, "accept"), // version 4, no options
		asm.LoadMem(r0, fp, stIP+6, asm.Half),
		asm.And.Imm(r0, 0xff3f), // more-fragments and offset, wire order
		asm.JNE.Imm(r0, 0, "accept"),
		// r9 = bytes of L4 = min(total length, frame - Ethernet) - 20
		asm.LoadMem(r9, fp, stIP+2, asm.Half),
		asm.HostTo(asm.BE, r9, asm.Half),
		asm.JLT.Imm(r9, 20, "accept"),
		asm.Mov.Reg(r1, r7),
		asm.Sub.Imm(r1, ethLen),
		asm.JLE.Reg(r9, r1, "iplen"),
		asm.Mov.Reg(r9, r1),
		asm.Sub.Imm(r9, 20).WithSymbol("iplen"),
		asm.LoadMem(r0, fp, stIP+1, asm.Byte),
		asm.StoreMem(fp, stKey+keyTOS, r0, asm.Byte),
		asm.LoadMem(r0, fp, stIP+8, asm.Byte),
		asm.StoreMem(fp, stKey+keyTTL, r0, asm.Byte),
		asm.LoadMem(r0, fp, stIP+12, asm.Word),
		asm.StoreMem(fp, stKey+keyNwSrc, r0, asm.Word),
		asm.LoadMem(r0, fp, stIP+16, asm.Word),
		asm.StoreMem(fp, stKey+keyNwDst, r0, asm.Word),
		asm.LoadMem(r0, fp, stIP+9, asm.Byte),
		asm.StoreMem(fp, stKey+keyProto, r0, asm.Byte),
		asm.JEq.Imm(r0, tcp, "tcp"),
		asm.JEq.Imm(r0, udp, "udp"),
		asm.JEq.Imm(r0, icmp, "icmp"),
		asm.Mov.Imm(r9, 0),
		asm.Ja.Label("classify"),
	)
	// TCP: ports, and the flags for the flow's counters; a header shorter
	// than its data offset says goes to the agent.
	p = append(p, asm.JLT.Imm(r9, 20, "accept").WithSymbol("tcp"))
	p = append(p, loadBytes(l4Off, stMasked, 14)...)
	p = append(p,
		asm.LoadMem(r0, fp, stMasked, asm.Word),
		asm.StoreMem(fp, stKey+keyTpSrc, r0, asm.Word),
		asm.LoadMem(r0, fp, stMasked+12, asm.Byte),
		asm.RSh.Imm(r0, 4),
		asm.LSh.Imm(r0, 2),
		asm.JLT.Imm(r0, 20, "accept"),
		asm.JGT.Reg(r0, r9, "accept"),
		asm.LoadMem(r9, fp, stMasked+12, asm.Byte),
		asm.And.Imm(r9, 0x0f),
		asm.LSh.Imm(r9, 8),
		asm.LoadMem(r0, fp, stMasked+13, asm.Byte),
		asm.Or.Reg(r9, r0),
		asm.Ja.Label("classify"),
	)
	p = append(p, asm.JLT.Imm(r9, 8, "accept").WithSymbol("udp"))
	p = append(p, loadBytes(l4Off, stKey+keyTpSrc, 4)...)
	p = append(p,
		asm.Mov.Imm(r9, 0),
		asm.Ja.Label("classify"),
	)
	// ICMP: type and code in the port fields, an echo's identifier.
	p = append(p, asm.JLT.Imm(r9, 8, "accept").WithSymbol("icmp"))
	p = append(p, loadBytes(l4Off, stL4, 8)...)
	p = append(p,
		asm.Mov.Imm(r9, 0),
		asm.LoadMem(r0, fp, stL4, asm.Byte),
		asm.StoreMem(fp, stKey+keyTpSrc+1, r0, asm.Byte),
		asm.LoadMem(r1, fp, stL4+1, asm.Byte),
		asm.StoreMem(fp, stKey+keyTpDst+1, r1, asm.Byte),
		asm.JEq.Imm(r0, 0, "echo"),
		asm.JNE.Imm(r0, 8, "classify"),
		asm.LoadMem(r0, fp, stL4+4, asm.Half).WithSymbol("echo"),
		asm.StoreMem(fp, stKey+keyICMPID, r0, asm.Half),
	)
	// The interface, then each mask in turn, as the kernel datapath does.
	p = append(p,
		asm.LoadMem(r0, r6, skbIfindex, asm.Word).WithSymbol("classify"),
		asm.StoreMem(fp, stKey+keyIfindex, r0, asm.Word),
	)
	p = append(p, lookupAt(masks, stZero)...)
	p = append(p,
		asm.JEq.Imm(r0, 0, "accept"),
		asm.Mov.Reg(r7, r0),
	)
	for i := range int16(maxMasks) {
		p = append(p,
			asm.LoadMem(r1, r7, masksCount, asm.Word),
			asm.JLE.Imm(r1, int32(i), "accept"),
		)
		for w := int16(0); w < keySize; w += 8 {
			p = append(p,
				asm.LoadMem(r1, fp, stKey+w, asm.DWord),
				asm.LoadMem(r2, r7, masksFirst+i*keySize+w, asm.DWord),
				asm.And.Reg(r1, r2),
				asm.StoreMem(fp, stMasked+w, r1, asm.DWord),
			)
		}
		p = append(p, asm.StoreImm(fp, stMasked+keyMaskNo, int64(i), asm.Half))
		p = append(p, lookupAt(flows, stMasked)...)
		p = append(p, asm.JNE.Imm(r0, 0, "hit"))
	}
	p = append(p, asm.Ja.Label("accept"))

	// A hit: count, hand over to the tc program, keep from the socket. A
	// GSO super-frame for the overlay goes to the agent, which segments or
	// batches it (the kernel would send it whole as a UDP tunnel
	// super-frame, which a receiving socket takes as one datagram), as
	// does a frame too long for the underlay once encapsulated, which the
	// agent's port fragments, and a full-sized TCP segment (see
	// tunnelTCPMax).
	p = append(p,
		asm.Mov.Reg(r7, r0).WithSymbol("hit"),
		asm.LoadMem(r1, r7, valFlags, asm.Word),
		asm.And.Imm(r1, actTunnel),
		asm.JEq.Imm(r1, 0, "count"),
		asm.LoadMem(r1, r6, skbGSOSize, asm.Word),
		asm.JNE.Imm(r1, 0, "accept"),
		asm.LoadMem(r1, r7, valMaxLen, asm.Half),
		asm.LoadMem(r2, r6, skbLen, asm.Word),
		asm.JGT.Reg(r2, r1, "accept"),
		asm.JLE.Imm(r2, tunnelTCPMax, "count"),
		asm.LoadMem(r1, fp, stKey+keyProto, asm.Byte),
		asm.JEq.Imm(r1, tcp, "accept"),
		asm.Mov.Imm(r1, 1).WithSymbol("count"),
		asm.AddAtomic.Mem(r7, r1, asm.DWord, valPackets),
		asm.LoadMem(r1, r6, skbLen, asm.Word),
		asm.AddAtomic.Mem(r7, r1, asm.DWord, valBytes),
		asm.JEq.Imm(r9, 0, "noflags"),
		asm.OrAtomic.Mem(r7, r9, asm.DWord, valTCPFlags),
		asm.FnKtimeGetNs.Call().WithSymbol("noflags"),
		asm.StoreMem(r7, valUsed, r0, asm.DWord),
	)
	p = append(p, lookupAt(counters, stZero)...)
	p = append(p, count("ports", ctrPackets, ctrBytes, 0)...)
	// The ports' counters: received on the input, sent on the output.
	p = append(p, lookupAt(ports, stKey+keyIfindex)...)
	p[len(p)-4] = p[len(p)-4].WithSymbol("ports")
	p = append(p, count("txport", portRxPackets, portRxBytes, 0)...)
	p = append(p,
		asm.LoadMem(r1, r7, valOutIf, asm.Word).WithSymbol("txport"),
		asm.JEq.Imm(r1, 0, "copy"),
		asm.StoreMem(fp, stL4, r1, asm.Word),
	)
	p = append(p, lookupAt(ports, stL4)...)
	p = append(p, count("copy", portTxPackets, portTxBytes, 0)...)
	p = append(p, asm.LoadMem(r1, r7, 0, asm.DWord).WithSymbol("copy"))
	for w := int16(0); w < valActSize; w += 8 {
		if w > 0 {
			p = append(p, asm.LoadMem(r1, r7, w, asm.DWord))
		}
		p = append(p, asm.StoreMem(r8, hoAction+w, r1, asm.DWord))
	}
	p = append(p,
		asm.LoadMem(r1, fp, stIP, asm.DWord),
		asm.StoreMem(r8, hoIP, r1, asm.DWord),
		asm.LoadMem(r1, fp, stIP+8, asm.DWord),
		asm.StoreMem(r8, hoIP+8, r1, asm.DWord),
		asm.LoadMem(r1, fp, stIP+16, asm.Word),
		asm.StoreMem(r8, hoIP+16, r1, asm.Word),
		asm.LoadMem(r1, fp, stKey+keyTpSrc, asm.Word),
		asm.StoreMem(r8, hoPorts, r1, asm.Word),
		asm.LoadMem(r1, fp, stIP+4, asm.Word),
		asm.StoreMem(r8, hoTag, r1, asm.Word),
		asm.LoadMem(r1, fp, stIP+8, asm.Word),
		asm.StoreMem(r8, hoTag+4, r1, asm.Word),
		asm.LoadMem(r1, r6, skbLen, asm.Word),
		asm.StoreMem(r8, hoLen, r1, asm.Word),
		asm.LoadMem(r1, r6, skbIfindex, asm.Word),
		asm.StoreMem(r8, hoIfindex, r1, asm.Word), // last: makes the hand-over valid
		asm.Mov.Imm(r0, 0),
		asm.Return(),
	)
	p = append(p,
		asm.Mov.Imm32(r0, -1).WithSymbol("accept"), // the whole frame
		asm.Return(),
	)
	return p
}

// Stack layout of the forwarder.
const (
	stTag = -16 // 8 bytes
	stHdr = -72 // the 50 bytes pushed by encapsulation
)

// Layout of the encapsulation pushed after the outer Ethernet header.
const (
	encIP       = 0  // outer IPv4 header
	encUDP      = 20 // UDP header
	encVXLAN    = 28 // VXLAN header
	encInnerEth = 36 // the frame's own Ethernet header
	encLen      = packet.VXLANEncapLen
	// vxlanFlagVNI is the VXLAN header's flag that says a VNI follows.
	vxlanFlagVNI = 0x08
)

// adjust_room flags: room after the MAC header for an IPv4/UDP tunnel
// carrying an Ethernet frame (BPF_F_ADJ_ROOM_ENCAP_L3_IPV4,
// _ENCAP_L4_UDP, _ENCAP_L2_ETH and _ENCAP_L2(14)).
const (
	adjRoomMAC   = 1
	adjRoomEncap = 1<<1 | 1<<4 | 1<<6 | ethLen<<56
)

// encapsulate, entered at label with the handed-over flow in R8 and the
// frame rewritten, puts the frame in VXLAN as the agent's VXLAN port
// does (no DF, the flow's outer TOS and TTL, to the peer's VXLAN port) and
// sends it to the underlay's next hop, whose address the kernel resolves
// (bpf_redirect_neigh).
func encapsulate(label string) asm.Instructions {
	r0, r1, r2, r3, r4, r5, r6, r8, fp := asm.R0, asm.R1, asm.R2, asm.R3, asm.R4, asm.R5, asm.R6, asm.R8, asm.RFP
	copyHo := func(from, to int16, size asm.Size) asm.Instructions {
		return asm.Instructions{asm.LoadMem(r1, r8, hoAction+from, size), asm.StoreMem(fp, stHdr+to, r1, size)}
	}
	p := skbBytes(asm.FnSkbLoadBytes, 0, fp, stHdr+encInnerEth, ethLen, "drop")
	p[0] = p[0].WithSymbol(label)
	p = append(p,
		// The source port: the inner flow's hash in 49152-65535, as
		// RFC 7348 suggests; never the VXLAN port's own, from which the
		// agent sends (see decapsulator).
		asm.Mov.Reg(r1, r6),
		asm.FnGetHashRecalc.Call(),
		asm.And.Imm(r0, 0x3fff),
		asm.Or.Imm(r0, 0xc000),
		asm.HostTo(asm.BE, r0, asm.Half),
		asm.StoreMem(fp, stHdr+encUDP, r0, asm.Half),
		asm.Mov.Reg(r1, r6),
		asm.Mov.Imm(r2, encLen),
		asm.Mov.Imm(r3, adjRoomMAC),
		asm.LoadImm(r4, adjRoomEncap, asm.DWord),
		asm.FnSkbAdjustRoom.Call(),
		asm.JNE.Imm(r0, 0, "drop"),
		asm.FnGetPrandomU32.Call(),
		asm.StoreMem(fp, stHdr+encIP+4, r0, asm.Half), // identification
		asm.StoreImm(fp, stHdr+encIP, 0x45, asm.Byte),
		asm.StoreImm(fp, stHdr+encIP+6, 0, asm.Half), // no DF, not a fragment
		asm.StoreImm(fp, stHdr+encIP+9, int64(udp), asm.Byte),
		asm.StoreImm(fp, stHdr+encIP+10, 0, asm.Half),
		// Lengths from the grown frame.
		asm.LoadMem(r1, r6, skbLen, asm.Word),
		asm.Sub.Imm(r1, ethLen),
		asm.Mov.Reg(r2, r1),
		asm.HostTo(asm.BE, r1, asm.Half),
		asm.StoreMem(fp, stHdr+encIP+2, r1, asm.Half),
		asm.Sub.Imm(r2, packet.IPv4MinHeaderLen),
		asm.HostTo(asm.BE, r2, asm.Half),
		asm.StoreMem(fp, stHdr+encUDP+4, r2, asm.Half),
		asm.StoreImm(fp, stHdr+encUDP+6, 0, asm.Half), // no UDP checksum, as IPv4 VXLAN allows
		asm.StoreImm(fp, stHdr+encVXLAN, vxlanFlagVNI, asm.Word),
	)
	p = append(p, copyHo(valTunTOS, encIP+1, asm.Byte)...)
	p = append(p, copyHo(valTunTTL, encIP+8, asm.Byte)...)
	p = append(p, copyHo(valTunSrc, encIP+12, asm.Word)...)
	p = append(p, copyHo(valTunDst, encIP+16, asm.Word)...)
	p = append(p, copyHo(valTunDport, encUDP+2, asm.Half)...)
	p = append(p, copyHo(valVNI, encVXLAN+4, asm.Word)...)
	p = append(p,
		// The outer header's checksum: the sum folded to 16 bits.
		asm.Mov.Imm(r1, 0),
		asm.Mov.Imm(r2, 0),
		asm.Mov.Reg(r3, fp),
		asm.Add.Imm(r3, stHdr+encIP),
		asm.Mov.Imm(r4, packet.IPv4MinHeaderLen),
		asm.Mov.Imm(r5, 0),
		asm.FnCsumDiff.Call(),
		asm.Mov.Reg(r1, r0),
		asm.RSh.Imm(r1, 16),
		asm.And.Imm(r0, 0xffff),
		asm.Add.Reg(r0, r1),
		asm.Mov.Reg(r1, r0),
		asm.RSh.Imm(r1, 16),
		asm.Add.Reg(r0, r1),
		asm.Xor.Imm(r0, 0xffff),
		asm.StoreMem(fp, stHdr+encIP+10, r0, asm.Half),
	)
	p = append(p, skbBytes(asm.FnSkbStoreBytes, ethLen, fp, stHdr, encLen, "drop")...)
	return append(p,
		asm.LoadMem(r1, r8, hoAction+valOutIf, asm.Word),
		asm.Mov.Imm(r2, 0),
		asm.Mov.Imm(r3, 0),
		asm.Mov.Imm(r4, 0),
		asm.FnRedirectNeigh.Call(),
		asm.Return(),
	)
}

// forwarder builds the tc ingress program of each port. It forwards the
// frames the classifier kept from the socket: applies the flow's rewrites,
// fixing checksums with the kernel's helpers (which know about checksums
// left to offload), and redirects to the output interface, or drops for a
// flow without output. Every other frame goes on as without the program.
func forwarder(handover int) asm.Instructions {
	r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, fp := asm.R0, asm.R1, asm.R2, asm.R3, asm.R4, asm.R5, asm.R6, asm.R7, asm.R8, asm.R9, asm.RFP
	p := prologue(handover, "next")
	p = append(p,
		asm.LoadMem(r1, r8, hoIfindex, asm.Word),
		asm.JEq.Imm(r1, 0, "next"),
		asm.LoadMem(r2, r6, skbIfindex, asm.Word),
		asm.JNE.Reg(r1, r2, "stale"),
		asm.LoadMem(r1, r8, hoLen, asm.Word),
		asm.LoadMem(r2, r6, skbLen, asm.Word),
		asm.JNE.Reg(r1, r2, "stale"),
	)
	p = append(p, skbBytes(asm.FnSkbLoadBytes, ipOff+4, fp, stTag, 8, "stale")...)
	p = append(p,
		asm.LoadMem(r1, fp, stTag, asm.DWord),
		asm.LoadMem(r2, r8, hoTag, asm.DWord),
		asm.JNE.Reg(r1, r2, "stale"),
		// The frame is the one classified: from here it is ours.
		asm.StoreImm(r8, hoIfindex, 0, asm.Word),
		asm.LoadMem(r1, r8, hoAction+valOutIf, asm.Word),
		asm.JEq.Imm(r1, 0, "drop"),
		asm.LoadMem(r7, r8, hoAction+valFlags, asm.Word),
		asm.LoadMem(r9, r8, hoIP+9, asm.Byte), // protocol
	)
	store := func(off int32, from int16, n int32) asm.Instructions {
		return skbBytes(asm.FnSkbStoreBytes, off, r8, from, n, "drop")
	}
	// Each rewrite: if the bit is clear, jump over it.
	rewrite := func(bit int32, name string, body asm.Instructions) asm.Instructions {
		out := asm.Instructions{
			asm.Mov.Reg(r0, r7),
			asm.And.Imm(r0, bit),
			asm.JEq.Imm(r0, 0, "end_"+name),
		}
		out = append(out, body...)
		return append(out, asm.Mov.Reg(r0, r0).WithSymbol("end_"+name))
	}
	csum := func(fn asm.BuiltinFunc, off int32, oldOff, newOff int16, size asm.Size, flags int32) asm.Instructions {
		return asm.Instructions{
			asm.Mov.Reg(r1, r6),
			asm.Mov.Imm(r2, off),
			asm.LoadMem(r3, r8, oldOff, size),
			asm.LoadMem(r4, r8, newOff, size),
			asm.Mov.Imm(r5, flags|int32(size.Sizeof())),
			fn.Call(),
			asm.JNE.Imm(r0, 0, "drop"),
		}
	}
	// An address change also changes the TCP or UDP pseudo-header sum.
	addr := func(name string, oldOff, newOff int16, frameOff int32) asm.Instructions {
		var b asm.Instructions
		b = append(b, asm.JNE.Imm(r9, tcp, "udp_"+name))
		b = append(b, csum(asm.FnL4CsumReplace, tcpCsumOff, oldOff, newOff, asm.Word, bpfPseudoHdr)...)
		b = append(b, asm.Ja.Label("l3_"+name))
		b = append(b, asm.JNE.Imm(r9, udp, "l3_"+name).WithSymbol("udp_"+name))
		b = append(b, csum(asm.FnL4CsumReplace, udpCsumOff, oldOff, newOff, asm.Word, bpfPseudoHdr|bpfMarkMangled0)...)
		l3 := csum(asm.FnL3CsumReplace, ipCsumOff, oldOff, newOff, asm.Word, 0)
		l3[0] = l3[0].WithSymbol("l3_" + name)
		b = append(b, l3...)
		return append(b, store(frameOff, newOff, 4)...)
	}
	port := func(name string, oldOff, newOff int16, frameOff int32) asm.Instructions {
		var b asm.Instructions
		b = append(b, asm.JNE.Imm(r9, tcp, "udp_"+name))
		b = append(b, csum(asm.FnL4CsumReplace, tcpCsumOff, oldOff, newOff, asm.Half, 0)...)
		b = append(b, asm.Ja.Label("set_"+name))
		b = append(b, asm.JNE.Imm(r9, udp, "drop").WithSymbol("udp_"+name))
		b = append(b, csum(asm.FnL4CsumReplace, udpCsumOff, oldOff, newOff, asm.Half, bpfMarkMangled0)...)
		s := store(frameOff, newOff, 2)
		s[0] = s[0].WithSymbol("set_" + name)
		return append(b, s...)
	}
	// A one-byte field shares its checksum word with a neighbour: build
	// the new word in the hand-over's scratch and replace the old one.
	word := func(wordOff int16, byteOff int16, low bool, frameOff int32) asm.Instructions {
		b := asm.Instructions{
			asm.LoadMem(r1, r8, hoIP+wordOff, asm.Half),
			asm.LoadMem(r2, r8, byteOff, asm.Byte),
		}
		if low { // the byte is the word's first on the wire
			b = append(b, asm.And.Imm(r1, 0xff00), asm.Or.Reg(r1, r2))
		} else {
			b = append(b, asm.And.Imm(r1, 0x00ff), asm.LSh.Imm(r2, 8), asm.Or.Reg(r1, r2))
		}
		b = append(b,
			asm.StoreMem(fp, stTag, r1, asm.Half),
			asm.Mov.Reg(r1, r6),
			asm.Mov.Imm(r2, ipCsumOff),
			asm.LoadMem(r3, r8, hoIP+wordOff, asm.Half),
			asm.LoadMem(r4, fp, stTag, asm.Half),
			asm.Mov.Imm(r5, 2),
			asm.FnL3CsumReplace.Call(),
			asm.JNE.Imm(r0, 0, "drop"),
		)
		return append(b, store(frameOff, byteOff, 1)...)
	}
	p = append(p, rewrite(actEthDst, "ethdst", store(0, hoAction+valEthDst, 6))...)
	p = append(p, rewrite(actEthSrc, "ethsrc", store(6, hoAction+valEthSrc, 6))...)
	p = append(p, rewrite(actNwSrc, "nwsrc", addr("nwsrc", hoIP+12, hoAction+valNwSrc, ipSrcOff))...)
	p = append(p, rewrite(actNwDst, "nwdst", addr("nwdst", hoIP+16, hoAction+valNwDst, ipDstOff))...)
	p = append(p, rewrite(actTOS, "tos", word(0, hoAction+valTOS, false, ipOff+1))...)
	p = append(p, rewrite(actTTL, "ttl", word(8, hoAction+valTTL, true, ipOff+8))...)
	p = append(p, rewrite(actTpSrc, "tpsrc", port("tpsrc", hoPorts, hoAction+valTpSrc, l4Off))...)
	p = append(p, rewrite(actTpDst, "tpdst", port("tpdst", hoPorts+2, hoAction+valTpDst, l4Off+2))...)
	p = append(p,
		asm.JSet.Imm(r7, actTunnel, "encap"),
		asm.LoadMem(r1, r8, hoAction+valOutIf, asm.Word),
		asm.Mov.Imm(r2, 0),
		asm.FnRedirect.Call(),
		asm.Return(),
	)
	p = append(p, encapsulate("encap")...)
	p = append(p,
		asm.Mov.Imm(r0, tcxDrop).WithSymbol("drop"),
		asm.Return(),
		asm.StoreImm(r8, hoIfindex, 0, asm.Word).WithSymbol("stale"),
		asm.Mov.Imm(r0, tcxNext).WithSymbol("next"),
		asm.Return(),
	)
	return p
}

// Decapsulation table (by VNI): where a tunnel key's frames go, and the
// flow's counters, laid out as a flow value's (the TCP flags stay zero).
const (
	decOutIf    = 0 // u32, native
	decPackets  = 8
	decBytes    = 16
	decUsed     = 24
	decTCPFlags = 32
	decSize     = 40
)

// Stack layout of the decapsulator.
const (
	// The first 64 bytes: outer headers and the inner Ethernet header, placed
	// so that the outer IPv4 addresses are 4-byte aligned (the verifier
	// wants aligned stack access).
	stFrame   = -74
	stIfindex = -80 // u32: an ifindex to look up
)

// decapsulator builds the tc ingress program of the underlay interface
// that carries a VXLAN port bound to local:udpPort (raw: the address and
// port as the wire has them, read natively). A VXLAN frame to that port
// whose tunnel key the table holds leaves the tunnel and goes out of the
// key's interface, as the agent's tunnel flows (tunnel key → output) send
// it, if a peer's kernel sent it (any source port but the VXLAN port's);
// anything else (what peers' agents send: flow-state messages and the
// packets they precede; unknown keys, GSO batches, IP options, fragments)
// goes on to the port's socket.
func decapsulator(decap, counters, ports int, local uint32, udpPort uint16) asm.Instructions {
	r0, r1, r2, r3, r4, r6, r7, fp := asm.R0, asm.R1, asm.R2, asm.R3, asm.R4, asm.R6, asm.R7, asm.RFP
	ld := func(off int16, size asm.Size) asm.Instruction { return asm.LoadMem(r1, fp, stFrame+off, size) }
	p := asm.Instructions{
		asm.Mov.Reg(r6, r1),
		asm.StoreImm(fp, stZero, 0, asm.Word),
		asm.LoadMem(r1, r6, skbLen, asm.Word),
		asm.JLT.Imm(r1, ethLen+encLen, "next"),
		asm.LoadMem(r1, r6, skbGSOSize, asm.Word),
		asm.JNE.Imm(r1, 0, "next"),
		asm.LoadMem(r1, r6, skbVLANPresent, asm.Word),
		asm.JNE.Imm(r1, 0, "next"),
	}
	p = append(p, skbBytes(asm.FnSkbLoadBytes, 0, fp, stFrame, ethLen+encLen, "next")...)
	p = append(p,
		ld(12, asm.Half), asm.JNE.Imm(r1, 0x0008, "next"), // IPv4
		ld(ethLen, asm.Byte), asm.JNE.Imm(r1, 0x45, "next"), // no options
		ld(ethLen+6, asm.Half), asm.And.Imm(r1, 0xff3f), asm.JNE.Imm(r1, 0, "next"), // not a fragment
		ld(ethLen+9, asm.Byte), asm.JNE.Imm(r1, udp, "next"),
		ld(ethLen+encUDP+2, asm.Half), asm.JNE.Imm(r1, int32(udpPort), "next"),
		// From a peer's VXLAN port itself: the agent sent it, maybe right
		// after the flow state its reply needs, which must be imported
		// first; both take the socket, in order.
		ld(ethLen+encUDP, asm.Half), asm.JEq.Imm(r1, int32(udpPort), "next"),
	)
	if local != 0 { // the port's own address
		p = append(p, ld(ethLen+16, asm.Word), asm.JNE.Imm32(r1, int32(local), "next"))
	}
	p = append(p, ld(ethLen+encVXLAN, asm.Byte), asm.And.Imm(r1, vxlanFlagVNI), asm.JEq.Imm(r1, 0, "next"))
	// The key: the VXLAN header's second word (the VNI, then a reserved
	// zero byte), as the frame has it.
	p = append(p, lookupAt(decap, stFrame+ethLen+encVXLAN+4)...)
	p = append(p,
		asm.JEq.Imm(r0, 0, "next"),
		asm.Mov.Reg(r7, r0),
		asm.Mov.Imm(r1, 1),
		asm.AddAtomic.Mem(r7, r1, asm.DWord, decPackets),
		asm.LoadMem(r1, r6, skbLen, asm.Word),
		asm.Sub.Imm(r1, encLen),
		asm.AddAtomic.Mem(r7, r1, asm.DWord, decBytes),
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(r7, decUsed, r0, asm.DWord),
	)
	p = append(p, lookupAt(counters, stZero)...)
	p = append(p, count("rx", ctrPackets, ctrBytes, -encLen)...)
	p = append(p, asm.LoadMem(r1, r6, skbIfindex, asm.Word).WithSymbol("rx"), asm.StoreMem(fp, stIfindex, r1, asm.Word))
	p = append(p, lookupAt(ports, stIfindex)...)
	p = append(p, count("tx", portRxPackets, portRxBytes, 0)...)
	p = append(p, asm.LoadMem(r1, r7, decOutIf, asm.Word).WithSymbol("tx"), asm.StoreMem(fp, stIfindex, r1, asm.Word))
	p = append(p, lookupAt(ports, stIfindex)...)
	p = append(p, count("decap", portTxPackets, portTxBytes, -encLen)...)
	p = append(p,
		asm.Mov.Reg(r1, r6).WithSymbol("decap"),
		asm.Mov.Imm(r2, -encLen),
		asm.Mov.Imm(r3, adjRoomMAC),
		asm.Mov.Imm(r4, 0),
		asm.FnSkbAdjustRoom.Call(),
		asm.JNE.Imm(r0, 0, "drop"),
	)
	p = append(p, skbBytes(asm.FnSkbStoreBytes, 0, fp, stFrame+ethLen+encInnerEth, ethLen, "drop")...)
	return append(p,
		asm.LoadMem(r1, r7, decOutIf, asm.Word),
		asm.Mov.Imm(r2, 0),
		asm.FnRedirect.Call(),
		asm.Return(),
		asm.Mov.Imm(r0, tcxDrop).WithSymbol("drop"),
		asm.Return(),
		asm.Mov.Imm(r0, tcxNext).WithSymbol("next"),
		asm.Return(),
	)
}
