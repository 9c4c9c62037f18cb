package cli

import (
	"fmt"
	"strings"
)

// kind describes a resource type for lookups: where its items live and
// whether they carry a name users may type instead of the id.
type kind struct {
	noun       string // "bridge", for messages and commands
	collection string // Application key of the collection; "" when there is none
	template   string // Application key of the item template
	media      string // vendor type name, e.g. "Bridge-v4"
	named      bool   // items have a "name" that --flags may use
}

// isUUID reports whether s has the canonical 8-4-4-4-12 hex form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// resolve returns the object ref names: a UUID is fetched through the
// kind's template; anything else is looked up by name in the collection and
// must match exactly one item.
func (s *session) resolve(k *kind, ref string) (Object, error) {
	if isUUID(ref) {
		u, err := s.client.Item(s.ctx, k.template, strings.ToLower(ref))
		if err != nil {
			return nil, err
		}
		o, err := s.client.Get(s.ctx, u, k.media)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", k.noun, ref, err)
		}
		return o, nil
	}
	if !k.named || k.collection == "" {
		return nil, fmt.Errorf("%s %q: not a UUID (%ss have no names; give the id)", k.noun, ref, k.noun)
	}
	u, err := s.client.Collection(s.ctx, k.collection)
	if err != nil {
		return nil, err
	}
	list, err := s.client.List(s.ctx, u, k.media)
	if err != nil {
		return nil, err
	}
	var hits []Object
	for _, o := range list {
		if o.Str("name") == ref {
			hits = append(hits, o)
		}
	}
	switch len(hits) {
	case 0:
		return nil, fmt.Errorf("no %s named %q (see `midonet %s list`)", k.noun, ref, k.noun)
	case 1:
		return hits[0], nil
	}
	ids := make([]string, len(hits))
	for i, o := range hits {
		ids[i] = o.Str("id")
	}
	return nil, fmt.Errorf("%s name %q is ambiguous: %d %ss have it (%s); give the id instead",
		k.noun, ref, len(hits), k.noun, strings.Join(ids, ", "))
}

// resolveID is resolve returning only the id.
func (s *session) resolveID(k *kind, ref string) (string, error) {
	o, err := s.resolve(k, ref)
	if err != nil {
		return "", err
	}
	id := o.Str("id")
	if id == "" {
		return "", fmt.Errorf("%s %q: the API returned no id", k.noun, ref)
	}
	return id, nil
}

// link returns the URI the object o carries under key (e.g. a bridge's
// "ports"), so sub-resources are reached the way the server says.
func link(k *kind, o Object, key string) (string, error) {
	u := o.Str(key)
	if u == "" {
		return "", fmt.Errorf("%s %s: the API gave no %q link", k.noun, o.Str("id"), key)
	}
	return u, nil
}
