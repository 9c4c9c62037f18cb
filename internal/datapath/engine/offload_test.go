package engine

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
)

// offloadCapture is a port that accepts pending offload work; it records
// the offload along with the frame.
type offloadCapture struct {
	capture
	offs []Offload
}

func (c *offloadCapture) TransmitOffload(frame []byte, tun *datapath.TunnelSet, o *Offload) error {
	c.offs = append(c.offs, *o)
	return c.Transmit(frame, tun)
}

// partialTCP returns a TCP frame as a sender with checksum offload leaves
// it: the checksum field holds the folded pseudo-header sum.
func partialTCP(t *testing.T) ([]byte, Offload) {
	f := frame(t, "tcp")
	ip := f[14:]
	l4len := int(binary.BigEndian.Uint16(ip[2:])) - 20
	sum := packet.PseudoHeaderSum4([4]byte(ip[12:16]), [4]byte(ip[16:20]), 6, uint16(l4len))
	binary.BigEndian.PutUint16(f[14+20+16:], uint16(sum))
	return f, Offload{NeedsCsum: true, CsumStart: 34, CsumOffset: 16}
}

func TestPendingChecksumFollowsRewrites(t *testing.T) {
	e := New(Config{})
	t.Cleanup(e.Close)
	in, _ := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "in"}, &capture{})
	plain := &capture{}
	pp, _ := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "plain"}, plain)
	ocap := &offloadCapture{}
	op, _ := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "offload"}, ocap)
	w := e.NewWorker()
	t.Cleanup(w.Close)
	key := packet.FlowKey{InPort: uint32(in.No)}
	mask := packet.FlowKey{InPort: ^uint32(0)}
	e.PutFlow(&key, &mask, []datapath.Action{
		datapath.SetIPv4(datapath.IPv4Set{Src: [4]byte{192, 0, 2, 7}, Dst: [4]byte{198, 51, 100, 1}, Fields: datapath.SetSrc | datapath.SetDst}),
		datapath.SetTCP(datapath.L4Set{Src: 1, Dst: 2, Fields: datapath.SetSrc | datapath.SetDst}),
		datapath.PushVLAN(9),
		datapath.Output(op.No),
		datapath.Output(pp.No),
	}, 0)
	f, o := partialTCP(t)
	w.Begin()
	w.ReceiveOffload(in, f, nil, &o)
	w.Flush()

	// The offload port got the partial checksum with offsets moved by the
	// tag; finishing it as the kernel would must give a valid segment.
	if len(ocap.offs) != 1 {
		t.Fatalf("offload port got %d frames", len(ocap.offs))
	}
	got := ocap.offs[0]
	if !got.NeedsCsum || got.CsumStart != 38 || got.CsumOffset != 16 {
		t.Fatalf("offload %+v, want a pending checksum at 38+16", got)
	}
	fin := append([]byte(nil), ocap.frames[0]...)
	if !finishChecksum(fin, &got) {
		t.Fatal("offsets do not fit the frame")
	}
	checkChecksums(t, fin)
	// The plain port got the checksum finished in software.
	checkChecksums(t, plain.last(t))
	if o.CsumStart != 34 {
		t.Errorf("the caller's Offload was modified: %+v", o)
	}
}

// gsoTCP builds a TCP/IPv4 super-frame with payload bytes of payload as a
// sender with TSO leaves it: partial checksum, GSO metadata for mss.
func gsoTCP(t testing.TB, payload []byte, mss uint16) ([]byte, Offload) {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 100, Protocol: layers.IPProtocolTCP, SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 1000, Ack: 5, ACK: true, PSH: true, Window: 500}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, tcp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	f := buf.Bytes()
	sum := packet.PseudoHeaderSum4([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 6, uint16(20+len(payload)))
	binary.BigEndian.PutUint16(f[14+20+16:], uint16(sum))
	return f, Offload{NeedsCsum: true, CsumStart: 34, CsumOffset: 16, GSOType: GSOTCPv4, GSOSize: mss, HdrLen: 54}
}

func TestGSOFrameIsSegmentedForPlainPort(t *testing.T) {
	e := New(Config{})
	t.Cleanup(e.Close)
	in, _ := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "in"}, &capture{})
	plain := &capture{}
	pp, _ := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "plain"}, plain)
	w := e.NewWorker()
	t.Cleanup(w.Close)
	key := packet.FlowKey{InPort: uint32(in.No)}
	mask := packet.FlowKey{InPort: ^uint32(0)}
	e.PutFlow(&key, &mask, []datapath.Action{
		datapath.SetIPv4(datapath.IPv4Set{Src: [4]byte{192, 0, 2, 1}, Fields: datapath.SetSrc}),
		datapath.Output(pp.No),
	}, 0)
	payload := make([]byte, 3500)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	f, o := gsoTCP(t, payload, 1000)
	w.Begin()
	w.ReceiveOffload(in, f, nil, &o)
	w.Flush()
	if len(plain.frames) != 4 {
		t.Fatalf("got %d segments, want 4", len(plain.frames))
	}
	var joined []byte
	for i, seg := range plain.frames {
		p := checkChecksums(t, seg)
		ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ip.SrcIP.Equal(net.IP{192, 0, 2, 1}) || ip.Id != uint16(100+i) {
			t.Errorf("segment %d: src %v id %d", i, ip.SrcIP, ip.Id)
		}
		if tcp.Seq != uint32(1000+1000*i) || tcp.PSH != (i == 3) || !tcp.ACK {
			t.Errorf("segment %d: seq %d psh %v ack %v", i, tcp.Seq, tcp.PSH, tcp.ACK)
		}
		joined = append(joined, tcp.Payload...)
	}
	if !bytes.Equal(joined, payload) {
		t.Error("the segments' payloads do not add up to the super-frame's")
	}
	if st := pp.Stats(); st.TxPackets != 4 || st.TxDropped != 0 {
		t.Errorf("port stats %+v, want 4 sent, none dropped", st)
	}
}

func TestUpcallOfPartialChecksumIsFinished(t *testing.T) {
	e := New(Config{})
	t.Cleanup(e.Close)
	in, _ := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "in"}, &capture{})
	rec := newRecorder()
	e.SetUpcallHandler(rec)
	w := e.NewWorker()
	t.Cleanup(w.Close)
	f, o := partialTCP(t)
	w.ReceiveOffload(in, f, nil, &o)
	u := rec.wait(t, 1)[0]
	checkChecksums(t, u.Packet)
}
