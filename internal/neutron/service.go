package neutron

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

// Service runs Neutron calls against the store: each call stores or
// removes the Neutron object and applies its translation in one
// transaction.
type Service struct {
	store *nsdb.Store
	log   *slog.Logger
	colls map[string]collection
	locks keyedLocks
}

// New returns a Service over store.
func New(store *nsdb.Store, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{store: store, log: log}
	s.colls = map[string]collection{
		"networks": &ops[Network, *Network]{s: s, kind: KindNetwork,
			onCreate: (*txn).createNetwork, onUpdate: (*txn).updateNetwork, onDelete: (*txn).deleteNetwork,
			after: func(ctx context.Context, n *Network) {
				s.dropState(ctx, nsdb.BridgeMACsPrefix(n.ID.String()), nsdb.BridgeARPPrefix(n.ID.String()))
			}},
		"subnets": &ops[Subnet, *Subnet]{s: s, kind: KindSubnet,
			onCreate: (*txn).createSubnet, onUpdate: (*txn).updateSubnet, onDelete: (*txn).deleteSubnet,
			hot: func(x *Subnet) []string { return []string{x.NetworkID.String()} }},
		"ports": &ops[Port, *Port]{s: s, kind: KindPort,
			onCreate: (*txn).createPort, onUpdate: (*txn).updatePort, onDelete: (*txn).deletePort,
			hot: func(x *Port) []string {
				keys := []string{x.NetworkID.String()}
				for _, g := range x.SecurityGroups {
					keys = append(keys, g.String())
				}
				return keys
			}},
		"routers": &ops[Router, *Router]{s: s, kind: KindRouter,
			onCreate: (*txn).createRouter, onUpdate: (*txn).updateRouter, onDelete: (*txn).deleteRouter,
			after: func(ctx context.Context, r *Router) { s.dropState(ctx, nsdb.RouterARPPrefix(r.ID.String())) }},
		"floating_ips": &ops[FloatingIP, *FloatingIP]{s: s, kind: KindFloatingIP,
			onCreate: (*txn).createFIP, onUpdate: (*txn).updateFIP, onDelete: (*txn).deleteFIP},
		"security_groups": &ops[SecurityGroup, *SecurityGroup]{s: s, kind: KindSecurityGroup,
			onCreate: (*txn).createSecurityGroup, onUpdate: (*txn).updateSecurityGroup, onDelete: (*txn).deleteSecurityGroup},
		"security_group_rules": &ops[SecurityGroupRule, *SecurityGroupRule]{s: s, kind: KindSecurityGroupRule,
			onCreate: (*txn).createSGRule, onDelete: (*txn).deleteSGRule,
			hot: func(x *SecurityGroupRule) []string { return []string{x.SecurityGroupID.String()} }},
	}
	return s
}

// Collections names the collections the service serves, as the API paths
// spell them.
func (s *Service) Collections() []string {
	return []string{"networks", "subnets", "ports", "routers", "floating_ips", "security_groups", "security_group_rules"}
}

// collection is what the HTTP layer calls for one kind of object.
type collection interface {
	// create stores and translates the objects of body (one object, or
	// an array for a bulk create) in one transaction and returns them as
	// stored.
	create(ctx context.Context, body []byte, bulk bool) ([]json.RawMessage, error)
	update(ctx context.Context, id ID, body []byte) (json.RawMessage, error)
	delete(ctx context.Context, id ID) error
	get(ctx context.Context, id ID) (json.RawMessage, error)
	list(ctx context.Context) ([]json.RawMessage, error)
	kindName() string
	canUpdate() bool
}

// Collection returns the collection of a path segment (networks, ...).
func (s *Service) collection(name string) (collection, bool) {
	c, ok := s.colls[name]
	return c, ok
}

// ops implements collection for one Neutron type.
type ops[T any, P interface {
	*T
	topology.Object
	Owner() string
}] struct {
	s        *Service
	kind     string
	onCreate func(*txn, P) error
	onUpdate func(*txn, P, P) error
	onDelete func(*txn, P) error
	// after runs once a delete committed: cleanup outside the store's
	// object space (state tables of a deleted device).
	after func(context.Context, P)
	// hot names the objects whose writers take turns (see keyedLocks).
	hot func(P) []string
}

// lockHot takes the turn of the objects an object's call writes.
func (o *ops[T, P]) lockHot(objs ...P) func() {
	if o.hot == nil {
		return func() {}
	}
	var keys []string
	for _, p := range objs {
		if p != nil {
			keys = append(keys, o.hot(p)...)
		}
	}
	return o.s.locks.lock(keys...)
}

// stored reads an object outside any transaction (nil if absent), to know
// which turns an update or delete takes.
func (o *ops[T, P]) stored(ctx context.Context, id ID) P {
	if o.hot == nil {
		return nil
	}
	p := P(new(T))
	if err := o.s.store.View(ctx, func(tx *nsdb.Tx) error { return tx.Get(o.kind, id.String(), p) }); err != nil {
		return nil
	}
	return p
}

func (o *ops[T, P]) kindName() string { return topology.Singular(o.kind[len("neutron_"):]) }
func (o *ops[T, P]) canUpdate() bool  { return o.onUpdate != nil }

func (s *Service) newTxn(tx *nsdb.Tx) *txn { return &txn{tx: tx, randInt: rand.Int64N} }

// idOf returns the id field of an object.
func idOf[T any, P interface {
	*T
	topology.Object
}](p P) (ID, error) {
	return topology.ParseID(p.ObjectID())
}

// decodeOne decodes a body into a new object and checks it has an id.
func decodeOne[T any, P interface {
	*T
	topology.Object
}](raw []byte, what string) (P, error) {
	o := P(new(T))
	if err := json.Unmarshal(raw, o); err != nil {
		return nil, invalid("%s: malformed body: %v", what, err)
	}
	if id, err := idOf[T](o); err != nil || id == (ID{}) {
		return nil, invalid("%s: the body has no id; Neutron sends the id of every object it creates", what)
	}
	return o, nil
}

func (o *ops[T, P]) create(ctx context.Context, body []byte, bulk bool) ([]json.RawMessage, error) {
	var raws []json.RawMessage
	if bulk {
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, invalid("bulk %s create: the body is not a JSON array of objects: %v", o.kindName(), err)
		}
	} else {
		raws = []json.RawMessage{body}
	}
	objs := make([]P, len(raws))
	for i, raw := range raws {
		p, err := decodeOne[T, P](raw, o.kindName())
		if err != nil {
			return nil, err
		}
		objs[i] = p
	}
	out := make([]json.RawMessage, len(objs))
	defer o.lockHot(objs...)()
	err := o.s.store.Update(ctx, func(tx *nsdb.Tx) error {
		t := o.s.newTxn(tx)
		for i, in := range objs {
			p := P(new(T))
			*p = *in // fresh copy: the transaction may run again
			// A retried create finds its object: the same one answers
			// again, another one with this id is a conflict.
			prev, err := tx.GetRaw(o.kind, p.ObjectID())
			if err == nil {
				if !sameObject(prev, raws[i]) {
					return topology.Errorf(topology.ErrExists, "%s %s already exists with other contents", o.kindName(), p.ObjectID())
				}
				out[i] = prev
				continue
			} else if !errors.Is(err, topology.ErrNotFound) {
				return err
			}
			if err := o.onCreate(t, p); err != nil {
				return err
			}
			if err := tx.Create(p); err != nil {
				return err
			}
			b, err := json.Marshal(p)
			if err != nil {
				return err
			}
			out[i] = b
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// sameObject reports whether a stored object is what body would store:
// every member of body has the stored value.
func sameObject(stored, body []byte) bool {
	var a, b map[string]json.RawMessage
	if json.Unmarshal(stored, &a) != nil || json.Unmarshal(body, &b) != nil {
		return false
	}
	for k, v := range b {
		if !jsonEqual(a[k], v) {
			return false
		}
	}
	return true
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

func (o *ops[T, P]) update(ctx context.Context, id ID, body []byte) (json.RawMessage, error) {
	if o.onUpdate == nil {
		return nil, topology.Errorf(topology.ErrConflict, "%s %s cannot be updated; delete it and create another", o.kindName(), id)
	}
	in := P(new(T))
	if err := json.Unmarshal(body, in); err != nil {
		return nil, invalid("%s %s: malformed body: %v", o.kindName(), id, err)
	}
	if bid, err := idOf[T](in); err == nil && bid != (ID{}) && bid != id {
		return nil, invalid("%s %s: the body's id %s differs from the URL's", o.kindName(), id, bid)
	}
	var out json.RawMessage
	defer o.lockHot(o.stored(ctx, id), in)()
	err := o.s.store.Update(ctx, func(tx *nsdb.Tx) error {
		old := P(new(T))
		if err := tx.Get(o.kind, id.String(), old); err != nil {
			if errors.Is(err, topology.ErrNotFound) {
				return notFound("%s %s does not exist", o.kindName(), id)
			}
			return err
		}
		p := P(new(T))
		// The update body is applied over the stored object: fields
		// Neutron leaves out keep their values.
		stored, err := json.Marshal(old)
		if err != nil {
			return err
		}
		merged, err := mergeJSON(stored, body)
		if err != nil {
			return invalid("%s %s: %v", o.kindName(), id, err)
		}
		if err := json.Unmarshal(merged, p); err != nil {
			return invalid("%s %s: %v", o.kindName(), id, err)
		}
		if err := o.onUpdate(o.s.newTxn(tx), old, p); err != nil {
			return err
		}
		if err := tx.Put(p); err != nil {
			return err
		}
		out, err = json.Marshal(p)
		return err
	})
	return out, err
}

// mergeJSON sets the members of patch over the object base.
func mergeJSON(base, patch []byte) ([]byte, error) {
	var a, b map[string]json.RawMessage
	if err := json.Unmarshal(base, &a); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(patch, &b); err != nil {
		return nil, fmt.Errorf("the body is not a JSON object: %w", err)
	}
	for k, v := range b {
		a[k] = v
	}
	return json.Marshal(a)
}

func (o *ops[T, P]) delete(ctx context.Context, id ID) error {
	var gone P
	defer o.lockHot(o.stored(ctx, id))()
	err := o.s.store.Update(ctx, func(tx *nsdb.Tx) error {
		gone = nil
		old := P(new(T))
		if err := tx.Get(o.kind, id.String(), old); err != nil {
			if errors.Is(err, topology.ErrNotFound) {
				return nil // deleted already: deletes are idempotent
			}
			return err
		}
		if err := o.onDelete(o.s.newTxn(tx), old); err != nil {
			return err
		}
		gone = old
		return tx.Delete(o.kind, id.String())
	})
	if err == nil && gone != nil && o.after != nil {
		o.after(ctx, gone)
	}
	return err
}

func (o *ops[T, P]) get(ctx context.Context, id ID) (json.RawMessage, error) {
	var out json.RawMessage
	err := o.s.store.View(ctx, func(tx *nsdb.Tx) error {
		b, err := tx.GetRaw(o.kind, id.String())
		if errors.Is(err, topology.ErrNotFound) {
			return notFound("%s %s does not exist", o.kindName(), id)
		}
		out = b
		return err
	})
	return out, err
}

func (o *ops[T, P]) list(ctx context.Context) ([]json.RawMessage, error) {
	var out []json.RawMessage
	err := o.s.store.View(ctx, func(tx *nsdb.Tx) error {
		raws, err := tx.ListRaw(o.kind)
		out = make([]json.RawMessage, len(raws))
		for i, r := range raws {
			out[i] = r
		}
		return err
	})
	return out, err
}

// AddRouterInterface attaches a router to a network (one transaction).
func (s *Service) AddRouterInterface(ctx context.Context, router ID, ri RouterInterface) error {
	ri.ID = router
	return s.store.Update(ctx, func(tx *nsdb.Tx) error {
		r := ri
		return s.newTxn(tx).addInterface(&r)
	})
}

// RemoveRouterInterface detaches a router from a network's subnets.
func (s *Service) RemoveRouterInterface(ctx context.Context, router ID, ri RouterInterface) error {
	ri.ID = router
	return s.store.Update(ctx, func(tx *nsdb.Tx) error {
		r := ri
		return s.newTxn(tx).removeInterface(&r)
	})
}

// dropState deletes the state tables of a deleted device.
func (s *Service) dropState(ctx context.Context, prefixes ...string) {
	for _, p := range prefixes {
		if err := s.store.DeleteStatePrefix(ctx, p); err != nil {
			s.log.Warn("state of a deleted device left behind", "prefix", p, "err", err)
		}
	}
}
