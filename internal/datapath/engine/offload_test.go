package engine

import (
	"encoding/binary"
	"testing"

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

func TestGSOFrameToPlainPortIsDropped(t *testing.T) {
	e := New(Config{})
	t.Cleanup(e.Close)
	in, _ := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "in"}, &capture{})
	plain := &capture{}
	pp, _ := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "plain"}, plain)
	w := e.NewWorker()
	t.Cleanup(w.Close)
	key := packet.FlowKey{InPort: uint32(in.No)}
	mask := packet.FlowKey{InPort: ^uint32(0)}
	e.PutFlow(&key, &mask, []datapath.Action{datapath.Output(pp.No)}, 0)
	f, o := partialTCP(t)
	o.GSOType, o.GSOSize, o.HdrLen = GSOTCPv4, 1448, 54
	w.Begin()
	w.ReceiveOffload(in, f, nil, &o)
	w.Flush()
	if len(plain.frames) != 0 {
		t.Fatal("a GSO super-frame went to a port that cannot segment")
	}
	if pp.Stats().TxDropped != 1 {
		t.Errorf("TxDropped = %d, want 1", pp.Stats().TxDropped)
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
