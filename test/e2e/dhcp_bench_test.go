package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/dhcp"
	"github.com/midonet/midonet/internal/sandbox"
)

// The DHCP figures: transactions answered per second by one agent, and the
// time from a VM's link up to its bound lease. Run them alone:
//
//	go test -run '^$' -bench DHCP -benchtime 20000x ./test/e2e
//
// (bench/dhcp/run.sh does, under the e2e lock).

// loadClients is how many clients the load generator plays, each a MAC
// with a host entry.
const loadClients = 200

// BenchmarkDHCPTransactions is a Go load generator over a real datapath
// port: from a VM namespace on host1, through the VM's veth into host1's
// agent (its userspace datapath's port), it sends DHCP REQUESTs from
// loadClients MACs, up to a window of them outstanding, and reads the
// ACKs; each answer is decoded with gopacket and checked against the
// client's entry (transaction id, chaddr, address, type). A request
// unanswered within 300 ms is sent again, as a client retransmits (a
// request or answer lost in a full socket queue); the run fails on a wrong
// answer or a request unanswered after 5 sends. It reports answers per
// second and the requests sent again.
func BenchmarkDHCPTransactions(b *testing.B) {
	needDHClient(b)
	bridge, hosts := dhcpBridge(b, 9)
	vm := newTestVM(b, 0, bridge, "02:00:0b:00:ff:ff")
	vm.up(b)
	type client struct {
		mac  [6]byte
		addr [4]byte
	}
	clients := make([]client, loadClients)
	for i := range clients {
		c := &clients[i]
		c.mac = [6]byte{0x02, 0, 0x0b, 0, byte(i >> 8), byte(i)}
		c.addr = [4]byte{10, 77, 9, byte(10 + i)}
		api(b, "POST", hosts, map[string]any{"macAddr": net.HardwareAddr(c.mac[:]).String(),
			"ipAddr": netip.AddrFrom4(c.addr).String()})
	}
	// The agent compiles the entries into its snapshot: wait until the
	// last client is answered.
	var fd int
	inNS(b, vm.ns, func() { fd = rawSocket(b, "eth0") })
	defer unix.Close(fd)
	last := clients[len(clients)-1]
	eventually(b, 10*time.Second, "the agent answering the last client", func() bool {
		f := dhcp.AppendRequest4(nil, dhcp.RequestFields{Type: dhcp.Request, XID: 1 << 31, CHAddr: last.mac, RequestedIP: last.addr})
		unix.Write(fd, f)
		buf := make([]byte, 2048)
		deadline := time.Now().Add(200 * time.Millisecond)
		for time.Now().Before(deadline) {
			n, err := readTimeout(fd, buf, 50*time.Millisecond)
			if err == nil && n > 0 {
				if xid, _, ok := ackOf(buf[:n]); ok && xid == 1<<31 {
					return true
				}
			}
		}
		return false
	})

	const (
		window = 64
		// A request unanswered this long is sent again, as a client
		// retransmits; one unanswered after maxTries sends fails the run.
		retryAfter = 300 * time.Millisecond
		maxTries   = 5
	)
	type pending struct {
		at    time.Time
		tries int
	}
	var (
		mu       sync.Mutex
		sent     = make(map[uint32]*pending, window) // outstanding, by transaction id
		answered int
		retries  int
		badMsg   string
	)
	request := func(buf []byte, xid uint32) []byte {
		c := clients[int(xid)%loadClients]
		return dhcp.AppendRequest4(buf[:0], dhcp.RequestFields{Type: dhcp.Request, XID: xid, CHAddr: c.mac, RequestedIP: c.addr})
	}
	sem := make(chan struct{}, window)
	done := make(chan struct{})
	stop := make(chan struct{})
	go func() { // the receiver checks every answer
		defer close(done)
		buf := make([]byte, 4096)
		for answered < b.N {
			select {
			case <-stop:
				return
			default:
			}
			n, err := readTimeout(fd, buf, 100*time.Millisecond)
			if err != nil {
				continue
			}
			xid, ack, ok := ackOf(buf[:n])
			if !ok {
				continue // not an ACK: another VM's traffic
			}
			mu.Lock()
			if _, ok := sent[xid]; !ok {
				mu.Unlock()
				continue // a retransmission's second answer, or the warm-up's
			}
			delete(sent, xid)
			c := clients[int(xid)%loadClients]
			if !slices.Equal(ack.ClientHWAddr, c.mac[:]) || !ack.YourClientIP.Equal(net.IP(c.addr[:])) {
				badMsg = fmt.Sprintf("transaction %d answered with chaddr %v address %v, want %v %v", xid, ack.ClientHWAddr,
					ack.YourClientIP, net.HardwareAddr(c.mac[:]), netip.AddrFrom4(c.addr))
			}
			answered++
			mu.Unlock()
			<-sem
		}
	}()
	go func() { // the retransmitter
		tick := time.NewTicker(retryAfter / 4)
		defer tick.Stop()
		buf := make([]byte, 0, 1024)
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			now := time.Now()
			mu.Lock()
			for xid, p := range sent {
				if now.Sub(p.at) < retryAfter {
					continue
				}
				if p.tries >= maxTries {
					badMsg = fmt.Sprintf("transaction %d unanswered after %d sends (%d of %d answered)", xid, p.tries, answered, b.N)
					mu.Unlock()
					close(stop)
					return
				}
				p.at, p.tries = now, p.tries+1
				retries++
				buf = request(buf, xid)
				unix.Write(fd, buf)
			}
			mu.Unlock()
		}
	}()
	frame := make([]byte, 0, 1024)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		select {
		case sem <- struct{}{}:
		case <-done:
			i = b.N
			continue
		}
		frame = request(frame, uint32(i))
		mu.Lock()
		sent[uint32(i)] = &pending{at: time.Now(), tries: 1}
		mu.Unlock()
		if _, err := unix.Write(fd, frame); err != nil {
			b.Fatalf("send: %v", err)
		}
	}
	<-done
	elapsed := time.Since(start)
	b.StopTimer()
	if badMsg != "" {
		b.Fatalf("%s; host1's drop counters:\n%s", badMsg, strings.Join(agentMetricsWith(b, 0, "drop"), "\n"))
	}
	b.ReportMetric(float64(answered)/elapsed.Seconds(), "answers/s")
	b.ReportMetric(float64(retries), "resent")
	if retries > 0 {
		// Where the lost ones went: the veth pair's counters, the
		// agent's.
		vmStats, _ := exec.Command("ip", "-n", vm.ns, "-s", "link", "show", "dev", "eth0").CombinedOutput()
		tapStats, _ := exec.Command("ip", "-n", sandbox.HostNS(0), "-s", "link", "show", "dev", vm.tap).CombinedOutput()
		b.Logf("%d requests sent again; VM eth0:\n%s\ntap:\n%s\nagent: %v", retries, vmStats, tapStats,
			append(agentMetricsWith(b, 0, "drop"), append(agentMetricsWith(b, 0, "upcall"), agentMetricsWith(b, 0, "kernel")...)...))
	}
}

// ackOf decodes a frame as a DHCP ACK to port 68: its transaction id and
// the message, decoded by gopacket.
func ackOf(frame []byte) (uint32, *layers.DHCPv4, bool) {
	if len(frame) < 14+20+8 || binary.BigEndian.Uint16(frame[12:]) != 0x0800 || frame[14+9] != 17 {
		return 0, nil, false
	}
	ihl := int(frame[14]&0x0f) * 4
	udp := frame[14+ihl:]
	if len(udp) < 8 || binary.BigEndian.Uint16(udp[0:]) != 67 || binary.BigEndian.Uint16(udp[2:]) != 68 {
		return 0, nil, false
	}
	var d layers.DHCPv4
	if d.DecodeFromBytes(udp[8:], gopacket.NilDecodeFeedback) != nil || d.Operation != layers.DHCPOpReply {
		return 0, nil, false
	}
	for _, o := range d.Options {
		if o.Type == layers.DHCPOptMessageType && len(o.Data) == 1 && layers.DHCPMsgType(o.Data[0]) == layers.DHCPMsgTypeAck {
			return d.Xid, &d, true
		}
	}
	return 0, nil, false
}

// rawSocket opens an AF_PACKET socket on ifname in the calling thread's
// namespace, receiving every frame that arrives (not those it sends).
func rawSocket(t testing.TB, ifname string) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		t.Fatal(err)
	}
	itf, err := net.InterfaceByName(ifname)
	if err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: itf.Index}); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	// Our own frames are not echoed to us: PACKET_IGNORE_OUTGOING.
	unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	return fd
}

// readTimeout reads one frame, waiting at most d.
func readTimeout(fd int, buf []byte, d time.Duration) (int, error) {
	tv := unix.NsecToTimeval(d.Nanoseconds())
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return unix.Read(fd, buf)
}

// BenchmarkDHCPLeaseTime measures what a booting VM waits for: from `ip
// link set eth0 up` in a VM namespace on host2 to dhclient's exit with a
// bound lease (its DISCOVER, the agent's OFFER, REQUEST, ACK; the lease
// file fresh each time, as on a first boot), with a script that does
// nothing, or with MIDONET_DHCP_CONFIGURE set, Debian's dhclient-script
// configuring the VM as in the sandbox. It reports the median and the
// 90th percentile.
func BenchmarkDHCPLeaseTime(b *testing.B) {
	needDHClient(b)
	bridge, hosts := dhcpBridge(b, 8)
	mac := "02:00:0a:4d:08:05"
	api(b, "POST", hosts, map[string]any{"macAddr": mac, "ipAddr": "10.77.8.5"})
	vm := newTestVM(b, 1, bridge, mac)
	dir := b.TempDir()
	script := filepath.Join(dir, "noop.sh")
	os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755)
	took := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		exec.Command("ip", "-n", vm.ns, "link", "set", "eth0", "down").Run()
		leases := filepath.Join(dir, fmt.Sprintf("leases%d", i))
		start := time.Now()
		vm.up(b)
		args := []string{"-4", "-sf", script, "-lf", leases, "-pf", vm.pidFile("lease"), "eth0"}
		if os.Getenv("MIDONET_DHCP_CONFIGURE") != "" {
			// Debian's dhclient-script configures the VM, as in the sandbox.
			args = slices.Delete(args, 1, 3)
			exec.Command("ip", "-n", vm.ns, "addr", "flush", "dev", "eth0").Run()
		}
		out, err := vm.dhclient(b, 30*time.Second, args...)
		d := time.Since(start)
		if err != nil {
			b.Fatalf("dhclient: %v\n%s", err, out)
		}
		took = append(took, d)
		stopDHClients(vm)
		if i == 0 {
			b.Logf("dhclient's log:\n%s", strings.TrimSpace(out))
		}
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*9/10].Microseconds())/1000, "p90-ms")
}

// agentMetricsWith returns the lines of host's agent metrics that contain
// substr and a non-zero value.
func agentMetricsWith(t testing.TB, host int, substr string) []string {
	var out []string
	for _, l := range agentMetricLines(t, host) {
		if strings.Contains(l, substr) && !strings.HasPrefix(l, "#") && !strings.HasSuffix(l, " 0") {
			out = append(out, l)
		}
	}
	return out
}
