package packet_test

import (
	"fmt"

	"github.com/midonet/midonet/internal/packet"
)

func ExampleParsed_Decode() {
	frame := packet.AppendIPv4UDP(nil, packet.UDP4Fields{
		EthSrc: [6]byte{2, 0, 0, 0, 0, 1}, EthDst: [6]byte{2, 0, 0, 0, 0, 2},
		Src: [4]byte{10, 0, 0, 1}, Dst: [4]byte{10, 0, 0, 2},
		SrcPort: 33000, DstPort: 53, Checksum: true,
	}, []byte("query"))

	var p packet.Parsed
	p.Decode(frame)
	fmt.Println(p.Layer, p.Src, p.Dst, p.SrcPort, p.DstPort, string(p.Payload()))

	// Source NAT in place; both checksums are patched incrementally.
	p.SetIPv4Src([4]byte{192, 0, 2, 7})
	p.SetSrcPort(61000)
	p.DecTTL()

	var key packet.FlowKey
	packet.ExtractFlowKey(frame, 1, &key)
	fmt.Println(key.NwSrc, key.TpSrc, key.NwTTL, p.IPv4().IsChecksumValid())
	// Output:
	// L4 10.0.0.1 10.0.0.2 33000 53 query
	// [192 0 2 7] 61000 63 true
}
