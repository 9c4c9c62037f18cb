package topology

import (
	"errors"
	"testing"
)

func TestIsIPv4(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"10.0.0.1", true}, {"0.0.0.0", true}, {"255.255.255.255", true},
		{"256.0.0.1", false}, {"10.0.0", false}, {"10.0.0.01", false}, {"10.0.0.1.2", false},
		{"", false}, {"a.b.c.d", false}, {"10.0.0.-1", false}, {"::1", false}, {"10.0.0.+1", false},
	} {
		if got := IsIPv4(tc.in); got != tc.want {
			t.Errorf("IsIPv4(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestParseMACAndMask(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		want [6]byte
	}{
		{"aa:bb:cc:dd:ee:ff", true, [6]byte{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}},
		{"AA:B:c:0:1:2", true, [6]byte{0xaa, 0xb, 0xc, 0, 1, 2}},
		{"aa-bb-cc-dd-ee-ff", true, [6]byte{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}},
		{"aa:bb:cc:dd:ee", false, [6]byte{}},
		{"aaa:bb:cc:dd:ee:ff", false, [6]byte{}},
		{"zz:bb:cc:dd:ee:ff", false, [6]byte{}},
	} {
		got, ok := ParseMAC(tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("ParseMAC(%q) = %x, %v", tc.in, got, ok)
		}
	}
	if m, ok := ParseMACMask("ffff.ff00.0000"); !ok || m != [6]byte{0xff, 0xff, 0xff, 0, 0, 0} {
		t.Errorf("ParseMACMask = %x %v", m, ok)
	}
	if _, ok := ParseMACMask("ff:ff:ff:00:00:00"); ok {
		t.Error("a colon MAC is not a mask")
	}
}

func TestRuleFragmentPolicyDefaults(t *testing.T) {
	nat := func(from, to string, pf, pt int) []NatTarget {
		return []NatTarget{{AddressFrom: Str(from), AddressTo: Str(to), PortFrom: pf, PortTo: pt}}
	}
	accept := Str(FlowAccept)
	for _, tc := range []struct {
		name string
		rule Rule
		want string // "" means invalid
	}{
		{"plain rule", Rule{Type: RuleDrop}, FragAny},
		{"l4 rule", Rule{Type: RuleAccept, Condition: Condition{TpDst: &PortRange{80, 80}}}, FragHeader},
		{"l4 rule with any", Rule{Type: RuleAccept, Condition: Condition{TpDst: &PortRange{80, 80}, FragmentPolicy: Str(FragAny)}}, ""},
		{"dynamic snat", Rule{Type: RuleSNAT, FlowAction: accept, NatTargets: nat("1.1.1.1", "1.1.1.2", 0, 0)}, FragUnfragmented},
		{"static dnat", Rule{Type: RuleDNAT, FlowAction: accept, NatTargets: nat("10.0.0.5", "10.0.0.5", 0, 0)}, FragAny},
		{"static dnat with ports", Rule{Type: RuleDNAT, FlowAction: accept, NatTargets: nat("10.0.0.5", "10.0.0.5", 0, 0),
			Condition: Condition{TpDst: &PortRange{22, 22}}}, FragUnfragmented},
		{"snat with nonheader", Rule{Type: RuleSNAT, FlowAction: accept, NatTargets: nat("1.1.1.1", "1.1.1.1", 10, 20),
			Condition: Condition{FragmentPolicy: Str(FragNonheader)}}, ""},
		{"nat without targets", Rule{Type: RuleSNAT, FlowAction: accept}, ""},
		{"jump without chain", Rule{Type: RuleJump}, ""},
		{"unknown type", Rule{Type: "allow"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.rule.Validate()
			if tc.want == "" {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Validate() = %v, want a validation error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			if got := *tc.rule.FragmentPolicy; got != tc.want {
				t.Errorf("fragment policy %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRouterPortDerivesSubnetAndLocalRoute(t *testing.T) {
	p := Port{ID: NewID(), Type: PortTypeRouter, DeviceID: NewID(), PortAddress: Str("10.0.0.1"), NetworkLength: 24}
	p.PrepareRouterPort()
	if len(p.PortSubnet) != 1 || p.PortSubnet[0] != "10.0.0.1/24" {
		t.Fatalf("portSubnet %v", p.PortSubnet)
	}
	p.Normalize()
	if *p.NetworkAddress != "10.0.0.0" || *p.PortAddress != "10.0.0.1" || p.NetworkLength != 24 {
		t.Errorf("derived %v %v %v", *p.PortAddress, *p.NetworkAddress, p.NetworkLength)
	}
	routes := LocalRoutes(&p, NewID)
	if len(routes) != 1 || *routes[0].DstNetworkAddr != "10.0.0.1" || routes[0].DstNetworkLength != 32 ||
		routes[0].Type != RouteLocal || *routes[0].NextHopPort != p.ID || routes[0].RouterID != p.DeviceID {
		t.Errorf("local routes %+v", routes)
	}
	bad := Port{Type: PortTypeRouter}
	if err := bad.Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("a router port without an address validated: %v", err)
	}
}

func TestValidationNamesFields(t *testing.T) {
	r := Route{Type: "Sideways", SrcNetworkAddr: Str("0.0.0.0"), DstNetworkAddr: Str("10.0.0.300"), DstNetworkLength: 33}
	var ve *ValidationError
	if err := r.Validate(); !errors.As(err, &ve) {
		t.Fatalf("Validate() = %v", err)
	}
	props := map[string]bool{}
	for _, v := range ve.Violations {
		props[v.Property] = true
	}
	for _, want := range []string{"type", "dstNetworkAddr", "dstNetworkLength"} {
		if !props[want] {
			t.Errorf("no violation names %s: %v", want, ve.Violations)
		}
	}
}

func TestUnderlayMTU(t *testing.T) {
	h1, h2, h3 := NewID(), NewID(), NewID()
	vx, vtep := TunnelZoneVXLAN, TunnelZoneVTEP
	zones := []TunnelZone{
		{Type: &vx, Members: []TunnelZoneMember{{HostID: h1, IPAddress: "10.0.0.1"}, {HostID: h2, IPAddress: "10.0.0.2"}}},
		{Type: &vtep, Members: []TunnelZoneMember{{HostID: h3, IPAddress: "10.0.0.3"}}},
	}
	tests := []struct {
		name   string
		ifaces []Interface
		want   int
	}{
		{"nothing published", nil, 0},
		{"the smallest member interface", []Interface{
			{HostID: h1, Name: "eth0", MTU: 9000, Addresses: []string{"10.0.0.1", "fe80::1"}},
			{HostID: h2, Name: "eth0", MTU: 1600, Addresses: []string{"10.0.0.2"}},
		}, 1600},
		{"interfaces without the member address do not count", []Interface{
			{HostID: h1, Name: "eth0", MTU: 9000, Addresses: []string{"10.0.0.1"}},
			{HostID: h1, Name: "lo", MTU: 65536, Addresses: []string{"127.0.0.1"}},
			{HostID: h1, Name: "tap0", MTU: 1400, Addresses: []string{}},
			{HostID: h2, Name: "eth1", MTU: 1000, Addresses: []string{"192.0.2.2"}},
		}, 9000},
		{"VTEP members do not count", []Interface{
			{HostID: h1, Name: "eth0", MTU: 9000, Addresses: []string{"10.0.0.1"}},
			{HostID: h3, Name: "eth0", MTU: 1500, Addresses: []string{"10.0.0.3"}},
		}, 9000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := UnderlayMTU(zones, tc.ifaces); got != tc.want {
				t.Errorf("UnderlayMTU = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestParseExpectedCodes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int // nil: invalid
	}{
		{"200", []int{200}},
		{"200,202", []int{200, 202}},
		{"200-202", []int{200, 201, 202}},
		{" 204 , 300-301", []int{204, 300, 301}},
		{"", nil},
		{"20x", nil},
		{"302-300", nil},
		{"99", nil},
		{"200-600", nil},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := ParseExpectedCodes(tc.in)
			if tc.want == nil {
				if ok {
					t.Errorf("accepted: %v", got)
				}
				return
			}
			if !ok || len(got) != len(tc.want) {
				t.Fatalf("got %v, %v; want %v", got, ok, tc.want)
			}
			for _, c := range tc.want {
				if !got[c] {
					t.Errorf("%d missing from %v", c, got)
				}
			}
		})
	}
}
