package cli

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// fieldKind says how a flag's text becomes JSON.
type fieldKind int

const (
	kString     fieldKind = iota // string; "" means null
	kBool                        // bool
	kInt                         // integer
	kIP                          // IPv4 or IPv6 address
	kMAC                         // MAC address
	kPrefix                      // CIDR split into key (address) and key2 (length); a bare address is /32
	kPortAddr                    // router port CIDR: portAddress, networkAddress and networkLength
	kRange                       // L4 port range "p" or "p-q" → {"start","end"}
	kProto                       // IP protocol name or number
	kEthertype                   // ethertype name or number
	kEnum                        // one of enum
	kRef                         // an object named by UUID or unique name → its id; "" or "none" → null
	kRefList                     // repeatable kRef → [ids]
	kStringList                  // repeatable or comma-separated strings
	kIPList                      // repeatable or comma-separated IP addresses
	kNATTargets                  // repeatable addr[-addr][:port[-port]] → natTargets
)

// field binds one flag to one JSON key (two for kPrefix).
type field struct {
	flag  string
	key   string
	key2  string
	kind  fieldKind
	usage string
	ref   *kind    // kRef, kRefList: what the flag names
	enum  []string // kEnum: the accepted values
}

// fieldValue is the pflag.Value of a field: it checks syntax when the flag is
// parsed, so a typo fails before any request is sent.
type fieldValue struct {
	f    *field
	vals []string
}

func (v *fieldValue) String() string { return strings.Join(v.vals, ",") }

func (v *fieldValue) Set(s string) error {
	if v.f.isList() {
		for part := range strings.SplitSeq(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				if _, err := v.f.parse(part); err != nil {
					return err
				}
				v.vals = append(v.vals, part)
			}
		}
		return nil
	}
	if _, err := v.f.parse(s); err != nil {
		return err
	}
	v.vals = []string{s}
	return nil
}

func (v *fieldValue) Type() string {
	switch v.f.kind {
	case kBool:
		return "bool"
	case kInt:
		return "int"
	case kIP:
		return "ip"
	case kMAC:
		return "mac"
	case kPrefix, kPortAddr:
		return "cidr"
	case kRange:
		return "range"
	case kProto:
		return "proto"
	case kEthertype:
		return "ethertype"
	case kEnum:
		return "string"
	case kRef:
		return v.f.ref.noun
	case kRefList:
		return v.f.ref.noun + "s"
	case kStringList:
		return "strings"
	case kIPList:
		return "ips"
	case kNATTargets:
		return "target"
	}
	return "string"
}

func (f *field) isList() bool {
	return f.kind == kRefList || f.kind == kStringList || f.kind == kIPList || f.kind == kNATTargets
}

// addTo declares the field's flag on fs.
func (f *field) addTo(fs *pflag.FlagSet) {
	usage := f.usage
	if f.kind == kEnum {
		usage += ": " + strings.Join(f.enum, ", ")
	}
	fs.Var(&fieldValue{f: f}, f.flag, usage)
	if f.kind == kBool {
		fs.Lookup(f.flag).NoOptDefVal = "true"
	}
}

// protocols are the names --proto accepts.
var protocols = map[string]int{"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "icmpv6": 58, "sctp": 132}

// ethertypes are the names --dl-type accepts.
var ethertypes = map[string]int{"ipv4": 0x0800, "arp": 0x0806, "vlan": 0x8100, "ipv6": 0x86dd}

// parse converts one flag text to its JSON value, without network access
// (references are resolved later, by resolveRef).
func (f *field) parse(s string) (any, error) {
	switch f.kind {
	case kString:
		if s == "" {
			return nil, nil
		}
		return s, nil
	case kBool:
		return strconv.ParseBool(s)
	case kInt:
		n, err := strconv.ParseInt(s, 0, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		return n, nil
	case kIP, kIPList:
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP address", s)
		}
		return a.String(), nil
	case kMAC:
		if _, err := net.ParseMAC(s); err != nil || strings.Count(s, ":") != 5 {
			return nil, fmt.Errorf("%q is not a MAC address like aa:bb:cc:dd:ee:ff", s)
		}
		return s, nil
	case kPrefix, kPortAddr:
		return parsePrefix(s)
	case kRange:
		lo, hi, err := parseRange(s)
		if err != nil {
			return nil, err
		}
		return map[string]any{"start": lo, "end": hi}, nil
	case kProto:
		return parseNumberOrName(s, protocols, 255, "an IP protocol (tcp, udp, icmp, ... or 0-255)")
	case kEthertype:
		return parseNumberOrName(s, ethertypes, 0xffff, "an ethertype (ipv4, arp, ipv6 or a number such as 0x0800)")
	case kEnum:
		if !slices.Contains(f.enum, s) {
			return nil, fmt.Errorf("%q is not one of %s", s, strings.Join(f.enum, ", "))
		}
		return s, nil
	case kRef, kRefList, kStringList:
		return s, nil
	case kNATTargets:
		return parseNATTarget(s)
	}
	return nil, fmt.Errorf("flag --%s: unknown kind", f.flag)
}

func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR such as 10.0.0.0/24", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/24", s)
	}
	return p, nil
}

// parseRange reads "p" or "p-q" with 0 <= p <= q <= 65535.
func parseRange(s string) (int, int, error) {
	loText, hiText, isRange := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(loText)
	hi := lo
	var err2 error
	if isRange {
		hi, err2 = strconv.Atoi(hiText)
	}
	if err1 != nil || err2 != nil || lo < 0 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("%q is not a port range such as 80 or 1024-2047", s)
	}
	return lo, hi, nil
}

func parseNumberOrName(s string, names map[string]int, max int64, what string) (any, error) {
	if n, ok := names[strings.ToLower(s)]; ok {
		return n, nil
	}
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil || n < 0 || n > max {
		return nil, fmt.Errorf("%q is not %s", s, what)
	}
	return n, nil
}

// parseNATTarget reads addr[-addr][:port[-port]] into a natTargets element.
func parseNATTarget(s string) (map[string]any, error) {
	addrs, ports, hasPorts := strings.Cut(s, ":")
	fromText, toText, isRange := strings.Cut(addrs, "-")
	if !isRange {
		toText = fromText
	}
	from, err1 := netip.ParseAddr(fromText)
	to, err2 := netip.ParseAddr(toText)
	if err1 != nil || err2 != nil || !from.Is4() || !to.Is4() || to.Less(from) {
		return nil, fmt.Errorf("%q is not a NAT target such as 192.0.2.1, 192.0.2.1-192.0.2.9 or 192.0.2.1:1024-2047", s)
	}
	t := map[string]any{"addressFrom": from.String(), "addressTo": to.String(), "portFrom": 0, "portTo": 0}
	if hasPorts {
		lo, hi, err := parseRange(ports)
		if err != nil {
			return nil, fmt.Errorf("NAT target %q: %w", s, err)
		}
		t["portFrom"], t["portTo"] = lo, hi
	}
	return t, nil
}

// applyFields writes every flag of fields the user set into body. It
// resolves references through s.
func (s *session) applyFields(cmd *cobra.Command, fields []field, body Object) error {
	for i := range fields {
		f := &fields[i]
		fl := cmd.Flags().Lookup(f.flag)
		if fl == nil || !fl.Changed {
			continue
		}
		vals := fl.Value.(*fieldValue).vals
		if err := s.applyField(f, vals, body); err != nil {
			return fmt.Errorf("--%s: %w", f.flag, err)
		}
	}
	return nil
}

func (s *session) applyField(f *field, vals []string, body Object) error {
	switch f.kind {
	case kRef:
		if vals[0] == "" || vals[0] == "none" {
			body[f.key] = nil
			return nil
		}
		id, err := s.resolveID(f.ref, vals[0])
		if err != nil {
			return err
		}
		body[f.key] = id
	case kRefList:
		ids := make([]string, 0, len(vals))
		for _, v := range vals {
			id, err := s.resolveID(f.ref, v)
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		body[f.key] = ids
	case kStringList:
		body[f.key] = slices.Clone(vals)
	case kIPList:
		addrs := make([]string, 0, len(vals))
		for _, v := range vals {
			a, err := netip.ParseAddr(v)
			if err != nil {
				return fmt.Errorf("%q is not an IP address", v)
			}
			addrs = append(addrs, a.String())
		}
		body[f.key] = addrs
	case kNATTargets:
		targets := make([]any, 0, len(vals))
		for _, v := range vals {
			t, err := parseNATTarget(v)
			if err != nil {
				return err
			}
			targets = append(targets, t)
		}
		body[f.key] = targets
	case kPrefix:
		p, err := parsePrefix(vals[0])
		if err != nil {
			return err
		}
		body[f.key] = p.Addr().String()
		body[f.key2] = p.Bits()
	case kPortAddr:
		p, err := parsePrefix(vals[0])
		if err != nil {
			return err
		}
		body["portAddress"] = p.Addr().String()
		body["networkAddress"] = p.Masked().Addr().String()
		body["networkLength"] = p.Bits()
		body["portSubnet"] = []string{p.String()}
	default:
		v, err := f.parse(vals[0])
		if err != nil {
			return err
		}
		body[f.key] = v
	}
	return nil
}
