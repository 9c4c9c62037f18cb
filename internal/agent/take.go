package agent

import "github.com/midonet/midonet/internal/datapath"

// PacketTaker is implemented by services that answer some of the VMs'
// packets themselves, outside the virtual topology (the metadata proxy:
// TCP to 169.254.169.254:80). The agent offers every miss to them before
// simulating it; TakePacket reports whether the service took it (it then
// executed it, installed its flows or dropped it). It runs on the
// datapath's upcall goroutine: it must not block, and must copy what it
// keeps of u (see datapath.Upcall).
type PacketTaker interface {
	TakePacket(u *datapath.Upcall) bool
}

// take offers a miss to the services that take packets.
func (r *serviceRunner) take(u *datapath.Upcall) bool {
	for _, t := range r.takers {
		if t.TakePacket(u) {
			return true
		}
	}
	return false
}
