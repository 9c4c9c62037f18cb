package neutron

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/nsdb/embedded"
	"github.com/midonet/midonet/internal/topology"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// testStore is one embedded store shared by the tests; each test makes
// its own objects (fresh ids), and each test of a whole lifecycle uses its
// own key prefix so that it can check the store is empty at the end.
var testMember *embedded.Server

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "neutron-test")
	if err != nil {
		panic(err)
	}
	testMember, err = embedded.Start(embedded.Config{DataDir: dir, ClientURL: "http://127.0.0.1:0", Fast: true})
	if err != nil {
		panic(err)
	}
	code := m.Run()
	testMember.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// rig is a store under a prefix of its own and a service over it.
type rig struct {
	t     *testing.T
	store *nsdb.Store
	svc   *Service
}

func newRig(t *testing.T) *rig {
	t.Helper()
	store, err := nsdb.Open(t.Context(), nsdb.Config{Endpoints: []string{testMember.ClientURL},
		Prefix: "/test/" + strings.ReplaceAll(t.Name(), "/", "_") + "/" + topology.NewID().String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &rig{t: t, store: store, svc: New(store, nil)}
}

// body builds a JSON object from alternating keys and values.
func body(kv ...any) []byte {
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	b, _ := json.Marshal(m)
	return b
}

// create posts one object and returns it as stored.
func (r *rig) create(coll string, b []byte) map[string]any {
	r.t.Helper()
	out, err := r.createErr(coll, b)
	if err != nil {
		r.t.Fatalf("create %s: %v\nbody: %s", coll, err, b)
	}
	return out
}

func (r *rig) createErr(coll string, b []byte) (map[string]any, error) {
	c, ok := r.svc.collection(coll)
	if !ok {
		r.t.Fatalf("no collection %s", coll)
	}
	out, err := c.create(context.Background(), b, false)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(out[0], &m); err != nil {
		r.t.Fatal(err)
	}
	return m, nil
}

func (r *rig) update(coll string, id ID, b []byte) error {
	c, _ := r.svc.collection(coll)
	_, err := c.update(context.Background(), id, b)
	return err
}

func (r *rig) delete(coll string, id ID) {
	r.t.Helper()
	c, _ := r.svc.collection(coll)
	if err := c.delete(context.Background(), id); err != nil {
		r.t.Fatalf("delete %s %s: %v", coll, id, err)
	}
}

// get reads a topology object; ok is false when it does not exist.
func get[T topology.Object](r *rig, id string) (T, bool) {
	r.t.Helper()
	var o T
	err := r.store.View(context.Background(), func(tx *nsdb.Tx) error { return tx.Get(o.Kind(), id, &o) })
	if errors.Is(err, topology.ErrNotFound) {
		return o, false
	}
	if err != nil {
		r.t.Fatal(err)
	}
	return o, true
}

// must reads a topology object that must exist.
func must[T topology.Object](r *rig, id ID) T {
	r.t.Helper()
	o, ok := get[T](r, id.String())
	if !ok {
		var z T
		r.t.Fatalf("%s %s does not exist", topology.Singular(z.Kind()), id)
	}
	return o
}

func absent[T topology.Object](r *rig, id ID) {
	r.t.Helper()
	if _, ok := get[T](r, id.String()); ok {
		var z T
		r.t.Errorf("%s %s still exists", topology.Singular(z.Kind()), id)
	}
}

// rules returns the rules of a chain in order.
func (r *rig) rules(chain ID) []topology.Rule {
	r.t.Helper()
	c := must[topology.Chain](r, chain)
	out := make([]topology.Rule, len(c.RuleIDs))
	for i, id := range c.RuleIDs {
		out[i] = must[topology.Rule](r, id)
	}
	return out
}

// state reads a state key ("" when absent).
func (r *rig) state(key string) string {
	r.t.Helper()
	e, err := r.store.GetState(context.Background(), key)
	if errors.Is(err, topology.ErrNotFound) {
		return ""
	}
	if err != nil {
		r.t.Fatal(err)
	}
	return string(e.Value)
}

// objects lists every object and state key under the rig's prefix,
// except those in keep (kinds).
func (r *rig) objects(keep ...string) []string {
	r.t.Helper()
	resp, err := r.store.Client().Get(context.Background(), r.store.Prefix()+"/", clientv3.WithPrefix())
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		k := strings.TrimPrefix(string(kv.Key), r.store.Prefix())
		if slices.ContainsFunc(keep, func(p string) bool { return strings.HasPrefix(k, p) }) {
			continue
		}
		out = append(out, k)
	}
	return out
}

// describeRule is a compact, order-stable description of a rule for
// comparisons in tables.
func describeRule(r topology.Rule) string {
	var b strings.Builder
	b.WriteString(r.Type)
	if r.FlowAction != nil {
		b.WriteString("/" + *r.FlowAction)
	}
	add := func(f string, args ...any) { b.WriteString(" " + fmt.Sprintf(f, args...)) }
	inv := func(i bool) string {
		if i {
			return "!"
		}
		return ""
	}
	if r.CondInvert {
		add("NOT")
	}
	if r.MatchForwardFlow {
		add("fwd")
	}
	if r.MatchReturnFlow {
		add("return")
	}
	if r.MatchNwDstRewritten {
		add("dst-rewritten")
	}
	if len(r.InPorts) > 0 {
		add("in=%v", r.InPorts)
	}
	if len(r.OutPorts) > 0 {
		add("out=%v", r.OutPorts)
	}
	if r.DlType != nil {
		add("%sdl=%#x", inv(r.InvDlType), *r.DlType)
	}
	if r.DlSrc != nil {
		add("dlsrc=%s", *r.DlSrc)
	}
	if r.NwProto != nil {
		add("%sproto=%d", inv(r.InvNwProto), *r.NwProto)
	}
	if r.NwSrcAddress != nil {
		add("%ssrc=%s/%d", inv(r.InvNwSrc), *r.NwSrcAddress, r.NwSrcLength)
	}
	if r.NwDstAddress != nil {
		add("%sdst=%s/%d", inv(r.InvNwDst), *r.NwDstAddress, r.NwDstLength)
	}
	if r.IPAddrGroupSrc != nil {
		add("srcgroup=%s", *r.IPAddrGroupSrc)
	}
	if r.IPAddrGroupDst != nil {
		add("dstgroup=%s", *r.IPAddrGroupDst)
	}
	if r.TpSrc != nil {
		add("tpsrc=%d-%d", r.TpSrc.Start, r.TpSrc.End)
	}
	if r.TpDst != nil {
		add("tpdst=%d-%d", r.TpDst.Start, r.TpDst.End)
	}
	if r.JumpChainID != nil {
		add("to=%s", *r.JumpChainID)
	}
	for _, nt := range r.NatTargets {
		add("nat=%s-%s:%d-%d", deref(nt.AddressFrom), deref(nt.AddressTo), nt.PortFrom, nt.PortTo)
	}
	if r.FragmentPolicy != nil {
		add("frag=%s", *r.FragmentPolicy)
	}
	return b.String()
}

func describeRules(rs []topology.Rule) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = describeRule(r)
	}
	return out
}

// sameLines fails with both lists when they differ.
func sameLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\ngot:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }
