package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/trace"
)

// `midonet trace` runs the agent's simulation on a packet the operator
// describes, against the topology the API serves, and prints what each
// device did (package trace, which the cluster's console uses too). It
// needs no agent: the CLI reads the topology and state tables over HTTP.

// traceFlags are the flags of `midonet trace`.
type traceFlags struct {
	port             string
	srcMAC, dstMAC   string
	vlan             int
	srcIP, dstIP     string
	proto            string
	srcPort, dstPort int
	icmpType         int
	icmpCode         int
	ttl              int
	arp              bool
	dhcp             string
	requestedIP      string
	datapath         string
}

func traceCommand(o *options) *cobra.Command { return traceCommandWith(o, &traceFlags{}) }

// traceCommandWith builds the command around f, which tests read.
func traceCommandWith(o *options, f *traceFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trace --port ID --src-ip A --dst-ip B [flags]",
		Short: "Simulate a packet through the virtual topology and show what each device does with it",
		Long: `Simulate a packet entering the virtual network at --port, exactly as an agent
would simulate the first packet of a flow, against the topology and the bridge
MAC/ARP tables the API holds now. It prints, device by device, the ports
crossed, each chain evaluated and rule matched, NAT applied, the route chosen,
then the result: where the packet leaves and with which header rewrites, or
why it is dropped; and the flow the agent would install (the header fields
its megaflow matches, its tag count and hard timeout). Give --datapath ovs
when the agents run the Open vSwitch kernel module: its flows cannot match an
ICMP echo's identifier, so pings through NAT or conntrack get no flow there.

Every port bound to a host interface is taken as active; the bound ports on
the path that no agent reports up are listed as "assumed active". Routers' ARP caches
live in the agents and are not visible through the API: a next hop that no
bridge ARP table knows gives "arp-needed" (the agent would send an ARP request
and simulate the packet again when the reply arrives).

Packet defaults:
  --proto       tcp when --src-port or --dst-port is given, else icmp
  --icmp-type   8 (echo request), --icmp-code 0
  --src-port    49152 (TCP/UDP); --dst-port is required for TCP and UDP
  --ttl         64
  --src-mac     the MAC the port's bridge has for --src-ip in its ARP table,
                else a random locally administered MAC
  --dst-mac     on a router port: the port's MAC. On a bridge port: the MAC of
                the router port on the bridge whose address is --dst-ip, or
                whose subnet holds --src-ip but not --dst-ip (the gateway);
                else the bridge's ARP table entry for --dst-ip; else broadcast
                (the bridge floods). With --arp: broadcast.
  --arp         sends an ARP request from --src-ip asking for --dst-ip
                instead of an IPv4 packet.
  --dhcp TYPE   sends a DHCP request (discover, request, inform, release or
                decline) from --src-mac (required): UDP 68 → 67 from
                --src-ip (default 0.0.0.0, the client's address when
                renewing or informing) to 255.255.255.255; --requested-ip
                sets option 50. A bridge with DHCP subnets answers it in the
                agent: the trace shows the answer and that no flow is
                installed.`,
		Example: `  midonet trace --port 6c0e7a1c-5b0e-4c44-9a4f-3f4a1f0b9d21 --src-ip 10.0.0.5 --dst-ip 8.8.8.8 --proto udp --dst-port 53
  midonet trace --port 6c0e7a1c-5b0e-4c44-9a4f-3f4a1f0b9d21 --src-ip 10.0.0.5 --dst-ip 10.0.1.7 -o json
  midonet trace --port 6c0e7a1c-5b0e-4c44-9a4f-3f4a1f0b9d21 --src-ip 10.0.0.5 --dst-ip 10.0.0.1 --arp
  midonet trace --port 6c0e7a1c-5b0e-4c44-9a4f-3f4a1f0b9d21 --dhcp discover --src-mac 02:00:00:00:00:05`,
		Args: cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			return runTrace(s, cmd, f)
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&f.port, "port", "", "id of the port the packet enters by (required)")
	fl.StringVar(&f.srcMAC, "src-mac", "", "source MAC (default: see above)")
	fl.StringVar(&f.dstMAC, "dst-mac", "", "destination MAC (default: see above)")
	fl.IntVar(&f.vlan, "vlan", 0, "802.1Q VLAN id to tag the frame with (0 = untagged)")
	fl.StringVar(&f.srcIP, "src-ip", "", "source IPv4 address (required)")
	fl.StringVar(&f.dstIP, "dst-ip", "", "destination IPv4 address (required)")
	fl.StringVar(&f.proto, "proto", "", "IP protocol: tcp, udp, icmp or a number (default: see above)")
	fl.IntVar(&f.srcPort, "src-port", 0, "TCP/UDP source port (default 49152)")
	fl.IntVar(&f.dstPort, "dst-port", 0, "TCP/UDP destination port")
	fl.IntVar(&f.icmpType, "icmp-type", int(packet.ICMPEchoRequest), "ICMP type")
	fl.IntVar(&f.icmpCode, "icmp-code", 0, "ICMP code")
	fl.IntVar(&f.ttl, "ttl", int(packet.DefaultTTL), "IP time to live")
	fl.BoolVar(&f.arp, "arp", false, "send an ARP request for --dst-ip instead of an IPv4 packet")
	fl.StringVar(&f.dhcp, "dhcp", "", "send a DHCP request of this type from --src-mac: discover, request, inform, release or decline")
	fl.StringVar(&f.requestedIP, "requested-ip", "", "with --dhcp: the address the client asks for (option 50)")
	fl.StringVar(&f.datapath, "datapath", "userspace", "the agents' datapath, whose flows the trace shows: userspace, "+
		"or ovs (its flows cannot match ICMP echo identifiers: pings through NAT and conntrack are simulated one by one)")
	return cmd
}

// traceFlagNames maps the fields of a trace.Request to the flags that set
// them, so that the trace's errors name the flags.
var traceFlagNames = map[string]string{
	"portId": "--port", "srcMac": "--src-mac", "dstMac": "--dst-mac", "vlan": "--vlan",
	"srcIp": "--src-ip", "dstIp": "--dst-ip", "proto": "--proto", "srcPort": "--src-port",
	"dstPort": "--dst-port", "icmpType": "--icmp-type", "icmpCode": "--icmp-code", "ttl": "--ttl",
	"arp": "--arp", "datapath": "--datapath", "dhcp": "--dhcp", "requestedIp": "--requested-ip",
}

// traceRequest turns the flags into a request; flags left at their
// defaults are left out, so that the trace applies its own defaults and
// knows what the operator gave.
func traceRequest(cmd *cobra.Command, f *traceFlags) *trace.Request {
	changed := cmd.Flags().Changed
	opt := func(name string, v int) *int {
		if !changed(name) {
			return nil
		}
		return &v
	}
	r := &trace.Request{PortID: f.port, SrcMAC: f.srcMAC, DstMAC: f.dstMAC, SrcIP: f.srcIP, DstIP: f.dstIP,
		Proto: f.proto, ARP: f.arp, Datapath: f.datapath, DHCP: f.dhcp, RequestedIP: f.requestedIP,
		VLAN: opt("vlan", f.vlan), SrcPort: opt("src-port", f.srcPort), DstPort: opt("dst-port", f.dstPort),
		ICMPType: opt("icmp-type", f.icmpType), ICMPCode: opt("icmp-code", f.icmpCode), TTL: opt("ttl", f.ttl)}
	return r
}

// traceError names flags in a trace's errors.
func traceError(err error) error {
	var fe *trace.FieldError
	if errors.As(err, &fe) {
		return errors.New(fe.Render(func(field string) string { return traceFlagNames[field] }))
	}
	return err
}

// runTrace reads the topology, simulates the probe and prints the report.
func runTrace(s *session, cmd *cobra.Command, f *traceFlags) error {
	rep, err := trace.Run(s.ctx, traceReader{s.client}, traceRequest(cmd, f))
	if err != nil {
		if errors.Is(err, trace.ErrNoSuchPort) {
			return fmt.Errorf("%w (see `midonet port list`)", traceError(err))
		}
		return traceError(err)
	}
	if s.json {
		return writeJSON(s.out, rep)
	}
	return rep.Write(s.out)
}

// traceReader reads the API for a trace.
type traceReader struct{ c *Client }

func (r traceReader) Collection(ctx context.Context, key string) (string, error) {
	return r.c.Collection(ctx, key)
}

func (r traceReader) Get(ctx context.Context, url, accept string, out any) error {
	err := r.c.do(ctx, http.MethodGet, url, accept, nil, "", out)
	if IsNotFound(err) {
		return fmt.Errorf("%w: %w", trace.ErrNotFound, err)
	}
	return err
}
