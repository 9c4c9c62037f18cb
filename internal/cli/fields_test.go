package cli

import (
	"fmt"
	"maps"
	"strconv"
	"testing"
)

func TestParseNATTarget(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want map[string]any // nil: an error
	}{
		{"single address", "192.0.2.1", map[string]any{"addressFrom": "192.0.2.1", "addressTo": "192.0.2.1", "portFrom": 0, "portTo": 0}},
		{"address range", "192.0.2.1-192.0.2.9", map[string]any{"addressFrom": "192.0.2.1", "addressTo": "192.0.2.9", "portFrom": 0, "portTo": 0}},
		{"address and port range", "192.0.2.1:1024-2047", map[string]any{"addressFrom": "192.0.2.1", "addressTo": "192.0.2.1", "portFrom": 1024, "portTo": 2047}},
		{"single port", "192.0.2.1-192.0.2.2:80", map[string]any{"addressFrom": "192.0.2.1", "addressTo": "192.0.2.2", "portFrom": 80, "portTo": 80}},
		{"reversed addresses", "192.0.2.9-192.0.2.1", nil},
		{"reversed ports", "192.0.2.1:2047-1024", nil},
		{"port too big", "192.0.2.1:65536", nil},
		{"IPv6", "2001:db8::1", nil},
		{"empty", "", nil},
		{"not an address", "host.example", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseNATTarget(tc.in)
			if tc.want == nil {
				if err == nil {
					t.Fatalf("parseNATTarget(%q) = %v, want an error", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("parseNATTarget(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestFieldParse(t *testing.T) {
	cases := []struct {
		name string
		f    field
		in   string
		want string // fmt.Sprint of the value; "error" for an error
	}{
		{"proto by name", field{kind: kProto}, "UDP", "17"},
		{"proto by number", field{kind: kProto}, "132", "132"},
		{"proto out of range", field{kind: kProto}, "256", "error"},
		{"ethertype by name", field{kind: kEthertype}, "arp", "2054"},
		{"ethertype in hex", field{kind: kEthertype}, "0x86dd", "34525"},
		{"port range", field{kind: kRange}, "22", "map[end:22 start:22]"},
		{"open port range", field{kind: kRange}, "10-", "error"},
		{"bare address is a host prefix", field{kind: kPrefix}, "10.0.0.1", "10.0.0.1/32"},
		{"prefix too long", field{kind: kPrefix}, "10.0.0.0/33", "error"},
		{"MAC", field{kind: kMAC}, "02:00:00:00:00:0a", "02:00:00:00:00:0a"},
		{"MAC with dashes", field{kind: kMAC}, "02-00-00-00-00-0a", "error"},
		{"IP is canonicalised", field{kind: kIP}, "2001:DB8::1", "2001:db8::1"},
		{"enum", field{kind: kEnum, enum: []string{"gre", "vxlan"}}, "vxlan", "vxlan"},
		{"enum is case-sensitive", field{kind: kEnum, enum: []string{"gre", "vxlan"}}, "VXLAN", "error"},
		{"empty string is null", field{kind: kString}, "", "<nil>"},
		{"int", field{kind: kInt}, "-1", "-1"},
		{"not an int", field{kind: kInt}, "one", "error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := tc.f.parse(tc.in)
			got := fmt.Sprint(v)
			if err != nil {
				got = "error"
			}
			if got != tc.want {
				t.Errorf("parse(%q) = %s (err %v), want %s", tc.in, got, err, tc.want)
			}
		})
	}
}

// FuzzParseNATTarget checks that an accepted target is well-formed and
// survives rendering and parsing again.
func FuzzParseNATTarget(f *testing.F) {
	for _, seed := range []string{
		"192.0.2.1",                      // single address
		"192.0.2.1-192.0.2.9",            // address range
		"192.0.2.1:1024-2047",            // port range
		"192.0.2.1-192.0.2.9:80",         // single port
		"192.0.2.9-192.0.2.1",            // reversed
		"192.0.2.1:",                     // empty ports
		"192.0.2.1:-",                    // dash only
		"::1",                            // IPv6
		"192.0.2.1:1-2:3",                // two colons
		"192.0.2.1-192.0.2.2-192.0.2.3",  // three addresses
		"192.0.2.1:99999999999999999999", // overflow
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseNATTarget(s)
		if err != nil {
			return
		}
		lo, hi := got["portFrom"].(int), got["portTo"].(int)
		if lo < 0 || hi > 65535 || lo > hi {
			t.Fatalf("parseNATTarget(%q) accepted ports %d-%d", s, lo, hi)
		}
		rendered := natTarget(Object(got))
		again, err := parseNATTarget(rendered)
		if err != nil {
			t.Fatalf("parseNATTarget(%q) = %v renders as %q, which does not parse: %v", s, got, rendered, err)
		}
		if !maps.Equal(got, again) {
			t.Fatalf("%q → %v → %q → %v", s, got, rendered, again)
		}
	})
}

// FuzzParseRange checks that an accepted port range is ordered and in range.
func FuzzParseRange(f *testing.F) {
	for _, seed := range []string{"80", "1024-2047", "0", "65535", "65536", "-1", "5-4", "1-2-3", "", "+7"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lo, hi, err := parseRange(s)
		if err != nil {
			return
		}
		if lo < 0 || hi > 65535 || lo > hi {
			t.Fatalf("parseRange(%q) = %d-%d", s, lo, hi)
		}
		again := strconv.Itoa(lo) + "-" + strconv.Itoa(hi)
		if lo2, hi2, err := parseRange(again); err != nil || lo2 != lo || hi2 != hi {
			t.Fatalf("parseRange(%q) = %d-%d, but %q gives %d-%d, %v", s, lo, hi, again, lo2, hi2, err)
		}
	})
}
