package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/midonet/midonet/internal/cluster"
	"github.com/midonet/midonet/internal/nsdb"
)

// apiURL is the base URL of the cluster every test talks to.
var apiURL string

// testStore is that cluster's store, for state only agents write.
var testStore *nsdb.Store

func TestMain(m *testing.M) {
	os.Exit(runWithCluster(m))
}

// runWithCluster starts one in-process cluster (API + embedded etcd) for
// the whole test binary and stops it after the tests.
func runWithCluster(m *testing.M) int {
	dir, err := os.MkdirTemp("", "midonet-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	c, err := cluster.Start(context.Background(), cluster.Config{
		Listen: "127.0.0.1:0", DataDir: dir, NSDBListen: "127.0.0.1:0", FastStore: true,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start cluster:", err)
		return 1
	}
	defer c.Close()
	apiURL = c.APIURL
	testStore = c.Store
	return m.Run()
}

// run executes `midonet args... --api <test cluster>` in process and returns
// what it printed on stdout.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "midonet", SilenceUsage: true, SilenceErrors: true}
	Register(root)
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append(slices.Clone(args), "--api", apiURL))
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

// must is run that fails the test on error.
func must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(t, args...)
	if err != nil {
		t.Fatalf("midonet %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// object runs a verb with -o json and decodes the object it prints.
func object(t *testing.T, args ...string) Object {
	t.Helper()
	out := must(t, append(args, "-o", "json")...)
	var o Object
	if err := json.Unmarshal([]byte(out), &o); err != nil {
		t.Fatalf("midonet %s -o json: not a JSON object: %v\n%s", strings.Join(args, " "), err, out)
	}
	return o
}

// objects runs a verb with -o json and decodes the array it prints.
func objects(t *testing.T, args ...string) []Object {
	t.Helper()
	out := must(t, append(args, "-o", "json")...)
	var list []Object
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("midonet %s -o json: not a JSON array: %v\n%s", strings.Join(args, " "), err, out)
	}
	return list
}

// unique returns a name no other test uses.
func unique(prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// checkFields fails unless o's fields render (as table cells) to want.
func checkFields(t *testing.T, what string, o Object, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := format(o[k]); got != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
}

// roundTrip is one resource's create → list → show → update → delete cycle.
type roundTrip struct {
	name string
	// resource is the command, e.g. "bridge".
	resource string
	// scope returns flags naming the parent (created for the case); they go
	// on create and list, and on every verb when scopeAll is set.
	scope    func(t *testing.T) []string
	scopeAll bool
	create   []string
	want     map[string]string
	// ident is the field that identifies the object; ref turns the created
	// object into the argument of show/update/delete.
	ident string
	ref   func(Object) string
	// update flags; nil when the API has no PUT for the resource.
	update  []string
	updated map[string]string
}

func TestResourceRoundTrip(t *testing.T) {
	newBridge := func(t *testing.T) string { return object(t, "bridge", "create", "--name", unique("rt-br")).Str("id") }
	newRouter := func(t *testing.T) string { return object(t, "router", "create", "--name", unique("rt-rtr")).Str("id") }
	byID := func(o Object) string { return o.Str("id") }
	bridgeName, routerName, chainName := unique("bridge"), unique("router"), unique("chain")
	pgName, hostName, tzName, ipgName := unique("pg"), unique("host"), unique("tz"), unique("ipg")

	cases := []roundTrip{
		{
			name: "bridge", resource: "bridge",
			create: []string{"--name", bridgeName, "--tenant", "acme"},
			want:   map[string]string{"name": bridgeName, "tenantId": "acme", "adminStateUp": "true"},
			ident:  "id", ref: func(Object) string { return bridgeName },
			update:  []string{"--admin-state-up=false", "--tenant", "other"},
			updated: map[string]string{"name": bridgeName, "tenantId": "other", "adminStateUp": "false"},
		},
		{
			name: "router", resource: "router",
			create: []string{"--name", routerName},
			want:   map[string]string{"name": routerName, "adminStateUp": "true", "tenantId": "-"},
			ident:  "id", ref: byID,
			update:  []string{"--name", routerName + "-renamed"},
			updated: map[string]string{"name": routerName + "-renamed"},
		},
		{
			name: "bridge port", resource: "port",
			scope:  func(t *testing.T) []string { return []string{"--bridge", newBridge(t)} },
			create: []string{"--vlan", "10"},
			want:   map[string]string{"type": "Bridge", "vlanId": "10", "adminStateUp": "true"},
			ident:  "id", ref: byID,
			update:  []string{"--admin-state-up=false"},
			updated: map[string]string{"adminStateUp": "false", "vlanId": "10"},
		},
		{
			name: "router port", resource: "port",
			scope:  func(t *testing.T) []string { return []string{"--router", newRouter(t)} },
			create: []string{"--address", "10.1.0.1/24", "--mac", "02:00:00:00:00:01"},
			want: map[string]string{"type": "Router", "portAddress": "10.1.0.1", "networkAddress": "10.1.0.0",
				"networkLength": "24", "portSubnet": "10.1.0.1/24", "portMac": "02:00:00:00:00:01"},
			ident: "id", ref: byID,
			update:  []string{"--admin-state-up=false"},
			updated: map[string]string{"adminStateUp": "false", "portAddress": "10.1.0.1"},
		},
		{
			name: "route", resource: "route",
			scope:  func(t *testing.T) []string { return []string{"--router", newRouter(t)} },
			create: []string{"--type", "BlackHole", "--dst", "198.51.100.0/24", "--weight", "7"},
			want: map[string]string{"type": "BlackHole", "dstNetworkAddr": "198.51.100.0", "dstNetworkLength": "24",
				"srcNetworkAddr": "0.0.0.0", "srcNetworkLength": "0", "weight": "7"},
			ident: "id", ref: byID,
		},
		{
			name: "chain", resource: "chain",
			create: []string{"--name", chainName, "--tenant", "acme"},
			want:   map[string]string{"name": chainName, "tenantId": "acme"},
			ident:  "id", ref: func(Object) string { return chainName },
		},
		{
			name: "rule", resource: "rule",
			scope: func(t *testing.T) []string {
				return []string{"--chain", object(t, "chain", "create", "--name", unique("rt-chain")).Str("id")}
			},
			create: []string{"--type", "drop", "--proto", "udp", "--tp-dst", "53"},
			want:   map[string]string{"type": "drop", "nwProto": "17", "position": "1", "fragmentPolicy": "header"},
			ident:  "id", ref: byID,
		},
		{
			name: "port group", resource: "port-group",
			create: []string{"--name", pgName, "--stateful"},
			want:   map[string]string{"name": pgName, "stateful": "true"},
			ident:  "id", ref: func(Object) string { return pgName },
			update:  []string{"--stateful=false", "--tenant", "acme"},
			updated: map[string]string{"stateful": "false", "tenantId": "acme"},
		},
		{
			name: "host", resource: "host",
			create: []string{"--name", hostName},
			want:   map[string]string{"name": hostName, "alive": "false", "floodingProxyWeight": "1"},
			ident:  "id", ref: func(Object) string { return hostName },
		},
		{
			name: "tunnel zone", resource: "tunnel-zone",
			create: []string{"--name", tzName},
			want:   map[string]string{"name": tzName, "type": "vxlan"},
			ident:  "id", ref: byID,
			update:  []string{"--name", tzName + "-2"},
			updated: map[string]string{"name": tzName + "-2", "type": "vxlan"},
		},
		{
			name: "ip address group", resource: "ip-addr-group",
			create: []string{"--name", ipgName},
			want:   map[string]string{"name": ipgName},
			ident:  "id", ref: func(Object) string { return ipgName },
		},
		{
			name: "dhcp subnet", resource: "dhcp",
			scope:    func(t *testing.T) []string { return []string{"--bridge", newBridge(t)} },
			scopeAll: true,
			create:   []string{"--subnet", "10.2.0.0/24", "--gateway", "10.2.0.1", "--dns", "192.0.2.53,192.0.2.54"},
			want: map[string]string{"subnetPrefix": "10.2.0.0", "subnetLength": "24", "defaultGateway": "10.2.0.1",
				"dnsServerAddrs": "192.0.2.53,192.0.2.54", "enabled": "true"},
			ident: "subnetPrefix", ref: func(Object) string { return "10.2.0.0/24" },
			update:  []string{"--mtu", "1450", "--enabled=false"},
			updated: map[string]string{"interfaceMTU": "1450", "enabled": "false", "defaultGateway": "10.2.0.1"},
		},
		{
			name: "dhcp host", resource: "dhcp-host",
			scope: func(t *testing.T) []string {
				b := newBridge(t)
				must(t, "dhcp", "create", "--bridge", b, "--subnet", "10.3.0.0/24")
				return []string{"--bridge", b, "--subnet", "10.3.0.0/24"}
			},
			scopeAll: true,
			create:   []string{"--mac", "02:00:00:00:03:05", "--ip", "10.3.0.5", "--name", "vm5"},
			want:     map[string]string{"macAddr": "02:00:00:00:03:05", "ipAddr": "10.3.0.5", "name": "vm5"},
			ident:    "macAddr", ref: func(Object) string { return "02:00:00:00:03:05" },
			update:  []string{"--ip", "10.3.0.6"},
			updated: map[string]string{"ipAddr": "10.3.0.6", "name": "vm5"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var scope, every []string
			if tc.scope != nil {
				scope = tc.scope(t)
			}
			if tc.scopeAll {
				every = scope
			}
			verb := func(v string, args ...string) []string {
				return append(append([]string{tc.resource, v}, every...), args...)
			}

			created := object(t, append(append([]string{tc.resource, "create"}, scope...), tc.create...)...)
			checkFields(t, "create", created, tc.want)
			if created.Str("uri") == "" {
				t.Errorf("create -o json lacks the API's uri field: %v", created)
			}
			key := created.Str(tc.ident)
			ref := tc.ref(created)

			listArgs := append([]string{tc.resource, "list"}, scope...)
			listed := objects(t, listArgs...)
			if !slices.ContainsFunc(listed, func(o Object) bool { return o.Str(tc.ident) == key }) {
				t.Errorf("list -o json does not show %s %s", tc.ident, key)
			}
			if table := must(t, listArgs...); !strings.Contains(table, key) {
				t.Errorf("list table does not show %s in full:\n%s", key, table)
			} else if tc.resource == "port" && !strings.Contains(strings.SplitN(table, "\n", 2)[0], "ACTIVE") {
				t.Errorf("port list does not say which ports an agent has active:\n%s", table)
			}

			shown := object(t, verb("show", ref)...)
			checkFields(t, "show", shown, tc.want)
			if shown.Str(tc.ident) != key {
				t.Errorf("show %s gave %s %s, want %s", ref, tc.ident, shown.Str(tc.ident), key)
			}
			if table := must(t, verb("show", ref)...); !strings.Contains(table, key) {
				t.Errorf("show table does not carry %s:\n%s", key, table)
			}

			if tc.update != nil {
				updated := object(t, verb("update", append([]string{ref}, tc.update...)...)...)
				checkFields(t, "update output", updated, tc.updated)
				checkFields(t, "show after update", object(t, verb("show", ref)...), tc.updated)
			} else if _, err := run(t, verb("update", ref)...); err == nil || !strings.Contains(err.Error(), "unknown verb") {
				t.Errorf("%s update: %v, want an unknown verb error (the API has no PUT for it)", tc.resource, err)
			}

			must(t, verb("delete", ref)...)
			// Deleted: by id the API answers 404; by name, subnet or MAC
			// the lookup finds nothing.
			if _, err := run(t, verb("show", ref)...); err == nil || !IsNotFound(err) && !strings.Contains(err.Error(), "no ") {
				t.Errorf("show %s after delete: %v, want a not-found error", ref, err)
			}
			if tc.ident == "id" {
				if _, err := run(t, verb("show", key)...); !IsNotFound(err) {
					t.Errorf("show %s after delete: %v, want the API's 404", key, err)
				}
			}
			if slices.ContainsFunc(objects(t, listArgs...), func(o Object) bool { return o.Str(tc.ident) == key }) {
				t.Errorf("list still shows %s after delete", key)
			}
		})
	}
}

// TestJSONMatchesAPI checks that -o json prints the API's object unchanged:
// the same keys and values as a plain GET.
func TestJSONMatchesAPI(t *testing.T) {
	t.Parallel()
	b := object(t, "bridge", "create", "--name", unique("json"))
	resp, err := http.Get(b.Str("uri"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	var shown map[string]any
	if err := json.Unmarshal([]byte(must(t, "bridge", "show", b.Str("id"), "-o", "json")), &shown); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(raw) != fmt.Sprint(shown) {
		t.Errorf("show -o json differs from the API's object:\n api: %v\n cli: %v", raw, shown)
	}
}

func TestNameResolution(t *testing.T) {
	t.Parallel()
	dup, solo, chain := unique("dup"), unique("solo"), unique("filter")
	d1 := object(t, "bridge", "create", "--name", dup).Str("id")
	d2 := object(t, "bridge", "create", "--name", dup).Str("id")
	soloID := object(t, "bridge", "create", "--name", solo).Str("id")
	chainID := object(t, "chain", "create", "--name", chain).Str("id")

	cases := []struct {
		name    string
		args    []string
		wantErr []string          // substrings of the error; nil means success
		want    map[string]string // fields of the printed object on success
	}{
		{name: "unique name", args: []string{"bridge", "show", solo}, want: map[string]string{"id": soloID}},
		{name: "id", args: []string{"bridge", "show", soloID}, want: map[string]string{"name": solo}},
		{name: "upper-case id", args: []string{"bridge", "show", strings.ToUpper(soloID)}, want: map[string]string{"id": soloID}},
		{name: "ambiguous name", args: []string{"bridge", "show", dup}, wantErr: []string{"ambiguous", d1, d2}},
		{name: "unknown name", args: []string{"bridge", "show", unique("nothing")}, wantErr: []string{"no bridge named"}},
		{name: "name in a reference flag", args: []string{"bridge", "update", solo, "--inbound-filter", chain},
			want: map[string]string{"inboundFilterId": chainID}},
		{name: "none detaches a reference", args: []string{"bridge", "update", solo, "--inbound-filter", "none"},
			want: map[string]string{"inboundFilterId": "-"}},
		{name: "ambiguous parent", args: []string{"port", "create", "--bridge", dup}, wantErr: []string{"ambiguous"}},
		{name: "parent by name", args: []string{"port", "create", "--bridge", solo}, want: map[string]string{"deviceId": soloID}},
		{name: "unnamed kind needs an id", args: []string{"port", "show", "some-port"}, wantErr: []string{"not a UUID"}},
		{name: "unknown chain in a flag", args: []string{"bridge", "update", solo, "--outbound-filter", unique("nochain")},
			wantErr: []string{"--outbound-filter", "no chain named"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(t, append(tc.args, "-o", "json")...)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("succeeded, want an error containing %q", tc.wantErr)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var o Object
			if err := json.Unmarshal([]byte(out), &o); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			checkFields(t, strings.Join(tc.args, " "), o, tc.want)
		})
	}
}

// postHost creates a host the way an agent would appear: POST /hosts.
func postHost(t *testing.T, name string) string {
	t.Helper()
	id := newUUID()
	c := NewClient(apiURL, nil)
	hosts, err := c.Collection(t.Context(), "hosts")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(t.Context(), hosts, "Host-v3", Object{"id": id, "name": name}); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestHostBind(t *testing.T) {
	t.Parallel()
	host, zone := unique("compute"), unique("overlay")
	hostID := postHost(t, host)
	must(t, "tunnel-zone", "create", "--name", zone)
	bridge := object(t, "bridge", "create", "--name", unique("bind")).Str("id")
	port := object(t, "port", "create", "--bridge", bridge).Str("id")
	other := object(t, "port", "create", "--bridge", bridge).Str("id")

	// The API refuses a binding until the host is in a tunnel zone.
	_, err := run(t, "host", "bind", "--host", host, "--port", port, "--interface", "vm1")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Fatalf("bind outside a tunnel zone: %v, want 409", err)
	}

	member := object(t, "tunnel-zone", "add-member", "--tunnel-zone", zone, "--host", host, "--address", "192.0.2.11")
	checkFields(t, "add-member", member, map[string]string{"hostId": hostID, "ipAddress": "192.0.2.11"})
	members := objects(t, "tunnel-zone", "members", "--tunnel-zone", zone)
	if len(members) != 1 || members[0].Str("hostId") != hostID {
		t.Fatalf("members = %v, want the one host", members)
	}

	binding := object(t, "host", "bind", "--host", host, "--port", port, "--interface", "vm1")
	checkFields(t, "bind", binding, map[string]string{"hostId": hostID, "portId": port, "interfaceName": "vm1"})
	checkFields(t, "bound port", object(t, "port", "show", port), map[string]string{"hostId": hostID, "interfaceName": "vm1"})
	if table := must(t, "host", "bindings", "--host", hostID); !strings.Contains(table, port) || !strings.Contains(table, "vm1") {
		t.Errorf("bindings table lacks the binding:\n%s", table)
	}

	_, err = run(t, "host", "bind", "--host", host, "--port", other, "--interface", "vm1")
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Errorf("second binding of vm1: %v, want 409", err)
	}

	must(t, "host", "unbind", "--host", host, "--port", port)
	checkFields(t, "unbound port", object(t, "port", "show", port), map[string]string{"hostId": "-", "interfaceName": "-"})
	if _, err := run(t, "host", "unbind", "--host", host, "--port", port); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("unbind of an unbound port: %v, want not found", err)
	}

	must(t, "tunnel-zone", "remove-member", "--tunnel-zone", zone, "--host", hostID)
	if got := objects(t, "tunnel-zone", "members", "--tunnel-zone", zone); len(got) != 0 {
		t.Errorf("members after remove-member = %v, want none", got)
	}
}

func TestPortLink(t *testing.T) {
	t.Parallel()
	router := object(t, "router", "create", "--name", unique("link")).Str("id")
	bridge := object(t, "bridge", "create", "--name", unique("link")).Str("id")
	rp := object(t, "port", "create", "--router", router, "--address", "10.9.0.1/24").Str("id")
	bp := object(t, "port", "create", "--bridge", bridge).Str("id")
	spare := object(t, "port", "create", "--bridge", bridge).Str("id")

	checkFields(t, "link", object(t, "port", "link", "--port", rp, "--peer", bp), map[string]string{"peerId": bp})
	checkFields(t, "peer", object(t, "port", "show", bp), map[string]string{"peerId": rp})

	_, err := run(t, "port", "link", "--port", spare, "--peer", bp)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Errorf("relinking a linked port: %v, want 409", err)
	}

	checkFields(t, "unlink", object(t, "port", "unlink", "--port", bp), map[string]string{"peerId": "-"})
	checkFields(t, "former peer", object(t, "port", "show", rp), map[string]string{"peerId": "-"})
}

func TestMembershipVerbs(t *testing.T) {
	t.Parallel()
	group, ipg := unique("pg"), unique("ipg")
	bridge := object(t, "bridge", "create", "--name", unique("members")).Str("id")
	port := object(t, "port", "create", "--bridge", bridge).Str("id")
	must(t, "port-group", "create", "--name", group)
	must(t, "ip-addr-group", "create", "--name", ipg)

	checkFields(t, "add-port", object(t, "port-group", "add-port", "--port-group", group, "--port", port),
		map[string]string{"portId": port})
	if got := objects(t, "port-group", "ports", "--port-group", group); len(got) != 1 || got[0].Str("portId") != port {
		t.Errorf("ports = %v, want %s", got, port)
	}
	must(t, "port-group", "remove-port", "--port-group", group, "--port", port)
	if got := objects(t, "port-group", "ports", "--port-group", group); len(got) != 0 {
		t.Errorf("ports after remove-port = %v", got)
	}

	checkFields(t, "add-addr", object(t, "ip-addr-group", "add-addr", "--group", ipg, "--addr", "10.4.0.5"),
		map[string]string{"addr": "10.4.0.5", "version": "4"})
	if table := must(t, "ip-addr-group", "show", ipg); !strings.Contains(table, "10.4.0.5") {
		t.Errorf("show lacks the member address:\n%s", table)
	}
	must(t, "ip-addr-group", "remove-addr", "--group", ipg, "--addr", "10.4.0.5")
	if got := objects(t, "ip-addr-group", "addrs", "--group", ipg); len(got) != 0 {
		t.Errorf("addrs after remove-addr = %v", got)
	}
}

func TestRuleFlags(t *testing.T) {
	t.Parallel()
	target := unique("target")
	targetID := object(t, "chain", "create", "--name", target).Str("id")
	cases := []struct {
		name  string
		flags []string
		want  map[string]string
		check func(t *testing.T, o Object)
	}{
		{
			name:  "accept with L3/L4 match",
			flags: []string{"--type", "accept", "--proto", "tcp", "--nw-src", "10.0.0.0/8", "--nw-dst", "192.0.2.7", "--tp-dst", "8000-8080", "--inv-nw-src"},
			want: map[string]string{"nwProto": "6", "nwSrcAddress": "10.0.0.0", "nwSrcLength": "8", "invNwSrc": "true",
				"nwDstAddress": "192.0.2.7", "nwDstLength": "32", "fragmentPolicy": "header"},
			check: func(t *testing.T, o Object) {
				tp, _ := o["tpDst"].(map[string]any)
				if format(tp["start"]) != "8000" || format(tp["end"]) != "8080" {
					t.Errorf("tpDst = %v, want 8000-8080", o["tpDst"])
				}
				if got, want := ruleMatch(o), "proto=tcp !nw-src=10.0.0.0/8 nw-dst=192.0.2.7/32 tp-dst=8000-8080"; got != want {
					t.Errorf("MATCH column = %q, want %q", got, want)
				}
			},
		},
		{
			name:  "jump by chain name",
			flags: []string{"--type", "jump", "--jump-chain", target},
			want:  map[string]string{"jumpChainId": targetID},
		},
		{
			name:  "dynamic snat",
			flags: []string{"--type", "snat", "--flow-action", "accept", "--nat-target", "192.0.2.1-192.0.2.4:1024-2047", "--match-forward-flow"},
			want:  map[string]string{"flowAction": "accept", "fragmentPolicy": "unfragmented", "matchForwardFlow": "true"},
			check: func(t *testing.T, o Object) {
				if got := ruleAction(o); got != "accept to 192.0.2.1-192.0.2.4:1024-2047" {
					t.Errorf("nat targets render as %q", got)
				}
			},
		},
		{
			name:  "static dnat",
			flags: []string{"--type", "dnat", "--flow-action", "accept", "--nat-target", "10.0.0.5", "--dl-type", "ipv4"},
			want:  map[string]string{"fragmentPolicy": "any", "dlType": "2048"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			chain := object(t, "chain", "create", "--name", unique("rules")).Str("id")
			o := object(t, append([]string{"rule", "create", "--chain", chain}, tc.flags...)...)
			checkFields(t, tc.name, o, tc.want)
			if tc.check != nil {
				tc.check(t, o)
			}
		})
	}

	t.Run("positions", func(t *testing.T) {
		chain := object(t, "chain", "create", "--name", unique("order")).Str("id")
		first := object(t, "rule", "create", "--chain", chain, "--type", "accept").Str("id")
		head := object(t, "rule", "create", "--chain", chain, "--type", "drop").Str("id")
		last := object(t, "rule", "create", "--chain", chain, "--type", "return", "--position", "3").Str("id")
		var got []string
		for _, r := range objects(t, "rule", "list", "--chain", chain) {
			got = append(got, r.Str("id"))
		}
		if want := []string{head, first, last}; !slices.Equal(got, want) {
			t.Errorf("rule order = %v, want %v", got, want)
		}
	})
}

func TestErrorOutput(t *testing.T) {
	t.Parallel()
	router := object(t, "router", "create", "--name", unique("errs")).Str("id")
	chain := object(t, "chain", "create", "--name", unique("errs")).Str("id")
	cases := []struct {
		name    string
		args    []string
		status  int // 0: a client-side error, no request
		wantErr []string
	}{
		{name: "400 with violations", args: []string{"bridge", "create", "--name", strings.Repeat("n", 300)},
			status: 400, wantErr: []string{"400 Bad Request", "Validation error(s) found", "\n  name: size must be between 0 and 255"}},
		{name: "400 semantic", args: []string{"route", "create", "--router", router, "--dst", "10.0.0.0/8"},
			status: 400, wantErr: []string{"400", "next hop port"}},
		{name: "400 rule position", args: []string{"rule", "create", "--chain", chain, "--type", "accept", "--position", "5"},
			status: 400, wantErr: []string{"400", "osition"}},
		{name: "404 unknown id", args: []string{"bridge", "show", "00000000-0000-4000-8000-00000000dead"},
			status: 404, wantErr: []string{"404 Not Found", "00000000-0000-4000-8000-00000000dead"}},
		{name: "404 delete unknown", args: []string{"router", "delete", "00000000-0000-4000-8000-00000000beef"},
			status: 404, wantErr: []string{"404"}},
		{name: "bad CIDR flag", args: []string{"rule", "create", "--chain", chain, "--type", "accept", "--nw-src", "10.0.0.0/33"},
			wantErr: []string{"--nw-src", "not a CIDR"}},
		{name: "bad enum flag", args: []string{"rule", "create", "--chain", chain, "--type", "allow"},
			wantErr: []string{"--type", "not one of"}},
		{name: "missing parent", args: []string{"port", "create"}, wantErr: []string{"--bridge or --router"}},
		{name: "two parents", args: []string{"port", "list", "--bridge", "a", "--router", "b"}, wantErr: []string{"only one of"}},
		{name: "bad output format", args: []string{"bridge", "list", "-o", "yaml"}, wantErr: []string{"table or json"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(t, tc.args...)
			if err == nil {
				t.Fatal("succeeded, want an error")
			}
			var ae *APIError
			isAPI := errors.As(err, &ae)
			switch {
			case tc.status == 0 && isAPI:
				t.Errorf("got an API answer %d, want a client-side error", ae.Status)
			case tc.status != 0 && !isAPI:
				t.Errorf("error %v is not an API answer", err)
			case tc.status != 0 && ae.Status != tc.status:
				t.Errorf("status %d, want %d", ae.Status, tc.status)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestAPIFromEnvironment(t *testing.T) {
	root := &cobra.Command{Use: "midonet"}
	Register(root)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	t.Setenv(EnvAPI, apiURL)
	root.SetArgs([]string{"tunnel-zone", "list", "-o", "json"})
	if err := root.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("with %s=%s: %v", EnvAPI, apiURL, err)
	}
	if !json.Valid(out.Bytes()) {
		t.Errorf("output is not JSON: %s", out.String())
	}

	// An explicit --api wins over the environment.
	t.Setenv(EnvAPI, "http://127.0.0.1:1/midonet-api")
	if _, err := run(t, "tunnel-zone", "list"); err != nil {
		t.Errorf("--api did not override %s: %v", EnvAPI, err)
	}
}

// TestEveryVerbHasExample walks the command tree: every runnable verb shows
// an example in its --help.
func TestEveryVerbHasExample(t *testing.T) {
	root := &cobra.Command{Use: "midonet"}
	Register(root)
	var walk func(c *cobra.Command)
	verbs := 0
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if !c.Runnable() || c.HasSubCommands() {
			return
		}
		verbs++
		want := c.Parent().CommandPath() // e.g. "midonet router bgp"
		if !c.Parent().HasParent() {     // a top-level verb such as trace
			want = c.CommandPath()
		}
		if !strings.Contains(c.Example, want) {
			t.Errorf("%q has no example using it", c.CommandPath())
		}
		var help bytes.Buffer
		c.SetOut(&help)
		if err := c.Help(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(help.String(), "Examples:") {
			t.Errorf("%q --help shows no example", c.CommandPath())
		}
	}
	walk(root)
	if verbs < 60 {
		t.Errorf("found %d verbs, want the full set", verbs)
	}
}

// TestShowTable checks the human form of one object: data fields, no links.
func TestShowTable(t *testing.T) {
	t.Parallel()
	name := unique("table")
	id := object(t, "bridge", "create", "--name", name).Str("id")
	out := must(t, "bridge", "show", name)
	for _, want := range []string{"id ", id, "name ", name, "inboundFilterId ", "adminStateUp "} {
		if !strings.Contains(out, want) {
			t.Errorf("show table lacks %q:\n%s", want, out)
		}
	}
	for _, unwanted := range []string{"http://", "inboundFilter  ", "\nuri "} {
		if strings.Contains(out, unwanted) {
			t.Errorf("show table carries link text %q:\n%s", unwanted, out)
		}
	}
	if first, _, _ := strings.Cut(out, "\n"); !strings.HasPrefix(first, "id") {
		t.Errorf("show table does not start with the id: %q", first)
	}
}
