package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

// The bridges' MAC and ARP tables are state in the NSDB (see package nsdb
// for the keys), shared with the agents that learn into them. Entries
// written through the API are persistent (no lease); learned ones are bound
// to their agent's session.

type macEntry struct {
	bridge topology.ID
	vlan   int
	mac    string
	port   string
}

func (e macEntry) view(base string) view {
	u := base + "/bridges/" + e.bridge.String()
	if e.vlan != 0 {
		u += "/vlans/" + strconv.Itoa(e.vlan)
	}
	u += "/mac_table/" + strings.ReplaceAll(e.mac, ":", "-") + "_" + e.port
	return view{"macAddr": e.mac, "portId": e.port, "vlanId": e.vlan, "uri": u}
}

func (e macEntry) key() string {
	mac, _ := topology.ParseMAC(e.mac)
	return nsdb.BridgeMACKey(e.bridge.String(), uint16(e.vlan), mac)
}

// macEntries lists a bridge's MAC table; vlan < 0 means every VLAN.
func (s *Server) macEntries(ctx context.Context, bridge topology.ID, vlan int) ([]macEntry, error) {
	prefix := nsdb.BridgeMACsPrefix(bridge.String())
	if vlan >= 0 {
		prefix = nsdb.BridgeMACPrefix(bridge.String(), uint16(vlan))
	}
	entries, _, err := s.store.ListState(ctx, prefix)
	if err != nil {
		return nil, err
	}
	var out []macEntry
	for _, e := range entries {
		_, v, mac, ok := nsdb.ParseBridgeMACKey(e.Key)
		if !ok {
			continue
		}
		out = append(out, macEntry{bridge: bridge, vlan: int(v), mac: topology.FormatMAC(mac), port: string(e.Value)})
	}
	return out, nil
}

func (s *Server) tableRoutes() {
	macMedia := []string{"MacPort-v2", "MacPort-v1"}
	arpMedia := []string{"IP4Mac-v1"}

	vlanOf := func(r *http.Request) (int, error) {
		v := r.PathValue("vlan")
		if v == "" {
			return -1, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 4095 {
			return 0, notFound("%q is not a VLAN id", v)
		}
		return n, nil
	}
	listMACs := func(w http.ResponseWriter, r *http.Request) error {
		bid, err := s.parentExists(r, topology.KindBridge)
		if err != nil {
			return err
		}
		vlan, err := vlanOf(r)
		if err != nil {
			return err
		}
		entries, err := s.macEntries(r.Context(), bid, vlan)
		if err != nil {
			return err
		}
		out := make([]view, len(entries))
		for i, e := range entries {
			out[i] = e.view(baseURI(r))
		}
		return writeJSON(w, r, http.StatusOK, []string{"collection.MacPort-v2", "collection.MacPort-v1"}, out)
	}
	postMAC := func(w http.ResponseWriter, r *http.Request) error {
		bid, err := pathID(r, "id")
		if err != nil {
			return err
		}
		pathVLAN, err := vlanOf(r)
		if err != nil {
			return err
		}
		var body struct {
			MacAddr *string      `json:"macAddr"`
			PortID  *topology.ID `json:"portId"`
			VlanID  *int         `json:"vlanId"`
		}
		if err := decode(r, &body); err != nil {
			return err
		}
		var c topology.Checks
		c.MAC("macAddr", body.MacAddr)
		c.Required("portId", body.PortID != nil)
		if err := c.Err(); err != nil {
			return err
		}
		vlan := 0
		if body.VlanID != nil {
			vlan = *body.VlanID
		}
		if pathVLAN >= 0 {
			vlan = pathVLAN
		}
		if vlan < 0 || vlan > 4095 {
			return &topology.ValidationError{Violations: []topology.Violation{{Property: "vlanId", Message: "must be between 0 and 4095"}}}
		}
		mac, _ := topology.ParseMAC(*body.MacAddr)
		e := macEntry{bridge: bid, vlan: vlan, mac: topology.FormatMAC(mac), port: body.PortID.String()}
		err = s.store.View(r.Context(), func(tx *nsdb.Tx) error {
			if err := requireExists(tx, topology.KindBridge, bid, http.StatusNotFound); err != nil {
				return err
			}
			var p topology.Port
			if err := tx.Get(topology.KindPort, body.PortID.String(), &p); err != nil {
				return err
			}
			if p.DeviceID != bid {
				return badRequest("The port must belong to the bridge that owns the MAC table.")
			}
			if p.VLANID != 0 && int(p.VLANID) != vlan {
				return badRequest("port %s carries VLAN %d only; the entry's VLAN is %d", p.ID, p.VLANID, vlan)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := s.store.PutState(r.Context(), e.key(), []byte(e.port)); err != nil {
			return err
		}
		return created(w, e.view(baseURI(r))["uri"].(string))
	}
	// macItem parses {mac}_{portId} of an entry URL.
	macItem := func(r *http.Request) (topology.ID, int, macEntry, error) {
		bid, err := pathID(r, "id")
		if err != nil {
			return bid, 0, macEntry{}, err
		}
		vlan, err := vlanOf(r)
		if err != nil {
			return bid, 0, macEntry{}, err
		}
		if vlan < 0 {
			vlan = 0
		}
		macS, portS, ok := strings.Cut(r.PathValue("entry"), "_")
		mac, okMAC := topology.ParseMAC(macS)
		if !ok || !okMAC {
			return bid, 0, macEntry{}, badRequest("%q is not a MAC table entry: use <mac-with-dashes>_<port id>", r.PathValue("entry"))
		}
		return bid, vlan, macEntry{bridge: bid, vlan: vlan, mac: topology.FormatMAC(mac), port: portS}, nil
	}
	getMAC := func(w http.ResponseWriter, r *http.Request) error {
		bid, vlan, e, err := macItem(r)
		if err != nil {
			return err
		}
		if _, err := s.parentExists(r, topology.KindBridge); err != nil {
			return err
		}
		st, err := s.store.GetState(r.Context(), e.key())
		if err != nil && !errors.Is(err, topology.ErrNotFound) {
			return err
		}
		if err != nil || string(st.Value) != e.port {
			return notFound("bridge %s has no MAC entry %s -> %s on VLAN %d", bid, e.mac, e.port, vlan)
		}
		return writeJSON(w, r, http.StatusOK, macMedia, e.view(baseURI(r)))
	}
	delMAC := func(w http.ResponseWriter, r *http.Request) error {
		_, _, e, err := macItem(r)
		if err != nil {
			return err
		}
		// Delete only if the entry still points at the port named.
		if _, err := s.store.DeleteStateIf(r.Context(), e.key(), []byte(e.port)); err != nil {
			return err
		}
		return noContent(w)
	}
	for _, p := range []string{"/bridges/{id}/mac_table", "/bridges/{id}/vlans/{vlan}/mac_table"} {
		s.handle("GET "+p, listMACs)
		s.handle("POST "+p, postMAC)
		s.handle("GET "+p+"/{entry}", getMAC)
		s.handle("DELETE "+p+"/{entry}", delMAC)
	}

	arpView := func(base string, bid topology.ID, ip, mac string) view {
		return view{"ip": ip, "mac": mac,
			"uri": base + "/bridges/" + bid.String() + "/arp_table/" + ip + "_" + strings.ReplaceAll(mac, ":", "-")}
	}
	// A router's ARP table, as its agents learned it: read-only, an
	// addition to MidoNet's API for operators and `midonet trace`.
	s.handle("GET /routers/{id}/arp_table", func(w http.ResponseWriter, r *http.Request) error {
		rid, err := s.parentExists(r, topology.KindRouter)
		if err != nil {
			return err
		}
		entries, _, err := s.store.ListState(r.Context(), nsdb.RouterARPPrefix(rid.String()))
		if err != nil {
			return err
		}
		out := make([]view, 0, len(entries))
		for _, e := range entries {
			if _, ip, ok := nsdb.ParseRouterARPKey(e.Key); ok {
				out = append(out, view{"ip": ip.String(), "mac": string(e.Value)})
			}
		}
		return writeJSON(w, r, http.StatusOK, []string{"collection.IP4Mac-v1"}, out)
	})
	s.handle("GET /bridges/{id}/arp_table", func(w http.ResponseWriter, r *http.Request) error {
		bid, err := s.parentExists(r, topology.KindBridge)
		if err != nil {
			return err
		}
		entries, _, err := s.store.ListState(r.Context(), nsdb.BridgeARPPrefix(bid.String()))
		if err != nil {
			return err
		}
		out := make([]view, 0, len(entries))
		for _, e := range entries {
			if _, ip, ok := nsdb.ParseBridgeARPKey(e.Key); ok {
				out = append(out, arpView(baseURI(r), bid, ip.String(), string(e.Value)))
			}
		}
		return writeJSON(w, r, http.StatusOK, []string{"collection.IP4Mac-v1"}, out)
	})
	s.handle("POST /bridges/{id}/arp_table", func(w http.ResponseWriter, r *http.Request) error {
		bid, err := s.parentExists(r, topology.KindBridge)
		if err != nil {
			return err
		}
		var body struct {
			IP  *string `json:"ip"`
			MAC *string `json:"mac"`
		}
		if err := decode(r, &body); err != nil {
			return err
		}
		var c topology.Checks
		c.IPv4("ip", body.IP)
		c.MAC("mac", body.MAC)
		if err := c.Err(); err != nil {
			return err
		}
		mac, _ := topology.ParseMAC(*body.MAC)
		m := topology.FormatMAC(mac)
		ip, _ := topology.ParseIPv4(*body.IP)
		if err := s.store.SeedBridgeARP(r.Context(), bid.String(), ip, mac); err != nil {
			return err
		}
		return created(w, arpView(baseURI(r), bid, *body.IP, m)["uri"].(string))
	})
	arpItem := func(r *http.Request) (topology.ID, string, string, error) {
		bid, err := pathID(r, "id")
		if err != nil {
			return bid, "", "", err
		}
		ip, macS, ok := strings.Cut(r.PathValue("entry"), "_")
		mac, okMAC := topology.ParseMAC(macS)
		if !ok || !okMAC || !topology.IsIPv4(ip) {
			return bid, "", "", badRequest("%q is not an ARP table entry: use <ip>_<mac-with-dashes>", r.PathValue("entry"))
		}
		return bid, ip, topology.FormatMAC(mac), nil
	}
	s.handle("GET /bridges/{id}/arp_table/{entry}", func(w http.ResponseWriter, r *http.Request) error {
		bid, ip, mac, err := arpItem(r)
		if err != nil {
			return err
		}
		addr, _ := topology.ParseIPv4(ip)
		st, err := s.store.GetState(r.Context(), nsdb.BridgeARPKey(bid.String(), addr))
		if err != nil && !errors.Is(err, topology.ErrNotFound) {
			return err
		}
		if err != nil || string(st.Value) != mac {
			return notFound("bridge %s has no ARP entry %s -> %s", bid, ip, mac)
		}
		return writeJSON(w, r, http.StatusOK, arpMedia, arpView(baseURI(r), bid, ip, mac))
	})
	s.handle("DELETE /bridges/{id}/arp_table/{entry}", func(w http.ResponseWriter, r *http.Request) error {
		bid, ip, mac, err := arpItem(r)
		if err != nil {
			return err
		}
		addr, _ := topology.ParseIPv4(ip)
		if _, err := s.store.DeleteStateIf(r.Context(), nsdb.BridgeARPKey(bid.String(), addr), []byte(mac)); err != nil {
			return err
		}
		return noContent(w)
	})
}
