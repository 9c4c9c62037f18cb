package sim

import (
	"strings"
)

// TraceEvent is one step of a traced simulation.
type TraceEvent struct {
	// DeviceType is "port", "bridge", "router", "chain" or "rule".
	DeviceType string `json:"deviceType"`
	Device     ID     `json:"device"`
	// Name is the object's name, when it has one (a port's interface).
	Name string `json:"name,omitempty"`
	// Event is a short constant: "ingress", "egress", "rule matched",
	// "route", "nat", "drop", ...
	Event  string `json:"event"`
	Detail string `json:"detail,omitempty"`
}

// String formats the event on one line.
func (e TraceEvent) String() string {
	s := e.DeviceType + " "
	if e.Name != "" {
		s += e.Name + " (" + e.Device.String() + ")"
	} else {
		s += e.Device.String()
	}
	s += ": " + e.Event
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Trace is the list of events of a traced simulation, in order.
type Trace []TraceEvent

// String formats the trace one event per line.
func (t Trace) String() string {
	var b strings.Builder
	for _, e := range t {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// deviceType names the kind of device id for a trace event.
func (s *Simulator) deviceType(id ID) string {
	if s.snap.bridges.at(s.snap.ix.bridges.get(id)) != nil {
		return "bridge"
	}
	if s.snap.routerByID(id) != nil {
		return "router"
	}
	return "device"
}

func (s *Simulator) trace(typ string, id ID, event, detail string) {
	if typ == "device" {
		typ = s.deviceType(id)
	}
	s.res.Trace = append(s.res.Trace, TraceEvent{DeviceType: typ, Device: id, Name: s.snap.nameOf(id),
		Event: event, Detail: detail})
}
