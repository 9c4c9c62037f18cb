package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

// object is a topology object the generic handlers can serve.
type object interface {
	topology.Object
	Normalize()
	Validate() error
}

// view is an object as the API shows it: its JSON fields without the
// hidden ones, plus its uri and links.
type view map[string]any

// toView turns an object into its view (without links).
func toView(o any) view {
	b, err := json.Marshal(o)
	if err != nil {
		return view{}
	}
	var m view
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber() // keep int64 values such as tunnel keys and limits exact
	if err := d.Decode(&m); err != nil {
		return view{}
	}
	for k := range m {
		if strings.HasPrefix(k, "_") {
			delete(m, k)
		}
	}
	return m
}

// link returns base+path, or nil when the referenced id is nil.
func link(base, prefix string, id *topology.ID) any {
	if id == nil {
		return nil
	}
	return base + prefix + id.String()
}

// resource holds the generic handlers of one kind of object. T is the
// object type and P its pointer type.
type resource[T any, P interface {
	*T
	object
}] struct {
	s     *Server
	kind  string
	media []string // vendor media type names, preferred first
	// defaults fills the default field values before a body is decoded.
	defaults func(P)
	// links adds the uri and links to a view.
	links func(base string, o P, v view)
	// filter selects the objects a GET of the collection lists.
	filter func(r *http.Request, o P) bool
	// onCreate runs in the create transaction after validation: parent
	// checks, derived fields and side effects.
	onCreate func(tx *nsdb.Tx, r *http.Request, o P) error
	// onUpdate runs in the update transaction: it copies the fields a PUT
	// preserves from old into o and checks the change.
	onUpdate func(tx *nsdb.Tx, r *http.Request, old, o P) error
	// enrich fills fields that come from state keys (a port's active
	// flag) into objects about to be shown.
	enrich func(r *http.Request, objs []P) error
	// more lists objects that live in state keys rather than as stored
	// objects (learned routes); a collection GET shows them after the
	// stored ones.
	more func(r *http.Request) ([]P, error)
	// onDelete runs in the delete transaction: it removes the state that
	// belonged to the object (a bridge's MAC and ARP tables) in the same
	// commit.
	onDelete func(tx *nsdb.Tx, id string) error
	// idRequired makes a create without an id a violation instead of
	// giving the object a random one (hosts: the id is the agent's).
	idRequired bool
}

func (rs *resource[T, P]) collectionMedia() []string {
	out := make([]string, len(rs.media))
	for i, m := range rs.media {
		out[i] = "collection." + m
	}
	return out
}

// render builds the view of an object.
func (rs *resource[T, P]) render(r *http.Request, o P) view {
	o.Normalize()
	v := toView(o)
	if rs.links != nil {
		rs.links(baseURI(r), o, v)
	}
	return v
}

func (rs *resource[T, P]) newObject() P {
	o := P(new(T))
	if rs.defaults != nil {
		rs.defaults(o)
	}
	return o
}

// list answers a GET of the collection, optionally narrowed by match.
func (rs *resource[T, P]) list(w http.ResponseWriter, r *http.Request, match func(P) bool) error {
	var out []view
	err := rs.s.store.View(r.Context(), func(tx *nsdb.Tx) error {
		raws, err := tx.ListRaw(rs.kind)
		if err != nil {
			return err
		}
		objs := make([]P, 0, len(raws))
		for _, b := range raws {
			o := P(new(T))
			if err := json.Unmarshal(b, o); err != nil {
				return err
			}
			if (match != nil && !match(o)) || (rs.filter != nil && !rs.filter(r, o)) {
				continue
			}
			objs = append(objs, o)
		}
		if rs.more != nil {
			extra, err := rs.more(r)
			if err != nil {
				return err
			}
			for _, o := range extra {
				if (match == nil || match(o)) && (rs.filter == nil || rs.filter(r, o)) {
					objs = append(objs, o)
				}
			}
		}
		if rs.enrich != nil {
			if err := rs.enrich(r, objs); err != nil {
				return err
			}
		}
		out = make([]view, len(objs))
		for i, o := range objs {
			out[i] = rs.render(r, o)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return writeJSON(w, r, http.StatusOK, rs.collectionMedia(), out)
}

// load reads one object; a missing one is a 404 naming it.
func (rs *resource[T, P]) load(tx *nsdb.Tx, id string) (P, error) {
	o := P(new(T))
	if err := tx.Get(rs.kind, id, o); err != nil {
		if errors.Is(err, topology.ErrNotFound) {
			return nil, notFound("%s %s does not exist", topology.Singular(rs.kind), id)
		}
		return nil, err
	}
	return o, nil
}

// getByID answers a GET of one object.
func (rs *resource[T, P]) getByID(w http.ResponseWriter, r *http.Request, id string) error {
	var o P
	err := rs.s.store.View(r.Context(), func(tx *nsdb.Tx) error {
		var err error
		o, err = rs.load(tx, id)
		return err
	})
	if err != nil && rs.more != nil && isNotFound(err) {
		// Not stored: it may live in state keys (a learned route).
		o, err = rs.moreByID(r, id, err)
	}
	if err != nil {
		return err
	}
	if rs.enrich != nil {
		if err := rs.enrich(r, []P{o}); err != nil {
			return err
		}
	}
	return writeJSON(w, r, http.StatusOK, rs.media, rs.render(r, o))
}

// moreByID finds the object id among those rs.more lists, or returns
// notFound.
func (rs *resource[T, P]) moreByID(r *http.Request, id string, notFound error) (P, error) {
	extra, err := rs.more(r)
	if err != nil {
		return nil, err
	}
	for _, o := range extra {
		if f, ok := idField(o); ok && f.Interface().(topology.ID).String() == id {
			return o, nil
		}
	}
	return nil, notFound
}

func (rs *resource[T, P]) get(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	return rs.getByID(w, r, id.String())
}

// decodeNew decodes a create body into a new object with defaults, gives it
// an id when it has none, and validates it.
func (rs *resource[T, P]) decodeNew(r *http.Request) (P, error) {
	o := rs.newObject()
	if err := decode(r, o); err != nil {
		return nil, err
	}
	return o, nil
}

// create stores a new object. prepare, if given, runs in the transaction
// before the resource's own onCreate (parents set from the URL).
func (rs *resource[T, P]) create(w http.ResponseWriter, r *http.Request, prepare func(tx *nsdb.Tx, o P) error) error {
	in, err := rs.decodeNew(r)
	if err != nil {
		return err
	}
	if f, ok := idField(in); ok && rs.idRequired && f.Interface().(topology.ID) == (topology.ID{}) {
		return &topology.ValidationError{Violations: []topology.Violation{{Property: "id", Message: "may not be null"}}}
	}
	ensureID(in)
	var id string
	err = rs.s.store.Update(r.Context(), func(tx *nsdb.Tx) error {
		o := P(new(T))
		*o = *in // fresh copy: the transaction may run more than once
		if prepare != nil {
			if err := prepare(tx, o); err != nil {
				return err
			}
		}
		if err := o.Validate(); err != nil {
			return err
		}
		if rs.onCreate != nil {
			if err := rs.onCreate(tx, r, o); err != nil {
				return err
			}
		}
		if err := rs.s.refuseIgnored(tx, o, nil); err != nil {
			return err
		}
		if err := topology.CheckRefs(tx, o); err != nil {
			return err
		}
		id = o.ObjectID()
		if err := tx.Create(o); err != nil {
			if errors.Is(err, topology.ErrExists) {
				return conflict("%s %s already exists", topology.Singular(rs.kind), id)
			}
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return created(w, baseURI(r)+"/"+rs.kind+"/"+id)
}

// contents answers a GET of a collection held by the object the URL's {id}
// names (a chain's rules, a port group's ports): views builds it from the
// object in the same read transaction; an empty one is [].
func (rs *resource[T, P]) contents(media []string, views func(tx *nsdb.Tx, r *http.Request, o P) ([]view, error)) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := pathID(r, "id")
		if err != nil {
			return err
		}
		var out []view
		err = rs.s.store.View(r.Context(), func(tx *nsdb.Tx) error {
			o, err := rs.load(tx, id.String())
			if err != nil {
				return err
			}
			out, err = views(tx, r, o)
			return err
		})
		if err != nil {
			return err
		}
		if out == nil {
			out = []view{}
		}
		return writeJSON(w, r, http.StatusOK, media, out)
	}
}

// post creates a top-level object.
func (rs *resource[T, P]) post(w http.ResponseWriter, r *http.Request) error {
	return rs.create(w, r, nil)
}

// put replaces the writable fields of an object.
func (rs *resource[T, P]) put(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	return rs.update(w, r, id.String(), http.StatusNoContent)
}

func (rs *resource[T, P]) update(w http.ResponseWriter, r *http.Request, id string, status int) error {
	in, err := rs.decodeNew(r)
	if err != nil {
		return err
	}
	err = rs.s.store.Update(r.Context(), func(tx *nsdb.Tx) error {
		old, err := rs.load(tx, id)
		if err != nil {
			return err
		}
		o := P(new(T))
		*o = *in
		if err := setID(o, id); err != nil {
			return err
		}
		if rs.onUpdate != nil {
			if err := rs.onUpdate(tx, r, old, o); err != nil {
				return err
			}
		}
		if err := o.Validate(); err != nil {
			return err
		}
		if err := rs.s.refuseIgnored(tx, o, old); err != nil {
			return err
		}
		if err := topology.CheckRefs(tx, o); err != nil {
			return err
		}
		return tx.Put(o)
	})
	if err != nil {
		return err
	}
	w.WriteHeader(status)
	return nil
}

// del deletes an object with MidoNet's cascades. Deleting an absent object
// answers 404 (MidoNet answers 204 for some kinds; clients accept both).
func (rs *resource[T, P]) del(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	return rs.deleteID(w, r, id.String(), http.StatusNoContent)
}

func (rs *resource[T, P]) deleteID(w http.ResponseWriter, r *http.Request, id string, status int) error {
	err := rs.s.store.Update(r.Context(), func(tx *nsdb.Tx) error {
		if err := topology.Delete(tx, rs.kind, id); err != nil {
			return err
		}
		if rs.onDelete != nil {
			return rs.onDelete(tx, id)
		}
		return nil
	})
	if err != nil {
		return err
	}
	w.WriteHeader(status)
	return nil
}

// idField returns the ID field of an object, if it has one.
func idField(o any) (reflect.Value, bool) {
	v := reflect.ValueOf(o)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	f := v.Elem().FieldByName("ID")
	if !f.IsValid() || f.Type() != reflect.TypeFor[topology.ID]() {
		return reflect.Value{}, false
	}
	return f, true
}

// setID sets the id field of an object from the URL: the URL's id wins over
// any id in the body.
func setID(o any, id string) error {
	uid, err := topology.ParseID(id)
	if err != nil {
		return notFound("%q is not a valid id", id)
	}
	if f, ok := idField(o); ok {
		f.Set(reflect.ValueOf(uid))
	}
	return nil
}

// ensureID gives an object a random id unless the client chose one.
func ensureID(o any) {
	if f, ok := idField(o); ok && f.Interface().(topology.ID) == (topology.ID{}) {
		f.Set(reflect.ValueOf(topology.NewID()))
	}
}

// requireExists answers status naming the object unless kind holds id.
func requireExists(tx *nsdb.Tx, kind string, id topology.ID, status int) error {
	ok, err := tx.Exists(kind, id.String())
	if err != nil {
		return err
	}
	if !ok {
		return errStatus(status, "%s %s does not exist", topology.Singular(kind), id)
	}
	return nil
}

// tenantFilter keeps objects whose tenant equals ?tenant_id when given.
func tenantFilter(r *http.Request, tenant *string) bool {
	q := r.URL.Query()
	if !q.Has("tenant_id") {
		return true
	}
	return tenant != nil && *tenant == q.Get("tenant_id")
}
