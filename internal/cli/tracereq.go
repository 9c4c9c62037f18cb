package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// traceRequestKind: trace requests (MidoNet's /traces), which make the
// agents trace the real packets matching a condition at a device.
var traceRequestKind = &kind{noun: "trace-request", collection: "traceRequests", template: "traceRequestTemplate",
	media: "TraceRequest-v1", named: true}

// traceDeviceFlags name the device a trace request watches; prepare turns
// the one given into deviceType and deviceId.
var traceDeviceFlags = []struct {
	flag, deviceType string
	kind             *kind
}{{"bridge", "BRIDGE", bridgeKind}, {"router", "ROUTER", routerKind}, {"port", "PORT", portKind}}

// traceRequestResource is `midonet trace-request ...`.
func traceRequestResource() *resource {
	condFields := mirrorConditionFields()
	var devices []field
	for _, d := range traceDeviceFlags {
		devices = append(devices, refField(d.flag, "_"+d.flag, d.kind, "trace the packets entering this "+d.flag))
	}
	return &resource{
		kind: traceRequestKind, use: "trace-request", aliases: []string{"tr"},
		short: "Trace requests: the agents trace the real packets matching a condition at a device (packets, enable, disable)",
		columns: []column{col("ID", "id"), col("NAME", "name"), col("DEVICE-TYPE", "deviceType"), col("DEVICE", "deviceId"),
			col("ENABLED", "enabled"), col("LIMIT", "limit"), {"CONDITION", traceCondition}},
		createOnly: append(devices, condFields...),
		fields: []field{
			{flag: "name", key: "name", usage: "name of the request (required)"},
			{flag: "limit", key: "limit", kind: kInt, usage: "packets each host traces at most (default: no limit); enabling again starts counting anew"},
			{flag: "enabled", key: "enabled", kind: kBool, usage: "trace now (default false: create it disabled)"},
		},
		required: []string{"name"},
		prepare: func(_ *session, b Object) error {
			n := 0
			for _, d := range traceDeviceFlags {
				if id, ok := b["_"+d.flag]; ok {
					b["deviceType"], b["deviceId"] = d.deviceType, id
					delete(b, "_"+d.flag)
					n++
				}
			}
			if n != 1 {
				return errors.New("give exactly one of --bridge, --router or --port: the device whose entering packets are traced")
			}
			// The condition flags make the request's condition; none
			// traces every packet.
			cond := Object{}
			for _, f := range condFields {
				for _, k := range []string{f.key, f.key2} {
					if v, ok := b[k]; ok && k != "" {
						cond[k] = v
						delete(b, k)
					}
				}
			}
			b["condition"] = cond
			return nil
		},
		examples: map[string]string{
			"list":   "  midonet trace-request list",
			"show":   "  midonet trace-request show dns",
			"create": "  midonet trace-request create --name dns --bridge tenant-net --proto udp --tp-dst 53 --limit 20 --enabled",
			"update": "  midonet trace-request update dns --limit 100",
			"delete": "  midonet trace-request delete dns",
		},
	}
}

// traceCondition summarises a trace request's condition as a rule match.
func traceCondition(o Object) string {
	c, ok := o["condition"].(map[string]any)
	if !ok {
		return "-"
	}
	return ruleMatch(Object(c))
}

// addTraceRequestVerbs adds enable, disable and packets to trace-request.
func addTraceRequestVerbs(o *options, tr *cobra.Command) {
	for _, v := range []struct {
		verb, short string
		on          bool
	}{{"enable", "Start tracing (counting the limit anew)", true}, {"disable", "Stop tracing (the traced packets stay readable)", false}} {
		tr.AddCommand(&cobra.Command{
			Use:     v.verb + " NAME|ID",
			Short:   v.short,
			Example: "  midonet trace-request " + v.verb + " dns",
			Args:    cobra.ExactArgs(1),
			RunE: o.run(func(s *session, _ *cobra.Command, args []string) error {
				obj, err := s.resolve(traceRequestKind, args[0])
				if err != nil {
					return err
				}
				obj["enabled"] = v.on
				return s.putAndShow(obj, traceRequestKind)
			}),
		})
	}
	tr.AddCommand(&cobra.Command{
		Use:   "packets NAME|ID",
		Short: "Show the packets the agents traced for a request: the last ones of each host, oldest first, each with its trace",
		Example: "  midonet trace-request packets dns\n" +
			"  midonet trace-request packets dns -o json",
		Args: cobra.ExactArgs(1),
		RunE: o.run(func(s *session, _ *cobra.Command, args []string) error {
			obj, err := s.resolve(traceRequestKind, args[0])
			if err != nil {
				return err
			}
			u, err := link(traceRequestKind, obj, "uri")
			if err != nil {
				return err
			}
			list, err := s.client.List(s.ctx, u+"/packets", "TracedPacket-v1")
			if err != nil {
				return err
			}
			if s.json {
				if list == nil {
					list = []Object{}
				}
				return writeJSON(s.out, list)
			}
			return writeTracedPackets(s, list)
		}),
	})
}

// writeTracedPackets prints each traced packet on a line, then its trace
// indented, as `midonet trace` prints a simulation.
func writeTracedPackets(s *session, list []Object) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(s.out, "no packet traced (yet): is the request enabled, and does traffic match it?")
		return err
	}
	var b strings.Builder
	for _, p := range list {
		result := p.Str("result")
		if r := p.Str("reason"); r != "" {
			result += " (" + r + ")"
		}
		fmt.Fprintf(&b, "%s host %s port %s: %s → %s\n", p.Str("time"), p.Str("hostId"), p.Str("portId"), p.Str("packet"), result)
		steps, _ := p["trace"].([]any)
		for _, st := range steps {
			m, ok := st.(map[string]any)
			if !ok {
				continue
			}
			e := Object(m)
			dev := e.Str("device")
			if n := e.Str("name"); n != "" {
				dev = n + " (" + dev + ")"
			}
			line := "    " + e.Str("deviceType") + " " + dev + ": " + e.Str("event")
			if d := e.Str("detail"); d != "" {
				line += ": " + d
			}
			b.WriteString(line + "\n")
		}
	}
	_, err := fmt.Fprint(s.out, b.String())
	return err
}
