package dhcp

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParseOption4(t *testing.T) {
	tests := []struct {
		name, value string
		code        uint8
		want        []byte
		err         string // a substring of the error, when it fails
	}{
		{name: "dns-server", value: "10.0.0.2, 8.8.8.8", code: 6, want: []byte{10, 0, 0, 2, 8, 8, 8, 8}},
		{name: "DNS", value: "1.1.1.1", code: 6, want: []byte{1, 1, 1, 1}},
		{name: "SUBNET_MASK", value: "255.255.0.0", code: 1, want: []byte{255, 255, 0, 0}},
		{name: "broadcast address", value: "10.0.0.255", code: 28, want: []byte{10, 0, 0, 255}},
		{name: "interface-mtu", value: "1400", code: 26, want: []byte{0x05, 0x78}},
		{name: "mtu", value: "0x5dc", code: 26, want: []byte{0x05, 0xdc}},
		{name: "26", value: "9000", code: 26, want: []byte{0x23, 0x28}},
		{name: "path-mtu-plateau-table", value: "68,296", code: 25, want: []byte{0, 68, 1, 0x28}},
		{name: "lease-time", value: "3600", code: 51, want: []byte{0, 0, 0x0e, 0x10}},
		{name: "time-offset", value: "-3600", code: 2, want: []byte{0xff, 0xff, 0xf1, 0xf0}},
		{name: "ip-forward-enable", value: "true", code: 19, want: []byte{1}},
		{name: "MASK_SUPPLIER", value: "0", code: 30, want: []byte{0}},
		{name: "default-ip-ttl", value: "64", code: 23, want: []byte{64}},
		{name: "netbios-nodetype", value: "0x8", code: 46, want: []byte{8}},
		{name: "policy-filter", value: "10.1.2.3/16", code: 21, want: []byte{10, 1, 0, 0, 255, 255, 0, 0}},
		{name: "classless-static-route", value: "169.254.169.254/32,10.0.0.2, 0.0.0.0/0,10.0.0.1", code: 121,
			want: []byte{32, 169, 254, 169, 254, 10, 0, 0, 2, 0, 10, 0, 0, 1}},
		{name: "classless_static_routes", value: "10.128.0.0/9,10.0.0.3", code: 121, want: []byte{9, 10, 128, 10, 0, 0, 3}},
		{name: "domain-search", value: "example.org, corp.example.org.", code: 119,
			want: []byte("\x07example\x03org\x00\x04corp\x07example\x03org\x00")},
		{name: "domain-name", value: "example.org", code: 15, want: []byte("example.org")},
		{name: "bootfile-name", value: "pxelinux.0", code: 67, want: []byte("pxelinux.0")},
		{name: "tftp-server", value: "10.0.0.9", code: 128, want: []byte{10, 0, 0, 9}},
		{name: "slp-directory-agent", value: "true,10.0.0.4", code: 78, want: []byte{1, 10, 0, 0, 4}},
		{name: "status-code", value: "2, busy", code: 151, want: []byte("\x02busy")},
		{name: "rapid-commit", value: "", code: 80, want: []byte{}},
		{name: "224", value: "site-local text", code: 224, want: []byte("site-local text")},

		{name: "no-such-option", value: "1", err: "unknown DHCP option"},
		{name: "0", value: "1", err: "1 to 254"},
		{name: "255", value: "1", err: "1 to 254"},
		{name: "53", value: "1", err: "set by the server"},
		{name: "54", value: "10.0.0.1", err: "serverAddr"},
		{name: "dns-server", value: "10.0.0.300", err: "not an IPv4 address"},
		{name: "dns-server", value: "fe80::1", err: "not an IPv4 address"},
		{name: "subnet-mask", value: "255.0.0.0,255.255.0.0", err: "not an IPv4 address"},
		{name: "mtu", value: "70000", err: "0 to 65535"},
		{name: "mtu", value: "big", err: "0 to 65535"},
		{name: "ip-forward-enable", value: "maybe", err: "true or false"},
		{name: "netbios-nodetype", value: "3", err: "1, 2, 4 or 8"},
		{name: "classless-static-route", value: "10.0.0.0/8", err: "pairs"},
		{name: "classless-static-route", value: "10.0.0.0/33,10.0.0.1", err: "not an IPv4 prefix"},
		{name: "domain-search", value: "a..b", err: "labels are 1 to 63"},
		{name: "domain-name", value: "", err: "non-empty"},
		{name: "status-code", value: "9,x", err: "0 to 4"},
	}
	for _, tc := range tests {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			code, got, err := ParseOption4(tc.name, tc.value)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || !bytes.Equal(got, tc.want) {
				t.Fatalf("= %d %v, want %d %v", code, got, tc.code, tc.want)
			}
		})
	}
	if _, _, err := ParseOption4("nonsense", "x"); !errors.Is(err, ErrUnknownOption) {
		t.Errorf("an unknown name gives %v, want ErrUnknownOption", err)
	}
}
