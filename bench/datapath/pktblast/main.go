// Command pktblast sends small UDP frames out of an interface as fast as it
// can, through an AF_PACKET transmit ring, for packet-rate benchmarks (see
// ../run.sh). It prints the number of frames it queued and the rate.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	frameSize = 2048
	frames    = 1024
	dataOff   = (unix.SizeofTpacket2Hdr + 15) &^ 15
)

func main() {
	iface := flag.String("i", "", "interface to send on")
	dstMAC := flag.String("dst-mac", "", "destination MAC")
	src := flag.String("src", "10.9.0.1", "source IPv4 address")
	dst := flag.String("dst", "10.9.0.2", "destination IPv4 address")
	size := flag.Int("size", 60, "frame size without FCS (60 = a 64-byte packet on the wire)")
	flows := flag.Int("flows", 1, "distinct UDP source ports to cycle through")
	dur := flag.Duration("d", 5*time.Second, "how long to send")
	flag.Parse()
	if err := run(*iface, *dstMAC, *src, *dst, *size, *flows, *dur); err != nil {
		fmt.Fprintln(os.Stderr, "pktblast:", err)
		os.Exit(1)
	}
}

func run(iface, dstMAC, src, dst string, size, flows int, dur time.Duration) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return err
	}
	dmac, err := net.ParseMAC(dstMAC)
	if err != nil {
		return fmt.Errorf("-dst-mac: %w", err)
	}
	if size < 42 || size > frameSize-dataOff {
		return fmt.Errorf("-size %d out of range", size)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2); err != nil {
		return err
	}
	unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
	req := unix.TpacketReq{Block_size: 1 << 16, Block_nr: frames * frameSize / (1 << 16), Frame_size: frameSize, Frame_nr: frames}
	if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_TX_RING, &req); err != nil {
		return err
	}
	ring, err := unix.Mmap(fd, 0, frames*frameSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index}); err != nil {
		return err
	}
	tmpl := udpFrame(ifi.HardwareAddr, dmac, net.ParseIP(src).To4(), net.ParseIP(dst).To4(), size)
	for i := range frames {
		slot := ring[i*frameSize:]
		copy(slot[dataOff:], tmpl)
		binary.BigEndian.PutUint16(slot[dataOff+34:], uint16(10000+i%flows)) // UDP source port
	}
	var sent uint64
	start := time.Now()
	end := start.Add(dur)
	cur := 0
	for time.Now().Before(end) {
		for range 256 {
			h := (*unix.Tpacket2Hdr)(unsafe.Pointer(&ring[cur*frameSize]))
			if atomic.LoadUint32(&h.Status) != unix.TP_STATUS_AVAILABLE {
				break
			}
			h.Len = uint32(size)
			atomic.StoreUint32(&h.Status, unix.TP_STATUS_SEND_REQUEST)
			cur = (cur + 1) % frames
			sent++
		}
		unix.Sendto(fd, nil, 0, nil)
	}
	el := time.Since(start)
	fmt.Printf("sent %d frames in %v: %.0f pps\n", sent, el.Round(time.Millisecond), float64(sent)/el.Seconds())
	return nil
}

func udpFrame(smac, dmac net.HardwareAddr, src, dst net.IP, size int) []byte {
	f := make([]byte, size)
	copy(f[0:6], dmac)
	copy(f[6:12], smac)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(size-14))
	copy(ip[12:16], src)
	copy(ip[16:20], dst)
	var s uint32
	for i := 0; i < 20; i += 2 {
		s += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(s))
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[2:], 9) // discard
	binary.BigEndian.PutUint16(udp[4:], uint16(size-34))
	return f // UDP checksum 0: none
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
