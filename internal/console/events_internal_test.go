package console

import (
	"strings"
	"testing"

	"github.com/midonet/midonet/internal/nsdb"
)

func TestStateOf(t *testing.T) {
	cases := []struct {
		key            string
		kind, id, what string
		ok             bool
	}{
		{"/state/hosts/h1/alive", "hosts", "h1", "alive", true},
		{"/state/hosts/h1/metrics", "hosts", "h1", "metrics", true},
		{"/state/hosts/h1/interfaces/eth0", "hosts", "h1", "interfaces", true},
		{"/state/ports/p1/active", "ports", "p1", "active", true},
		{"/state/bridges/b1/vlans/0/mac/02:00:00:00:00:01", "bridges", "b1", "mac", true},
		{"/state/bridges/b1/arp/10.0.0.1", "bridges", "b1", "arp", true},
		{"/state/routers/r1/arp/10.0.0.1", "routers", "r1", "arp", true},
		{"/state/hosts/h1", "", "", "", false},
		{"/topology/bridges/b1", "", "", "", false},
	}
	for _, tc := range cases {
		kind, id, what, ok := stateOf(tc.key)
		if ok != tc.ok || kind != tc.kind || id != tc.id || what != tc.what {
			t.Errorf("stateOf(%q) = %q %q %q %v, want %q %q %q %v", tc.key, kind, id, what, ok, tc.kind, tc.id, tc.what, tc.ok)
		}
	}
}

func TestEncodeEvent(t *testing.T) {
	c := &Console{}
	base := "http://h:8181/midonet-api"
	cases := []struct {
		name string
		ev   nsdb.Event
		want string // "" when the event is not sent
	}{
		{"bridge created", nsdb.Event{Type: nsdb.EventPut, Kind: "bridges", ID: "b1", ModRevision: 7},
			"event: change\nid: 7\ndata: {\"type\":\"put\",\"kind\":\"bridges\",\"id\":\"b1\",\"uri\":\"" + base + "/bridges/b1\",\"revision\":7}\n\n"},
		{"tunnel key, no REST resource", nsdb.Event{Type: nsdb.EventDelete, Kind: "tunnel_keys", ID: "k", ModRevision: 8},
			"event: change\nid: 8\ndata: {\"type\":\"delete\",\"kind\":\"tunnel_keys\",\"id\":\"k\",\"revision\":8}\n\n"},
		{"port active", nsdb.Event{Type: nsdb.EventPut, Key: "/state/ports/p1/active", ModRevision: 9},
			"event: state\nid: 9\ndata: {\"kind\":\"ports\",\"id\":\"p1\",\"key\":\"active\",\"revision\":9}\n\n"},
		{"history lost", nsdb.Event{Type: nsdb.EventResync, ModRevision: 3}, "event: resync\n"},
		{"other key", nsdb.Event{Type: nsdb.EventPut, Key: "/sequences/x", ModRevision: 10}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := string(c.encodeEvent(base, tc.ev))
			if tc.want == "" && got != "" || !strings.HasPrefix(got, tc.want) {
				t.Errorf("encodeEvent = %q, want %q", got, tc.want)
			}
		})
	}
}
