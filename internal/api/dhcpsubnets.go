package api

import (
	"net/http"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

// dhcpSubnets serves a bridge's DHCP subnets (/bridges/{id}/dhcp, by
// subnetPrefix_subnetLength) or DHCPv6 subnets (/bridges/{id}/dhcpV6, by
// prefix_prefixLength): a subnet's key is its identity and its hosts live
// inside it. The two collections differ only in what is named here.
type dhcpSubnets[T any, P interface {
	*T
	object
}] struct {
	res       *resource[T, P]
	path      string // the collection's route, e.g. "/bridges/{id}/dhcp"
	param     string // the URL's name for a subnet: "subnet" or "subnet6"
	subnet    string // the subnet's kind in messages: "DHCP subnet"
	load      func(tx *nsdb.Tx, r *http.Request) (P, error)
	uri       func(base string, d P) string
	describe  func(d P) string              // the subnet in messages, e.g. 10.0.0.0/24
	attach    func(d P, bridge topology.ID) // a new subnet: its bridge, no hosts
	keepIdent func(d, old P)                // an update: the URL's subnet, bridge and hosts win
}

func (c *dhcpSubnets[T, P]) register(s *Server) {
	one := c.path + "/{" + c.param + "}"
	s.handle("POST "+c.path, func(w http.ResponseWriter, r *http.Request) error {
		bid, err := pathID(r, "id")
		if err != nil {
			return err
		}
		in, err := c.res.decodeNew(r)
		if err != nil {
			return err
		}
		c.attach(in, bid)
		if err := in.Validate(); err != nil {
			return err
		}
		in.Normalize()
		err = s.store.Update(r.Context(), func(tx *nsdb.Tx) error {
			if err := requireExists(tx, topology.KindBridge, bid, http.StatusNotFound); err != nil {
				return err
			}
			d := *in
			if ok, err := tx.Exists(c.res.kind, P(&d).ObjectID()); err != nil {
				return err
			} else if ok {
				return conflict("bridge %s already has %s %s", bid, c.subnet, c.describe(&d))
			}
			return tx.Create(P(&d))
		})
		if err != nil {
			return err
		}
		return created(w, c.uri(baseURI(r), in))
	})
	s.handle("GET "+one, func(w http.ResponseWriter, r *http.Request) error {
		var d P
		err := s.store.View(r.Context(), func(tx *nsdb.Tx) error {
			var err error
			d, err = c.load(tx, r)
			return err
		})
		if err != nil {
			return err
		}
		return writeJSON(w, r, http.StatusOK, c.res.media, c.res.render(r, d))
	})
	s.handle("PUT "+one, func(w http.ResponseWriter, r *http.Request) error {
		in, err := c.res.decodeNew(r)
		if err != nil {
			return err
		}
		err = s.store.Update(r.Context(), func(tx *nsdb.Tx) error {
			old, err := c.load(tx, r)
			if err != nil {
				return err
			}
			d := *in
			c.keepIdent(&d, old)
			if err := P(&d).Validate(); err != nil {
				return err
			}
			return tx.Put(P(&d))
		})
		if err != nil {
			return err
		}
		return noContent(w)
	})
	s.handle("DELETE "+one, func(w http.ResponseWriter, r *http.Request) error {
		err := s.store.Update(r.Context(), func(tx *nsdb.Tx) error {
			d, err := c.load(tx, r)
			if err != nil {
				return err
			}
			return tx.Delete(c.res.kind, d.ObjectID())
		})
		if err != nil {
			return err
		}
		return noContent(w)
	})
}
