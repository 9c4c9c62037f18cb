package trace

import (
	"encoding/json"
	"testing"

	"github.com/midonet/midonet/internal/sim"
)

// FuzzRequest: any JSON body of POST /midonet-api/simulate is either
// refused with a *FieldError or gives a probe whose frame decodes back to
// the addresses asked for.
func FuzzRequest(f *testing.F) {
	for _, seed := range []string{
		`{"portId":"6c0e7a1c-5b0e-4c44-9a4f-3f4a1f0b9d21","srcIp":"10.0.0.1","dstIp":"10.0.0.2"}`,
		`{"portId":"6c0e7a1c-5b0e-4c44-9a4f-3f4a1f0b9d21","srcIp":"10.0.0.1","dstIp":"10.0.0.2","proto":"tcp","dstPort":22,"vlan":7}`,
		`{"portId":"6c0e7a1c-5b0e-4c44-9a4f-3f4a1f0b9d21","srcIp":"10.0.0.1","dstIp":"10.0.0.2","proto":"udp","srcPort":65535,"dstPort":0,"ttl":0}`,
		`{"portId":"6c0e7a1c-5b0e-4c44-9a4f-3f4a1f0b9d21","srcIp":"10.0.0.1","dstIp":"10.0.0.2","icmpType":3,"icmpCode":4}`,
		`{"portId":"6c0e7a1c-5b0e-4c44-9a4f-3f4a1f0b9d21","srcIp":"10.0.0.1","dstIp":"10.0.0.2","arp":true,"srcMac":"02:00:00:00:00:01"}`,
		`{"portId":"6c0e7a1c-5b0e-4c44-9a4f-3f4a1f0b9d21","srcIp":"10.0.0.1","dstIp":"10.0.0.2","proto":"47","datapath":"ovs"}`,
		`{"portId":"x","srcIp":"::1","dstIp":"10.0.0.2","vlan":-1}`,
		`{"proto":"300","dstPort":99999}`,
		`{}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var r Request
		if json.Unmarshal(body, &r) != nil {
			return
		}
		p, err := r.probe()
		if err != nil {
			if _, ok := err.(*FieldError); !ok {
				t.Fatalf("%s: error %v is a %T, want a *FieldError", body, err, err)
			}
			return
		}
		m, ok := sim.MatchFromFrame(p.frame())
		if !ok {
			t.Fatalf("%s: the probe's frame does not decode", body)
		}
		if m.NwSrc != p.src.As4() || m.NwDst != p.dst.As4() {
			t.Errorf("%s: frame from %v to %v, want %v to %v", body, m.NwSrc, m.NwDst, p.src, p.dst)
		}
	})
}
