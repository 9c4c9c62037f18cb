// Command dpfwd attaches two Linux interfaces to a userspace datapath and
// installs flows forwarding everything between them, for benchmarking the
// datapath against a veth pair and Open vSwitch (see ../run.sh). Run it in
// the namespace that holds the interfaces (ip netns exec NS dpfwd -a X -b Y);
// it prints the datapath's counters as JSON when it gets SIGINT or SIGTERM.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/userspace"
	"github.com/midonet/midonet/internal/packet"
)

func main() {
	a := flag.String("a", "", "first interface")
	b := flag.String("b", "", "second interface")
	ring := flag.String("ring", "v2", "AF_PACKET ring version: v2 (lowest latency) or v3 (fewest wake-ups)")
	blockSize := flag.Int("block-size", 0, "AF_PACKET receive ring block size in bytes (0: the datapath's default)")
	blocks := flag.Int("blocks", 0, "AF_PACKET receive ring blocks (0: the datapath's default)")
	upcallsOnly := flag.Bool("upcalls-only", false, "install no flows; count upcalls only (measures miss delivery)")
	xdp := flag.Bool("xdp", false, "attach the interfaces with AF_XDP where possible")
	offload := flag.Bool("offload", false, "open ports with PACKET_VNET_HDR so GSO super-frames pass whole (peers may keep TSO on)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	busyPoll := flag.Duration("busy-poll", 0, "keep polling the ports this long after the last packet before sleeping (0: off)")
	cpus := flag.String("cpus", "", "processors to pin the receivers to, e.g. 1 or 2-3,6, as the agent's --datapath-cpus (they then poll their whole window)")
	fastPath := flag.Bool("fast-path", false, "run the flows in the kernel fast path (eBPF), as the agent does by default")
	exact := flag.Bool("exact", false, "match in-port, Ethernet and IPv4 addresses exactly instead of in-port only (more EMC work)")
	flag.Parse()
	if *a == "" || *b == "" {
		fmt.Fprintln(os.Stderr, "usage: dpfwd -a IFACE -b IFACE")
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	rv := userspace.RingV2
	switch *ring {
	case "v2":
	case "v3":
		rv = userspace.RingV3
	default:
		fmt.Fprintln(os.Stderr, "-ring must be v2 or v3")
		os.Exit(2)
	}
	pinned, err := userspace.ParseCPUList(*cpus)
	if err != nil {
		fmt.Fprintf(os.Stderr, "-cpus: %v\n", err)
		os.Exit(2)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Error("cpu profile", "error", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := run(userspace.Config{Logger: log, BusyPoll: *busyPoll, CPUs: pinned, Ring: rv, Offload: *offload, XDP: *xdp, FastPath: *fastPath, RingBlockSize: *blockSize, RingBlocks: *blocks}, *a, *b, *exact, *upcallsOnly, log); err != nil {
		log.Error("dpfwd failed", "error", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(cfg userspace.Config, a, b string, exact, upcallsOnly bool, log *slog.Logger) error {
	d, err := userspace.New(cfg)
	if err != nil {
		return err
	}
	defer d.Close()
	pa, err := d.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: a})
	if err != nil {
		return err
	}
	pb, err := d.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: b})
	if err != nil {
		return err
	}
	mask := packet.FlowKey{InPort: ^uint32(0)}
	if exact {
		mask.EthType = 0xffff
		mask.NwSrc = [4]byte{255, 255, 255, 255}
		mask.NwDst = [4]byte{255, 255, 255, 255}
	}
	if upcallsOnly {
		// Stats counts delivered upcalls; the handler has nothing to do.
		d.SetUpcallHandler(datapath.UpcallHandlerFunc(func(*datapath.Upcall) {}))
		return wait(d, log, a, b)
	}
	d.SetUpcallHandler(datapath.UpcallHandlerFunc(func(u *datapath.Upcall) {
		// Install a flow for what missed: forward to the other port.
		out := pb
		if u.InPort == pb {
			out = pa
		}
		if err := d.PutFlow(&u.Key, &mask, []datapath.Action{datapath.Output(out)}, datapath.FlowCreate|datapath.FlowModify); err != nil {
			log.Warn("install flow", "error", err)
		}
		d.Execute(u.Packet, []datapath.Action{datapath.Output(out)}, u.InPort)
	}))
	if !exact {
		for _, f := range [][2]datapath.PortNo{{pa, pb}, {pb, pa}} {
			key := packet.FlowKey{InPort: uint32(f[0])}
			if err := d.PutFlow(&key, &mask, []datapath.Action{datapath.Output(f[1])}, datapath.FlowCreate); err != nil {
				return err
			}
		}
	}
	log.Info("forwarding", "a", a, "b", b, "exact", exact)
	return wait(d, log, a, b)
}

// wait runs until SIGINT or SIGTERM, then prints the counters.
func wait(d *userspace.Datapath, log *slog.Logger, a, b string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	out := struct {
		Stats datapath.Stats
		Ports []datapath.Port
	}{d.Stats(), d.Ports()}
	return json.NewEncoder(os.Stdout).Encode(out)
}
