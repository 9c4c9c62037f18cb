package dhcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// valueKind says how the text of an extra option becomes its wire value.
type valueKind uint8

const (
	vString     valueKind = iota // the text's bytes
	vIPs                         // one or more IPv4 addresses, comma separated
	vIP                          // exactly one IPv4 address
	vUint16s                     // one or more 16-bit numbers
	vUint32s                     // one or more 32-bit numbers
	vInt32                       // one signed 32-bit number (time offset)
	vBool                        // true/false, 1/0
	vByte                        // a number 0-255
	vAddrMasks                   // address/length pairs encoded as address then mask (policy filter)
	vRoutes                      // classless routes: prefix, gateway, prefix, gateway...
	vDomains                     // a domain search list (RFC 3397, uncompressed)
	vNodeType                    // NetBIOS node type: 1, 2, 4 or 8
	vEmpty                       // no value (rapid commit)
	vFlagIPs                     // a boolean byte then IPv4 addresses (SLP directory agent)
	vFlagString                  // a boolean byte then text (SLP service scope)
	vCodeString                  // a status code 0-4 then text (status code)
	vState                       // a number 1-8 (DHCP state)
)

// optionSpec is one entry of the extra-option table.
type optionSpec struct {
	code  uint8
	kind  valueKind
	names []string // canonical: lowercase, words joined by '-'
}

// optionTable lists the options an operator may give a host by name. The
// names are MidoNet's (DHCPOption.Code, spelling mistakes included, so its
// stored hosts keep working) plus the names dnsmasq and Neutron users know.
// A name is matched case-insensitively, with '_' and ' ' taken as '-'.
var optionTable = []optionSpec{
	{1, vIP, []string{"subnet-mask"}},
	{2, vInt32, []string{"time-offset"}},
	{3, vIPs, []string{"router"}},
	{4, vIPs, []string{"time-server"}},
	{5, vIPs, []string{"name-server"}},
	{6, vIPs, []string{"dns", "dns-server", "domain-name-servers"}},
	{7, vIPs, []string{"log-server"}},
	{8, vIPs, []string{"quotes-server", "cookie-server"}},
	{9, vIPs, []string{"lpr-server"}},
	{10, vIPs, []string{"impress-server"}},
	{11, vIPs, []string{"resource-location-server"}},
	{12, vString, []string{"host-name", "hostname"}},
	{13, vUint16s, []string{"boot-file-size"}},
	{14, vString, []string{"merit-dump-file"}},
	{15, vString, []string{"domain-name"}},
	{16, vIP, []string{"swap-server"}},
	{17, vString, []string{"root-path"}},
	{18, vString, []string{"extension-path"}},
	{19, vBool, []string{"ip-fowarding-enable-disable", "ip-forward-enable"}},
	{20, vBool, []string{"non-local-source-routing-enable-disable"}},
	{21, vAddrMasks, []string{"policy-filter"}},
	{22, vUint16s, []string{"maximum-datagram-reassembly-size", "max-datagram-reassembly"}},
	{23, vByte, []string{"default-ip-ttl", "default-ttl"}},
	{24, vUint32s, []string{"path-mtu-aging-timeout"}},
	{25, vUint16s, []string{"path-mtu-plateau-table"}},
	{26, vUint16s, []string{"interface-mtu", "mtu"}},
	{27, vBool, []string{"all-subnets-are-local", "all-subnets-local"}},
	{28, vIP, []string{"broadcast-address", "broadcast"}},
	{29, vBool, []string{"perform-mask-discovery"}},
	{30, vBool, []string{"mask-supplier"}},
	{31, vBool, []string{"performe-router-discovery", "router-discovery"}},
	{32, vIP, []string{"router-solitation-address", "router-solicitation"}},
	{33, vIPs, []string{"static-route"}},
	{34, vBool, []string{"trailer-encapsulation-option", "trailer-encapsulation"}},
	{35, vUint32s, []string{"arp-cache-timeout", "arp-timeout"}},
	{36, vBool, []string{"ethernet-encapsulation", "ethernet-encap"}},
	{37, vByte, []string{"tcp-default-ttl", "tcp-ttl"}},
	{38, vUint32s, []string{"tcp-keepalive-interval", "tcp-keepalive"}},
	{39, vBool, []string{"tcp-keepalive-garbage"}},
	{40, vString, []string{"nis-domain"}},
	{41, vIPs, []string{"nis-servers", "nis-server"}},
	{42, vIPs, []string{"ntp-servers", "ntp-server"}},
	{43, vString, []string{"vendor-specific-information", "vendor-encap"}},
	{44, vIPs, []string{"netbios-over-tcp-ip-name-server", "netbios-ns"}},
	{45, vIPs, []string{"netbios-over-tcp-ip-datagram-distribution-server", "netbios-dd"}},
	{46, vNodeType, []string{"netbios-over-tcp-ip-node-type", "netbios-nodetype"}},
	{47, vString, []string{"netbios-over-tcp-ip-scope", "netbios-scope"}},
	{48, vIPs, []string{"x-window-system-font-srver", "x-windows-fs"}},
	{49, vIPs, []string{"x-window-system-display-manger", "x-windows-dm"}},
	{51, vUint32s, []string{"ip-lease-time", "lease-time"}},
	{56, vString, []string{"error-message"}},
	{57, vUint16s, []string{"maximum-dhcp-message-size"}},
	{58, vUint32s, []string{"renewal-time-value", "renewal-time", "t1"}},
	{59, vUint32s, []string{"rebinding-time-value", "rebinding-time", "t2"}},
	{60, vString, []string{"class-identifier", "vendor-class"}},
	{62, vString, []string{"nwip-domain"}},
	{63, vString, []string{"nwip-suboptions"}},
	{64, vString, []string{"network-information-srevice-and-domain", "nis+-domain"}},
	{65, vIPs, []string{"network-information-srevice-and-servers", "nis+-server"}},
	{66, vString, []string{"tftp-server-name"}},
	{67, vString, []string{"bootfile-name"}},
	{68, vIPs, []string{"mobile-ip-home-agent", "mobile-ip-home"}},
	{69, vIPs, []string{"simple-mail-transport-protocol-server", "smtp-server"}},
	{70, vIPs, []string{"post-office-protocol-server", "pop3-server"}},
	{71, vIPs, []string{"network-news-transport-protocol-server", "nntp-server"}},
	{72, vIPs, []string{"default-world-wide-web-server", "www-server"}},
	{73, vIPs, []string{"default-finger-server", "finger-server"}},
	{74, vIPs, []string{"default-internet-relay-chat-server", "irc-server"}},
	{75, vIPs, []string{"streettalk-server"}},
	{76, vIPs, []string{"streettalk-directory-assistance-server"}},
	{77, vString, []string{"user-class"}},
	{78, vFlagIPs, []string{"slp-directory-agent"}},
	{79, vFlagString, []string{"slp-service-scope"}},
	{80, vEmpty, []string{"rapid-commit"}},
	{81, vString, []string{"client-fqdn"}},
	{85, vIPs, []string{"nds-servers"}},
	{86, vString, []string{"nds-tree-name"}},
	{87, vString, []string{"nds-context"}},
	{92, vIPs, []string{"associated-ip"}},
	{93, vUint16s, []string{"system-architecture", "client-arch"}},
	{95, vIPs, []string{"ldap-servers"}},
	{100, vString, []string{"pcode"}},
	{101, vString, []string{"tcode"}},
	{114, vString, []string{"default-url"}},
	{116, vBool, []string{"auto-configure"}},
	{117, vUint16s, []string{"name-search"}},
	{118, vIP, []string{"subnet-selection"}},
	{119, vDomains, []string{"domain-search"}},
	{120, vString, []string{"sip-servers", "sip-server"}},
	{121, vRoutes, []string{"classless-static-routes", "classless-static-route"}},
	{128, vIPs, []string{"tftp-server"}},
	{136, vIPs, []string{"pana-agent"}},
	{138, vIPs, []string{"capwap-ac-v4"}},
	{142, vIPs, []string{"andsf-servers"}},
	{150, vIPs, []string{"tftp-server-address"}},
	{151, vCodeString, []string{"status-code"}},
	{152, vUint32s, []string{"dhcp-base-time"}},
	{153, vUint32s, []string{"dhcp-state-start-time"}},
	{154, vUint32s, []string{"dhcp-query-start-time"}},
	{155, vUint32s, []string{"dhcp-query-end-time"}},
	{156, vState, []string{"dhcp-state"}},
	{157, vByte, []string{"data-source"}},
	{209, vString, []string{"config-file"}},
	{210, vString, []string{"path-prefix"}},
	{211, vUint32s, []string{"reboot-time"}},
}

var (
	optionByName = map[string]*optionSpec{}
	optionByCode = map[uint8]*optionSpec{}
)

func init() {
	for i := range optionTable {
		o := &optionTable[i]
		optionByCode[o.code] = o
		for _, n := range o.names {
			optionByName[n] = o
		}
	}
}

// ErrUnknownOption is wrapped by ParseOption4 for a name it does not know.
var ErrUnknownOption = errors.New("unknown DHCP option")

// reservedOptions are the options the server alone may set: giving one as
// an extra option would break the protocol.
var reservedOptions = map[uint8]string{
	OptPad: "pad", OptRequestedIP: "requested address", OptOverload: "option overload",
	OptMessageType: "message type", OptServerID: "server identifier (set the subnet's serverAddr)",
	OptParamList: "parameter request list", OptRelayAgentInfo: "relay agent information", OptEnd: "end",
}

// ParseOption4 parses an extra DHCPv4 option given by name (or number,
// 1-254) and value text, as a DHCP host's extraDhcpOpts entry, into its code
// and wire value. Its errors say what is wrong and what is expected.
func ParseOption4(name, value string) (code uint8, data []byte, err error) {
	spec, err := lookupOption(name)
	if err != nil {
		return 0, nil, err
	}
	data, err = parseValue(spec.kind, value)
	if err != nil {
		return 0, nil, fmt.Errorf("DHCP option %q (%d): value %q: %w", name, spec.code, value, err)
	}
	return spec.code, data, nil
}

func lookupOption(name string) (*optionSpec, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	n = strings.NewReplacer("_", "-", " ", "-").Replace(n)
	if c, err := strconv.Atoi(n); err == nil {
		if c < 1 || c > 254 {
			return nil, fmt.Errorf("%w %q: a code must be 1 to 254", ErrUnknownOption, name)
		}
		if why, ok := reservedOptions[uint8(c)]; ok {
			return nil, fmt.Errorf("DHCP option %q (%s) is set by the server and cannot be given per host", name, why)
		}
		if spec, ok := optionByCode[uint8(c)]; ok {
			return spec, nil
		}
		// A code the table lacks carries its text as is.
		return &optionSpec{code: uint8(c), kind: vString}, nil
	}
	spec, ok := optionByName[n]
	if !ok {
		return nil, fmt.Errorf("%w %q: give a number 1-254 or a name such as dns-server, domain-name, "+
			"domain-search, interface-mtu, ntp-server, bootfile-name, classless-static-route", ErrUnknownOption, name)
	}
	return spec, nil
}

func splitList(s string) []string {
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

func parseIPv4(s string) ([4]byte, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || !a.Is4() {
		return [4]byte{}, fmt.Errorf("%q is not an IPv4 address", s)
	}
	return a.As4(), nil
}

func parsePrefix4(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 prefix such as 10.0.0.0/24", s)
	}
	return p.Masked(), nil
}

// parseSmall parses a number written in decimal or 0x-hexadecimal within
// [lo, hi].
func parseSmall(s string, lo, hi int64) (int64, error) {
	n, err := strconv.ParseInt(strings.ToLower(strings.TrimSpace(s)), 0, 64)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("want a number from %d to %d", lo, hi)
	}
	return n, nil
}

func parseBool(s string) (byte, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1", "0x1", "0x01", "yes", "on":
		return 1, nil
	case "false", "0", "0x0", "0x00", "no", "off":
		return 0, nil
	}
	return 0, errors.New("want true or false")
}

func parseValue(kind valueKind, v string) ([]byte, error) {
	var out []byte
	switch kind {
	case vString:
		if v == "" {
			return nil, errors.New("want a non-empty value")
		}
		out = []byte(v)
	case vIPs:
		for _, s := range splitList(v) {
			a, err := parseIPv4(s)
			if err != nil {
				return nil, err
			}
			out = append(out, a[:]...)
		}
	case vIP:
		a, err := parseIPv4(v)
		if err != nil {
			return nil, err
		}
		out = a[:]
	case vUint16s, vUint32s:
		for _, s := range splitList(v) {
			if kind == vUint16s {
				n, err := parseSmall(s, 0, 0xffff)
				if err != nil {
					return nil, err
				}
				out = binary.BigEndian.AppendUint16(out, uint16(n))
			} else {
				n, err := parseSmall(s, 0, 0xffffffff)
				if err != nil {
					return nil, err
				}
				out = binary.BigEndian.AppendUint32(out, uint32(n))
			}
		}
	case vInt32:
		n, err := parseSmall(v, -1<<31, 1<<31-1)
		if err != nil {
			return nil, err
		}
		out = binary.BigEndian.AppendUint32(out, uint32(int32(n)))
	case vBool:
		b, err := parseBool(v)
		if err != nil {
			return nil, err
		}
		out = []byte{b}
	case vByte:
		n, err := parseSmall(v, 0, 255)
		if err != nil {
			return nil, err
		}
		out = []byte{byte(n)}
	case vNodeType:
		n, err := parseSmall(v, 1, 8)
		if err != nil || (n != 1 && n != 2 && n != 4 && n != 8) {
			return nil, errors.New("want a NetBIOS node type: 1, 2, 4 or 8")
		}
		out = []byte{byte(n)}
	case vState:
		n, err := parseSmall(v, 1, 8)
		if err != nil {
			return nil, err
		}
		out = []byte{byte(n)}
	case vAddrMasks:
		for _, s := range splitList(v) {
			p, err := parsePrefix4(s)
			if err != nil {
				return nil, err
			}
			a := p.Addr().As4()
			m := uint32(0)
			if p.Bits() > 0 {
				m = ^uint32(0) << (32 - p.Bits())
			}
			out = binary.BigEndian.AppendUint32(append(out, a[:]...), m)
		}
	case vRoutes:
		parts := splitList(v)
		if len(parts)%2 != 0 {
			return nil, errors.New("want pairs: destination prefix, gateway, ...")
		}
		for i := 0; i < len(parts); i += 2 {
			p, err := parsePrefix4(parts[i])
			if err != nil {
				return nil, err
			}
			gw, err := parseIPv4(parts[i+1])
			if err != nil {
				return nil, err
			}
			out = appendClasslessRoute(out, p, gw)
		}
	case vDomains:
		for _, d := range splitList(v) {
			var err error
			if out, err = appendDomain(out, d); err != nil {
				return nil, err
			}
		}
	case vEmpty:
		out = []byte{}
	case vFlagIPs, vFlagString, vCodeString:
		first, rest, ok := strings.Cut(v, ",")
		if !ok {
			return nil, errors.New("want a flag, a comma, then the rest")
		}
		var b byte
		var err error
		if kind == vCodeString {
			var n int64
			n, err = parseSmall(first, 0, 4)
			b = byte(n)
		} else {
			b, err = parseBool(first)
		}
		if err != nil {
			return nil, err
		}
		out = []byte{b}
		if kind == vFlagIPs {
			tail, err := parseValue(vIPs, rest)
			if err != nil {
				return nil, err
			}
			out = append(out, tail...)
		} else {
			out = append(out, strings.TrimSpace(rest)...)
		}
	}
	return out, nil
}

// appendClasslessRoute appends one RFC 3442 route: the prefix length, the
// significant octets of the destination, then the gateway.
func appendClasslessRoute(b []byte, p netip.Prefix, gw [4]byte) []byte {
	a := p.Masked().Addr().As4()
	b = append(b, byte(p.Bits()))
	b = append(b, a[:(p.Bits()+7)/8]...)
	return append(b, gw[:]...)
}

// appendDomain appends domain name d in DNS label form (RFC 1035 3.1).
func appendDomain(b []byte, d string) ([]byte, error) {
	d = strings.TrimSuffix(strings.TrimSpace(d), ".")
	if d == "" || len(d) > 253 {
		return nil, fmt.Errorf("%q is not a domain name", d)
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 {
			return nil, fmt.Errorf("%q is not a domain name: labels are 1 to 63 characters", d)
		}
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0), nil
}
