package nsdb

import (
	"context"
	"fmt"
	"strings"
)

// Availability is what the store serves at a moment.
type Availability int

const (
	// ReadWrite: the store answers reads and takes writes.
	ReadWrite Availability = iota
	// ReadOnly: the store answers reads but refuses writes, because the
	// cluster raised an alarm (NOSPACE: its space quota is full).
	ReadOnly
	// Unavailable: the store does not answer a read (no member reachable,
	// or no leader).
	Unavailable
)

// String returns MidoNet's name of the availability (SystemState's
// availability): READWRITE, READONLY, or UNAVAILABLE.
func (a Availability) String() string {
	switch a {
	case ReadWrite:
		return "READWRITE"
	case ReadOnly:
		return "READONLY"
	}
	return "UNAVAILABLE"
}

// Availability probes the store with a read and a look at the cluster's
// alarms; why says what is wrong when it is not ReadWrite. It writes
// nothing, so that probing it often costs the store no revisions.
func (s *Store) Availability(ctx context.Context) (a Availability, why string) {
	if _, err := s.Revision(ctx); err != nil {
		return Unavailable, fmt.Sprintf("the store does not answer reads: %v", err)
	}
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := s.cli.AlarmList(ctx)
	if err != nil {
		return Unavailable, fmt.Sprintf("the store does not list its alarms: %v", err)
	}
	if len(resp.Alarms) == 0 {
		return ReadWrite, ""
	}
	var alarms []string
	for _, al := range resp.Alarms {
		alarms = append(alarms, fmt.Sprintf("%s on member %x", al.Alarm, al.MemberID))
	}
	return ReadOnly, "the store refuses writes: alarm " + strings.Join(alarms, ", ") +
		" (NOSPACE: compact and defragment the store, then disarm the alarm with etcdctl alarm disarm)"
}
