package neutron

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

// ErrUnsupported marks a Neutron request whose translation this project
// does not implement; the API answers 501 with the message.
var ErrUnsupported = errors.New("not supported")

func unsupported(format string, args ...any) error {
	return topology.Errorf(ErrUnsupported, format, args...)
}

func invalid(format string, args ...any) error {
	return topology.Errorf(topology.ErrInvalid, format, args...)
}

func notFound(format string, args ...any) error {
	return topology.Errorf(topology.ErrNotFound, format, args...)
}

// txn is one translation's view of a store transaction, with the helpers
// the translators share.
type txn struct {
	tx *nsdb.Tx
	// randInt returns a value in [0, n): tunnel keys.
	randInt func(n int64) int64
}

// load reads a Neutron object; a missing one is an error naming it and
// why it was needed.
func load[T topology.Object](t *txn, id ID, what string) (*T, error) {
	var o T
	if err := t.tx.Get(o.Kind(), id.String(), &o); err != nil {
		if errors.Is(err, topology.ErrNotFound) {
			return nil, invalid("%s: %s %s does not exist", what, topology.Singular(o.Kind()), id)
		}
		return nil, err
	}
	return &o, nil
}

// lookup reads an object; nil when it does not exist.
func lookup[T topology.Object](t *txn, id ID) (*T, error) {
	var o T
	if err := t.tx.Get(o.Kind(), id.String(), &o); err != nil {
		if errors.Is(err, topology.ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	return &o, nil
}

// remove deletes an object with the topology's cascades; an absent object
// is not an error (deletes are idempotent).
func (t *txn) remove(kind string, id ID) error {
	err := topology.Delete(t.tx, kind, id.String())
	if errors.Is(err, topology.ErrNotFound) {
		return nil
	}
	return err
}

// createChain creates an empty chain.
func (t *txn) createChain(id ID, name, tenant string) error {
	c := topology.Chain{ID: id, Name: topology.Str(name), RuleIDs: []ID{}}
	if tenant != "" {
		c.TenantID = topology.Str(tenant)
	}
	return t.tx.Create(&c)
}

// Positions for addRule.
const (
	appendRule  = -1
	prependRule = 0
)

// addRule creates r in its chain at pos (appendRule, or an index).
func (t *txn) addRule(r topology.Rule, pos int) error {
	var c topology.Chain
	if err := t.tx.Get(topology.KindChain, r.ChainID.String(), &c); err != nil {
		return fmt.Errorf("add rule %s: chain %s: %w", r.ID, r.ChainID, err)
	}
	r.Normalize()
	if pos < 0 || pos > len(c.RuleIDs) {
		pos = len(c.RuleIDs)
	}
	c.RuleIDs = slices.Insert(slices.Clone(c.RuleIDs), pos, r.ID)
	if err := t.tx.Create(&r); err != nil {
		return err
	}
	return t.tx.Put(&c)
}

// deleteRule removes a rule from its chain; an absent rule is not an
// error.
func (t *txn) deleteRule(id ID) error {
	return t.remove(topology.KindRule, id)
}

// clearRules deletes every rule of a chain, keeping the chain.
func (t *txn) clearRules(chain ID) error {
	var c topology.Chain
	if err := t.tx.Get(topology.KindChain, chain.String(), &c); err != nil {
		return err
	}
	for _, r := range c.RuleIDs {
		if err := t.tx.Delete(topology.KindRule, r.String()); err != nil {
			return err
		}
	}
	c.RuleIDs = []ID{}
	return t.tx.Put(&c)
}

// createRoute creates a route unless one with its id exists.
func (t *txn) createRoute(r topology.Route) error {
	if ok, err := t.tx.Exists(topology.KindRoute, r.ID.String()); err != nil || ok {
		return err
	}
	return t.tx.Create(&r)
}

// hostByName returns the id of the host named name. A host no agent has
// registered yet is created, so that its agent adopts it (and the ports
// bound to it) when it starts.
func (t *txn) hostByName(name string) (ID, error) {
	hosts, err := topology.ListOf[topology.Host](t.tx)
	if err != nil {
		return ID{}, err
	}
	var found []ID
	for _, h := range hosts {
		if h.Name != nil && *h.Name == name {
			found = append(found, h.ID)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		h := topology.Host{ID: DerivedID(ID{}, "host/"+name), Name: topology.Str(name), FloodingProxyWeight: 1,
			ContainerWeight: 1, ContainerLimit: -1}
		h.Normalize()
		return h.ID, t.tx.Create(&h)
	}
	return ID{}, invalid("binding:host_id %q names %d hosts; give each host a unique name", name, len(found))
}

// seedState writes a persistent state key (a MAC or ARP entry).
func (t *txn) seedState(key string, value string) error { return t.tx.PutState(key, []byte(value)) }

// unseedState deletes a state key if it still holds value (an entry that
// changed meanwhile belongs to someone else now).
func (t *txn) unseedState(key string, value string) error {
	v, err := t.tx.GetState(key)
	if err != nil || v == nil || string(v) != value {
		return err
	}
	return t.tx.DeleteState(key)
}

// parseMAC parses a Neutron MAC address.
func parseMAC(s string) ([6]byte, error) {
	m, ok := topology.ParseMAC(s)
	if !ok {
		return m, invalid("mac_address %q is not a MAC address", s)
	}
	return m, nil
}

// parseAddr4 parses an IPv4 address; IPv6 is refused as unsupported.
func parseAddr4(field, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, invalid("%s %q is not an IP address", field, s)
	}
	if !a.Is4() {
		return a, unsupported("%s %s: IPv6 addresses are not supported (the simulation routes and filters IPv4 only)", field, s)
	}
	return a, nil
}

// parsePrefix4 parses an IPv4 prefix (an address alone is a /32).
func parsePrefix4(field, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, err2 := netip.ParseAddr(s)
		if err2 != nil {
			return p, invalid("%s %q is not a CIDR", field, s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if !p.Addr().Is4() {
		return p, unsupported("%s %s: IPv6 prefixes are not supported (the simulation routes and filters IPv4 only)", field, s)
	}
	return p, nil
}

func itoa(n int) string { return strconv.Itoa(n) }

// condPrefix sets an address and length pair of a condition.
func condPrefix(p netip.Prefix) (*string, int) {
	return topology.Str(p.Addr().String()), p.Bits()
}
