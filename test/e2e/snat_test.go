package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/sandbox"
)

// TestSNATPortsUniqueAcrossHosts opens thousands of TCP connections from VMs
// on two, then three hosts, all SNATed by the tenant router to one address
// (203.0.113.1) and all to one server port in the external network, and
// holds them open together. (vm-a1, host1's VM, has a floating IP: its
// connections leave from a second address, which the dynamic SNAT covers.) Each host's agent picks its source ports from
// blocks it leased in the store, so no two connections share a translated
// (address, port): the server sees every connection from a distinct port and
// every reply reaches the client that sent the request. Ports chosen from
// each host's own flow state alone collide here (about 35 collisions expected
// at two hosts, 45 at three; each one a connection that fails or a reply
// that reaches another VM).
func TestSNATPortsUniqueAcrossHosts(t *testing.T) {
	need(t)
	srv := startTagServer(t, 7300)
	const a1Second = "10.0.1.20"
	ipNS(t, sandbox.VMNS("vm-a1"), "addr", "add", a1Second+"/24", "dev", "eth0")
	t.Cleanup(func() { ipNS(t, sandbox.VMNS("vm-a1"), "addr", "del", a1Second+"/24", "dev", "eth0") })
	for _, tc := range []struct {
		name    string
		vms     []string
		perHost int
	}{
		{"two hosts", []string{"vm-a1", "vm-b1"}, 1500},            // host1, host2
		{"three hosts", []string{"vm-a1", "vm-b1", "vm-b2"}, 1000}, // host1, host2, host3
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.reset()
			start := time.Now()
			var wg sync.WaitGroup
			results := make([]clientResult, len(tc.vms))
			for i, vm := range tc.vms {
				wg.Add(1)
				go func() {
					defer wg.Done()
					src := ""
					if vm == "vm-a1" {
						src = a1Second
					}
					results[i] = openTagged(vm, src, "192.0.2.1:7300", tc.perHost)
				}()
			}
			wg.Wait()
			took := time.Since(start)
			seen := srv.seen()
			total, failed, misdelivered := 0, 0, 0
			for i, r := range results {
				total += tc.perHost
				failed += r.failed
				misdelivered += r.misdelivered
				t.Logf("%s: %d of %d connections answered, %d failed, %d replies for another connection (first error: %v)",
					tc.vms[i], r.ok, tc.perHost, r.failed, r.misdelivered, r.firstErr)
				for _, c := range r.conns {
					c.Close()
				}
			}
			ports := map[string]bool{}
			for _, from := range seen {
				ports[from] = true
			}
			t.Logf("%d connections in %s; the server saw %d, from %d distinct SNAT address:port pairs",
				total, took.Round(time.Millisecond), len(seen), len(ports))
			if failed > 0 || misdelivered > 0 || len(seen) != total || len(ports) != total {
				for h := range 3 {
					t.Logf("host%d: %s", h+1, strings.Join(agentSeries(t, h, "midonet_agent_drops_total", "midonet_agent_upcall_queue_drops_total",
						"midonet_agent_nat_", "midonet_agent_datapath_upcall_drops", "midonet_agent_state_",
						"midonet_agent_port_rx_dropped", "midonet_agent_port_tx_dropped", "midonet_agent_port_upcall_dropped"), "; "))
				}
				what := "SNAT ports collided"
				if misdelivered == 0 && len(ports) == len(seen) {
					what = "no SNAT port was given twice, but connections failed"
				}
				t.Fatalf("%s: %d connections failed, %d replies reached another connection, "+
					"the server saw %d of %d connections from %d distinct ports", what, failed, misdelivered, len(seen), total, len(ports))
			}
			for tag, from := range seen {
				if !strings.HasPrefix(from, "203.0.113.1:") {
					t.Fatalf("connection %s came from %s, not the SNAT address", tag, from)
				}
			}
			// Each host's ports came from blocks of 64 it leased.
			for i, vm := range tc.vms {
				host := map[string]int{"vm-a1": 0, "vm-b1": 1, "vm-b2": 2}[vm]
				held := agentMetric(t, host, "midonet_agent_nat_blocks_held")
				if held*64 < tc.perHost {
					t.Errorf("host%d holds %d SNAT port blocks for %d connections", host+1, held, results[i].ok)
				}
				t.Logf("host%d holds %d SNAT port blocks", host+1, held)
			}
		})
	}
}

// tagServer accepts connections, reads one line (the client's tag), records
// the address it saw the connection from and answers with the tag and that
// address; it keeps each connection open until the client closes it.
type tagServer struct {
	mu   sync.Mutex
	from map[string]string // tag -> remote address
}

func startTagServer(t *testing.T, port int) *tagServer {
	t.Helper()
	s := &tagServer{from: map[string]string{}}
	var ln net.Listener
	inNS(t, sandbox.ExtNS, func() {
		var err error
		if ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port)); err != nil {
			t.Fatal(err)
		}
	})
	var conns sync.WaitGroup
	t.Cleanup(func() { ln.Close(); conns.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(2 * time.Minute))
				r := bufio.NewReader(c)
				tag, err := r.ReadString('\n')
				if err != nil {
					return
				}
				tag = strings.TrimSpace(tag)
				from := c.RemoteAddr().String()
				s.mu.Lock()
				s.from[tag] = from
				s.mu.Unlock()
				fmt.Fprintf(c, "%s %s\n", tag, from)
				r.ReadByte() // until the client closes
			}()
		}
	}()
	return s
}

func (s *tagServer) reset() {
	s.mu.Lock()
	s.from = map[string]string{}
	s.mu.Unlock()
}

func (s *tagServer) seen() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.from))
	for k, v := range s.from {
		out[k] = v
	}
	return out
}

type clientResult struct {
	ok, failed, misdelivered int
	firstErr                 error
	conns                    []net.Conn // held open until the caller closes them
}

// openTagged opens n connections from the VM (from address src, if not
// empty) to addr, 32 at a time, each sending a tag unique to it and
// checking that the answer carries the same tag. The connections stay open:
// the caller closes them.
func openTagged(vm, src, addr string, n int) clientResult {
	const parallel = 32
	var (
		mu   sync.Mutex
		res  clientResult
		next atomic.Int64
		wg   sync.WaitGroup
	)
	record := func(c net.Conn, ok, mis bool, err error) {
		mu.Lock()
		defer mu.Unlock()
		if c != nil {
			res.conns = append(res.conns, c)
		}
		switch {
		case ok:
			res.ok++
		case mis:
			res.misdelivered++
		default:
			res.failed++
			if res.firstErr == nil {
				res.firstErr = err
			}
		}
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := sandbox.InNS(sandbox.VMNS(vm), func() error {
				for {
					i := next.Add(1) - 1
					if i >= int64(n) {
						return nil
					}
					tag := fmt.Sprintf("%s-%d", vm, i)
					c, err := d.Dial("tcp4", addr)
					if err != nil {
						record(nil, false, false, err)
						continue
					}
					c.SetDeadline(time.Now().Add(5 * time.Second))
					fmt.Fprintf(c, "%s\n", tag)
					line, err := bufio.NewReader(c).ReadString('\n')
					got, _, _ := strings.Cut(strings.TrimSpace(line), " ")
					c.SetDeadline(time.Time{})
					switch {
					case err != nil:
						record(c, false, false, fmt.Errorf("%s: %w", tag, err))
					case got != tag:
						record(c, false, true, nil)
					default:
						record(c, true, false, nil)
					}
				}
			})
			if err != nil {
				record(nil, false, false, err)
			}
		}()
	}
	wg.Wait()
	return res
}

// ipNS runs ip with args in a namespace.
func ipNS(t *testing.T, ns string, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s %s: %v %s", ns, strings.Join(args, " "), err, out)
	}
}

// agentSeries returns the lines of a host agent's metrics that start with
// one of prefixes.
func agentSeries(t *testing.T, host int, prefixes ...string) []string {
	var out []string
	for _, l := range agentMetricLines(t, host) {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
				break
			}
		}
	}
	return out
}
