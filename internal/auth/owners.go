package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

// owners answers which tenant owns an object: bridges, routers, chains,
// port groups and QoS policies name theirs; a port belongs to its device's
// tenant, a route to its router's, a rule to its chain's; an IP address
// group to its security group's; load balancers, pools, members and VIPs
// to their router's; Neutron objects name theirs. Anything else belongs to
// no tenant (the admin's).
type owners struct {
	store *nsdb.Store
}

// of returns the owner of object id of collection coll (an API path
// segment, "neutron/<collection>" for Neutron objects); exists is false
// when there is no such object.
func (o *owners) of(ctx context.Context, coll, id string) (owner string, exists bool, err error) {
	if _, perr := topology.ParseID(id); perr != nil {
		return "", false, nil
	}
	err = o.store.View(ctx, func(tx *nsdb.Tx) error {
		owner, exists, err = o.resolve(tx, coll, id, 0)
		return err
	})
	return owner, exists, err
}

// fields are the members of stored objects that name owners and parents.
type fields struct {
	TenantID      *string `json:"tenantId"`
	TenantIDSnake *string `json:"tenant_id"`
	ProjectID     *string `json:"project_id"`
	Type          string  `json:"type"`
	DeviceID      string  `json:"deviceId"`
	RouterID      *string `json:"routerId"`
	ChainID       string  `json:"chainId"`
	LBID          *string `json:"loadBalancerId"`
	PoolID        *string `json:"poolId"`
}

func (o *owners) resolve(tx *nsdb.Tx, coll, id string, depth int) (string, bool, error) {
	if depth > 4 || id == "" {
		return "", false, nil
	}
	kind := coll
	if n, ok := strings.CutPrefix(coll, "neutron/"); ok {
		kind = "neutron_" + n
	}
	raw, err := tx.GetRaw(kind, id)
	if errors.Is(err, topology.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	var f fields
	if err := json.Unmarshal(raw, &f); err != nil {
		return "", true, fmt.Errorf("%s %s: %w", coll, id, err)
	}
	parent := func(c string, pid *string) (string, bool, error) {
		if pid == nil {
			return "", true, nil
		}
		owner, _, err := o.resolve(tx, c, *pid, depth+1)
		return owner, true, err
	}
	switch coll {
	case "bridges", "routers", "chains", "port_groups":
		return deref(f.TenantID), true, nil
	case "qos_policies":
		return deref(f.TenantIDSnake), true, nil
	case "ports":
		dev := "bridges"
		if f.Type == topology.PortTypeRouter {
			dev = "routers"
		}
		return parent(dev, &f.DeviceID)
	case "routes":
		return parent("routers", f.RouterID)
	case "rules":
		return parent("chains", &f.ChainID)
	case "ip_addr_groups":
		owner, _, err := o.resolve(tx, "neutron/security_groups", id, depth+1)
		return owner, true, err
	case "load_balancers":
		return parent("routers", f.RouterID)
	case "pools":
		return parent("load_balancers", f.LBID)
	case "pool_members", "vips":
		return parent("pools", f.PoolID)
	}
	if strings.HasPrefix(coll, "neutron/") {
		if t := deref(f.TenantIDSnake); t != "" {
			return t, true, nil
		}
		return deref(f.ProjectID), true, nil
	}
	return "", true, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
