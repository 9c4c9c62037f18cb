package api

import (
	"net/http"

	"github.com/midonet/midonet/internal/nsdb"
)

// dhcpHosts serves the hosts of a DHCP subnet, stored inside the subnet:
// DHCPv4 hosts by MAC (/hosts/{mac}), DHCPv6 hosts by client id
// (/hostsV6/{client}). The two collections differ only in what is named here.
type dhcpHosts[PS interface {
	nsdb.Object
	Host(key string) int
	SubnetKey() string
}, H any] struct {
	path      string // the collection's route, e.g. "/bridges/{id}/dhcp/{subnet}/hosts"
	param     string // the URL's name for a host's key: "mac" or "client"
	subnet    string // the subnet's kind in messages: "DHCP subnet"
	keyName   string // the key in messages: "MAC"
	media     []string
	load      func(tx *nsdb.Tx, r *http.Request) (PS, error)
	hosts     func(PS) *[]H
	key       func(H) string // the host's key as the body gives it
	hostURI   func(subnetURI, key string) string
	subnetURI func(base string, d PS) string
	view      func(subnetURI string, h H) view
	decode    func(r *http.Request) (H, error)
}

func (c *dhcpHosts[PS, H]) register(s *Server) {
	collection := make([]string, len(c.media))
	for i, m := range c.media {
		collection[i] = "collection." + m
	}
	// index finds the host the URL names (404 when the subnet has none).
	index := func(r *http.Request, d PS) (int, error) {
		k := r.PathValue(c.param)
		i := d.Host(k)
		if i < 0 {
			return i, notFound("%s %s has no host with %s %s", c.subnet, d.SubnetKey(), c.keyName, k)
		}
		return i, nil
	}
	one := c.path + "/{" + c.param + "}"
	s.handle("GET "+c.path, func(w http.ResponseWriter, r *http.Request) error {
		var out []view
		err := s.store.View(r.Context(), func(tx *nsdb.Tx) error {
			d, err := c.load(tx, r)
			if err != nil {
				return err
			}
			u := c.subnetURI(baseURI(r), d)
			out = []view{}
			for _, h := range *c.hosts(d) {
				out = append(out, c.view(u, h))
			}
			return nil
		})
		if err != nil {
			return err
		}
		return writeJSON(w, r, http.StatusOK, collection, out)
	})
	s.handle("POST "+c.path, func(w http.ResponseWriter, r *http.Request) error {
		h, err := c.decode(r)
		if err != nil {
			return err
		}
		var loc string
		err = s.store.Update(r.Context(), func(tx *nsdb.Tx) error {
			d, err := c.load(tx, r)
			if err != nil {
				return err
			}
			k := c.key(h)
			if d.Host(k) >= 0 {
				return conflict("%s %s already has a host with %s %s", c.subnet, d.SubnetKey(), c.keyName, k)
			}
			hosts := c.hosts(d)
			*hosts = append(*hosts, h)
			loc = c.hostURI(c.subnetURI(baseURI(r), d), k)
			return tx.Put(d)
		})
		if err != nil {
			return err
		}
		return created(w, loc)
	})
	s.handle("GET "+one, func(w http.ResponseWriter, r *http.Request) error {
		var out view
		err := s.store.View(r.Context(), func(tx *nsdb.Tx) error {
			d, err := c.load(tx, r)
			if err != nil {
				return err
			}
			i, err := index(r, d)
			if err != nil {
				return err
			}
			out = c.view(c.subnetURI(baseURI(r), d), (*c.hosts(d))[i])
			return nil
		})
		if err != nil {
			return err
		}
		return writeJSON(w, r, http.StatusOK, c.media, out)
	})
	s.handle("PUT "+one, func(w http.ResponseWriter, r *http.Request) error {
		h, err := c.decode(r)
		if err != nil {
			return err
		}
		err = s.store.Update(r.Context(), func(tx *nsdb.Tx) error {
			d, err := c.load(tx, r)
			if err != nil {
				return err
			}
			i, err := index(r, d)
			if err != nil {
				return err
			}
			(*c.hosts(d))[i] = h
			return tx.Put(d)
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
			i := d.Host(r.PathValue(c.param))
			if i < 0 {
				return nil
			}
			hosts := c.hosts(d)
			*hosts = append((*hosts)[:i:i], (*hosts)[i+1:]...)
			return tx.Put(d)
		})
		if err != nil {
			return err
		}
		return noContent(w)
	})
}
