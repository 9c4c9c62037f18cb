package engine

import (
	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
)

// Core is the part of datapath.Datapath that is the engine's own: flows,
// execution, the upcall and port-event handlers, the port list and the
// statistics. A backend built on the engine embeds it and writes only its
// port management (and may override Stats to add its own counters).
type Core struct{ e *Engine }

// Core returns the engine's Core.
func (e *Engine) Core() Core { return Core{e} }

// Ports implements datapath.PortManager.
func (c Core) Ports() []datapath.Port { return c.e.Ports() }

// PutFlow implements datapath.FlowTable.
func (c Core) PutFlow(key, mask *packet.FlowKey, actions []datapath.Action, flags datapath.FlowFlags) error {
	return c.e.PutFlow(key, mask, actions, flags)
}

// DeleteFlow implements datapath.FlowTable.
func (c Core) DeleteFlow(key, mask *packet.FlowKey) (datapath.FlowStats, error) {
	return c.e.DeleteFlow(key, mask)
}

// DumpFlows implements datapath.FlowTable.
func (c Core) DumpFlows(fn func(f *datapath.Flow) bool) error { return c.e.DumpFlows(fn) }

// Execute implements datapath.Executor.
func (c Core) Execute(frame []byte, actions []datapath.Action, inPort datapath.PortNo) error {
	return c.e.Execute(frame, actions, inPort)
}

// SetUpcallHandler implements datapath.Upcaller.
func (c Core) SetUpcallHandler(h datapath.UpcallHandler) { c.e.SetUpcallHandler(h) }

// SetPortEventHandler implements datapath.Upcaller.
func (c Core) SetPortEventHandler(h datapath.PortEventHandler) { c.e.SetPortEventHandler(h) }

// Features implements datapath.FeatureReporter: the engine's classifier
// matches every packet.FlowKey field, ICMP echo identifiers included.
func (c Core) Features() datapath.Features { return datapath.Features{ICMPEchoID: true} }

// Stats implements datapath.Datapath.
func (c Core) Stats() datapath.Stats { return c.e.Stats() }
