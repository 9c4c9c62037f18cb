package engine

import (
	"encoding/binary"
	"testing"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
)

// checksumsValid reports whether f's IPv4 header checksum and, for an
// unfragmented TCP or UDP datagram that fits the frame, its L4 checksum
// verify. ok is false when f is not such a frame.
func checksumsValid(f []byte) (ipOK, l4OK, ok bool) {
	ip, l4 := packet.IPv4Headers(f)
	if ip == nil {
		return false, false, false
	}
	ihl := ip.HeaderLen()
	ipOK = packet.Checksum(ip[:ihl], 0) == 0
	tot := int(binary.BigEndian.Uint16(ip[2:]))
	frag := binary.BigEndian.Uint16(ip[6:])&0x3fff != 0
	if l4 == nil || frag || tot > len(ip) || tot < ihl {
		return ipOK, true, true
	}
	l4 = l4[:tot-ihl]
	switch ip[9] {
	case 6:
		if len(l4) < 20 {
			return ipOK, true, true
		}
	case 17:
		if len(l4) < 8 || binary.BigEndian.Uint16(l4[6:]) == 0 {
			return ipOK, true, true
		}
	default:
		return ipOK, true, true
	}
	sum := packet.PseudoHeaderSum4([4]byte(ip[12:16]), [4]byte(ip[16:20]), ip[9], uint16(len(l4)))
	return ipOK, packet.Checksum(l4, sum) == 0, true
}

// actionsFrom builds an action list from fuzz bytes.
func actionsFrom(b []byte, out datapath.PortNo) []datapath.Action {
	var acts []datapath.Action
	for len(b) >= 5 {
		v := [4]byte(b[1:5])
		p16 := binary.BigEndian.Uint16(b[1:])
		switch b[0] % 8 {
		case 0:
			acts = append(acts, datapath.SetIPv4(datapath.IPv4Set{Src: v, Dst: v, TOS: b[1], TTL: b[2], Fields: b[3]}))
		case 1:
			acts = append(acts, datapath.SetTCP(datapath.L4Set{Src: p16, Dst: ^p16, Fields: b[3]}))
		case 2:
			acts = append(acts, datapath.SetUDP(datapath.L4Set{Src: p16, Dst: ^p16, Fields: b[3]}))
		case 3:
			acts = append(acts, datapath.PushVLAN(p16))
		case 4:
			acts = append(acts, datapath.PopVLAN())
		case 5:
			acts = append(acts, datapath.SetEthernet(datapath.EthernetSet{Src: [6]byte{b[1], b[2], b[3], b[4], b[0], 2}, Fields: b[3]}))
		case 6:
			acts = append(acts, datapath.Userspace(uint64(p16)))
		case 7:
			acts = append(acts, datapath.Output(out))
		}
		b = b[5:]
	}
	return append(acts, datapath.Output(out))
}

// FuzzExecute runs arbitrary frames through arbitrary action lists: nothing
// may panic, and checksums that were valid stay valid.
func FuzzExecute(f *testing.F) {
	for _, l4 := range []string{"tcp", "udp", "icmp"} {
		fr := frame(f, l4)
		f.Add(fr, []byte{0, 10, 1, 2, 0xff, 1, 0, 80, 3, 0})    // NAT both ways
		f.Add(fr, []byte{3, 0x20, 0x64, 0, 0, 4, 0, 0, 0, 0})   // push, pop
		f.Add(fr[:20], []byte{0, 1, 2, 3, 0xff})                // truncated IPv4
		f.Add(fr, []byte{2, 0, 9, 1, 0, 0, 9, 9, 9, 0x0f})      // UDP ports then IPv4
		f.Add(append(fr[:14:14], 0x46), []byte{0, 1, 2, 3, 15}) // bad IHL
	}
	f.Fuzz(func(t *testing.T, fr, prog []byte) {
		if len(fr) > 4096 || len(prog) > 200 {
			return
		}
		c := &capture{}
		e := New(Config{UpcallQueueLen: 4})
		defer e.Close()
		in, _ := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "in"}, &capture{})
		out, _ := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "out"}, c)
		w := e.NewWorker()
		defer w.Close()
		key := packet.FlowKey{InPort: uint32(in.No)}
		mask := packet.FlowKey{InPort: ^uint32(0)}
		if err := e.PutFlow(&key, &mask, actionsFrom(prog, out.No), 0); err != nil {
			t.Fatal(err)
		}
		ipOK, l4OK, isIP := checksumsValid(fr)
		w.Begin()
		w.Receive(in, fr, nil)
		w.Flush()
		for _, o := range c.frames {
			gotIP, gotL4, ok := checksumsValid(o)
			if !isIP || !ok {
				continue
			}
			if ipOK && !gotIP {
				t.Fatalf("IPv4 header checksum broken:\n in  %x\n out %x", fr, o)
			}
			if ipOK && l4OK && !gotL4 {
				t.Fatalf("L4 checksum broken:\n in  %x\n out %x", fr, o)
			}
		}
	})
}

// FuzzOffload feeds arbitrary frames with arbitrary offload metadata, as a
// buggy or hostile sender's virtio_net_hdr could carry: nothing may panic.
func FuzzOffload(f *testing.F) {
	fr := frame(f, "tcp")
	f.Add(fr, true, uint16(34), uint16(16), uint8(GSOTCPv4), uint16(8), true)
	f.Add(fr, true, uint16(60000), uint16(60000), uint8(GSONone), uint16(0), false)
	f.Add(fr[:40], false, uint16(0), uint16(0), uint8(GSOTCPv4), uint16(1), true)
	f.Add(fr, true, uint16(34), uint16(6), uint8(GSOUDP), uint16(100), false)
	f.Fuzz(func(t *testing.T, fr []byte, csum bool, start, off uint16, gso uint8, size uint16, push bool) {
		if len(fr) > 9000 {
			return
		}
		e := New(Config{UpcallQueueLen: 4})
		defer e.Close()
		in, _ := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "in"}, &capture{})
		plain, _ := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "plain"}, &capture{})
		ofp, _ := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "ofl"}, &offloadCapture{})
		key := packet.FlowKey{InPort: uint32(in.No)}
		mask := packet.FlowKey{InPort: ^uint32(0)}
		acts := []datapath.Action{datapath.SetIPv4(datapath.IPv4Set{Src: [4]byte{1, 2, 3, 4}, Fields: datapath.SetSrc})}
		if push {
			acts = append(acts, datapath.PushVLAN(3))
		}
		acts = append(acts, datapath.Output(ofp.No), datapath.Output(plain.No), datapath.Userspace(1))
		e.PutFlow(&key, &mask, acts, 0)
		w := e.NewWorker()
		defer w.Close()
		o := Offload{NeedsCsum: csum, CsumStart: start, CsumOffset: off, GSOType: gso, GSOSize: size}
		w.Begin()
		w.ReceiveOffload(in, fr, nil, &o)
		w.Flush()
	})
}
