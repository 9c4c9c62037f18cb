package ovs

import (
	"errors"
	"fmt"

	"github.com/midonet/midonet/internal/datapath"
)

// SetPortRateLimit implements datapath.PortRateLimiter with a kernel meter
// (the openvswitch module's ovs_meter family, Linux 4.15 and later): a
// meter with one drop band at the limit, run first by every flow from the
// port. Setting the first limit on a port, or removing one, puts the
// port's installed flows again so they gain or lose the meter.
func (d *Datapath) SetPortRateLimit(no datapath.PortNo, l datapath.RateLimit) error {
	if d.fam.meter == 0 {
		return fmt.Errorf("ovs: rate limit on port %d: the kernel has no %s family (Linux 4.15+): %w", no, familyMeter, errors.ErrUnsupported)
	}
	if err := l.Validate(); err != nil {
		return err
	}
	d.mu.Lock()
	if _, ok := d.ports[no]; !ok {
		d.mu.Unlock()
		return fmt.Errorf("ovs: rate limit on port %d: %w", no, datapath.ErrPortNotFound)
	}
	id, had := d.meters[no]
	if l.BitsPerSecond == 0 {
		delete(d.meters, no)
		d.mu.Unlock()
		if !had {
			return nil
		}
		if err := d.reputPortFlows(no); err != nil {
			return err
		}
		return d.meterRequest(meterCmdDel, id, datapath.RateLimit{})
	}
	if !had {
		id = d.freeMeterLocked()
	}
	d.mu.Unlock()
	if err := d.meterRequest(meterCmdSet, id, l); err != nil {
		return err
	}
	if had {
		return nil // the flows run this meter already
	}
	d.mu.Lock()
	d.meters[no] = id
	d.mu.Unlock()
	return d.reputPortFlows(no)
}

// freeMeterLocked returns the lowest meter id no port uses; mu is held.
func (d *Datapath) freeMeterLocked() uint32 {
	used := make(map[uint32]bool, len(d.meters))
	for _, id := range d.meters {
		used[id] = true
	}
	id := uint32(1)
	for used[id] {
		id++
	}
	return id
}

// meterRequest sets or deletes meter id: a drop band at the limit, in
// kilobits per second and kilobits of burst, rounded up.
func (d *Datapath) meterRequest(cmd uint8, id uint32, l datapath.RateLimit) error {
	ls := &d.ctl
	ls.mu.Lock()
	defer ls.mu.Unlock()
	s := ls.s
	off, seq := s.request(d.fam.meter, cmd, versionMeter, flagAck, d.ifindex)
	s.e.u32(meterAttrID, id)
	op := fmt.Sprintf("meter delete %d", id)
	if cmd == meterCmdSet {
		kbps := uint32((l.BitsPerSecond + 999) / 1000)
		burst := uint32((l.BurstBytes*8 + 999) / 1000)
		s.e.flag(meterAttrKBPS)
		bands := s.e.begin(meterAttrBands)
		band := s.e.begin(0) // OVS_BAND_ATTR_UNSPEC: one band
		s.e.u32(bandAttrType, bandTypeDrop)
		s.e.u32(bandAttrRate, kbps)
		s.e.u32(bandAttrBurst, burst)
		s.e.end(band)
		s.e.end(bands)
		op = fmt.Sprintf("meter set %d (%d kbit/s, burst %d kbit)", id, kbps, burst)
	}
	s.finish(off)
	return d.roundTrip(s, seq, op, nil)
}

// reputPortFlows puts the flows from port no again, with or without the
// port's meter as it stands.
func (d *Datapath) reputPortFlows(no datapath.PortNo) error {
	var flows []*datapath.Flow
	if err := d.DumpFlows(func(f *datapath.Flow) bool {
		if datapath.PortNo(f.Key.InPort) == no {
			flows = append(flows, f)
		}
		return true
	}); err != nil {
		return err
	}
	var errs []error
	for _, f := range flows {
		err := d.PutFlow(&f.Key, &f.Mask, f.Actions, datapath.FlowModify)
		if err != nil && !errors.Is(err, datapath.ErrFlowNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
