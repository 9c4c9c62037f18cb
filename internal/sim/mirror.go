package sim

// mirror copies the packets matching any of its conditions to a port
// (MidoNet's Mirror.scala, reference §2.10).
type mirror struct {
	id    ID
	tag   Tag
	conds []cond
	toID  ID
	to    handle[port]
}

// mirrorTo simulates, for each mirror with a matching condition, a copy of
// the packet as it is now leaving the mirror's target port (through that
// port's outbound chains). The copies do not change the original's path:
// the context is restored after each one, and a dropped copy is ignored.
func (s *Simulator) mirrorTo(ms []handle[mirror]) {
	for _, h := range ms {
		m := s.snap.mirror(h)
		if m == nil {
			continue
		}
		s.tag(m.tag)
		to := s.snap.port(m.to)
		if to == nil || !s.mirrorMatches(m) {
			continue
		}
		if s.tracing {
			s.trace("mirror", m.id, "copy", "to port "+m.toID.String())
		}
		saved := s.save()
		s.portEgress(to)
		s.restore(&saved)
	}
}

func (s *Simulator) mirrorMatches(m *mirror) bool {
	for i := range m.conds {
		if s.condMatches(&m.conds[i]) {
			return true
		}
	}
	return false
}
