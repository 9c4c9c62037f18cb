package neutron

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// vm is a VM: a namespace plugged into a host through a veth pair whose
// host side is the interface its Neutron port is bound to.
type vm struct {
	name    string
	host    int
	network string // "net1", "net2", or "public" for the outside world
	ip      string
	port    string // the Neutron port's id
	mac     string
	// instance is the port's device_id: the Nova instance the metadata
	// service answers for.
	instance string
	// active is when the agent had plugged the port.
	active time.Time
}

func (v *vm) ns() string { return prefix + v.name }

// plug creates the VM's namespace and link and gets the VM its address
// by DHCP from its host's agent, with Debian's dhclient and
// dhclient-script (address, default route, MTU), as a guest does; the VM
// takes the Neutron port's MAC, which its DHCP host entry and
// anti-spoofing rules name. It checks the lease gave the port's fixed IP,
// the subnet's gateway as the default route and its DNS server.
func (r *rig) plug(v *vm, gateway, dns string) {
	r.t.Helper()
	ipAll(r.t,
		[]string{"netns", "add", v.ns()},
		[]string{"link", "add", v.name, "netns", hostNS(v.host), "type", "veth", "peer", "name", "eth0", "netns", v.ns()},
		[]string{"-n", hostNS(v.host), "link", "set", v.name, "up"},
		[]string{"-n", v.ns(), "link", "set", "eth0", "address", v.mac},
		[]string{"-n", v.ns(), "link", "set", "lo", "up"},
		[]string{"-n", v.ns(), "link", "set", "eth0", "up"})
	// As Nova boots a VM once Neutron says its VIF is plugged, the guest
	// asks DHCP once the agent has plugged the port (the port is active).
	v.active = r.waitActive(v)
	if err := r.dhclient(v); err != nil {
		r.t.Fatalf("%s: %v", v.name, err)
	}
	addrs, _ := exec.Command("ip", "-n", v.ns(), "-4", "-o", "addr", "show", "dev", "eth0").Output()
	if !strings.Contains(string(addrs), " "+v.ip+"/24 ") {
		r.t.Errorf("%s: DHCP configured %q, want its port's fixed IP %s/24", v.name, strings.TrimSpace(string(addrs)), v.ip)
	}
	routes, _ := exec.Command("ip", "-n", v.ns(), "-4", "route", "show", "default").Output()
	if !strings.Contains(string(routes), "via "+gateway+" ") {
		r.t.Errorf("%s: DHCP configured the default route %q, want via the subnet's gateway %s", v.name,
			strings.TrimSpace(string(routes)), gateway)
	}
	if resolv, _ := os.ReadFile(filepath.Join("/etc/netns", v.ns(), "resolv.conf")); !strings.Contains(string(resolv), "nameserver "+dns+"\n") {
		r.t.Errorf("%s: DHCP configured the resolver %q, want the subnet's DNS server %s", v.name, resolv, dns)
	}
}

// waitActive waits until the agent of v's host has plugged v's port and
// returns when it did.
func (r *rig) waitActive(v *vm) time.Time {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var p struct {
			Active bool `json:"active"`
		}
		if r.api("GET", "/ports/"+v.port, nil, &p) == 200 && p.Active {
			return time.Now()
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: the agent of %s did not plug port %s within 30s", v.name, hostNames[v.host], v.port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dhclient runs Debian's DHCP client once in v's namespace: it returns
// when the lease is bound and applied and leaves the client renewing it
// (cleanup ends it).
func (r *rig) dhclient(v *vm) error {
	// ip netns exec bind-mounts /etc/netns/NS/* over /etc/*: dhclient-script
	// writes the VM's resolv.conf there, not the machine's.
	etc := filepath.Join("/etc/netns", v.ns())
	os.MkdirAll(etc, 0o755)
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), nil, 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", v.ns(), "dhclient", "-4", "-1", "-v",
		"-lf", filepath.Join(r.dir, v.name+".leases"), "-pf", dhclientPidFile(v.name), "eth0").CombinedOutput()
	if err != nil {
		return fmt.Errorf("dhclient got no lease from its agent: %v: %s", err, out)
	}
	return nil
}

// dhclient6 runs Debian's DHCPv6 client once in v's namespace, as
// dhclient does for IPv4.
func (r *rig) dhclient6(v *vm) error {
	ctx, cancel := context.WithTimeout(r.t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", v.ns(), "dhclient", "-6", "-1", "-v",
		"-lf", filepath.Join(r.dir, v.name+".leases6"), "-pf", dhclientPidFile(v.name+"-6"), "eth0").CombinedOutput()
	if err != nil {
		return fmt.Errorf("dhclient -6 got no lease from its agent: %v: %s", err, out)
	}
	return nil
}

// createPort creates a VM's Neutron port bound to its host and interface.
func (r *rig) createPort(v *vm, extra ...string) {
	r.t.Helper()
	var p struct {
		ID         string `json:"id"`
		MACAddress string `json:"mac_address"`
		VIFType    string `json:"binding_vif_type"`
	}
	v.instance = newUUID()
	args := append([]string{"port", "create", "--network", v.network, "--fixed-ip", "ip-address=" + v.ip, "--device", v.instance,
		"--host", hostNames[v.host], "--binding-profile", "interface_name=" + v.name, "--device-owner", "compute:nova"}, extra...)
	r.openstack(&p, append(args, v.name)...)
	if p.VIFType != "tap" {
		r.t.Errorf("port %s is bound with VIF type %q, want tap (the midonet mechanism driver's)", v.name, p.VIFType)
	}
	v.port, v.mac = p.ID, p.MACAddress
}

// TestOpenStackDrivesTheCloud builds two tenant networks, a router with an
// external gateway, a security group and a floating IP with the openstack
// CLI through neutron-server and the plugin, checks with packets that
// they behave, then deletes everything and checks the store is left
// without what the translation made.
func TestOpenStackDrivesTheCloud(t *testing.T) {
	need(t)
	r := startRig(t)

	// The external network and the outside world behind host3's uplink.
	r.openstack(nil, "network", "create", "--external", "public")
	r.openstack(nil, "subnet", "create", "--network", "public", "--subnet-range", "198.51.100.0/24",
		"--gateway", "198.51.100.1", "--no-dhcp", "public-subnet")
	outside := &vm{name: "uplink", host: 2, network: "public", ip: "198.51.100.1"}
	r.createPort(outside, "--disable-port-security", "--no-security-group")
	// The outside world is a namespace of its own, not a VM: it keeps its name.
	outside.name = "uplink"
	r.plugOutside(outside)

	// Two tenant networks joined by a router with a gateway on public.
	for i, n := range []string{"net1", "net2"} {
		r.openstack(nil, "network", "create", n)
		r.openstack(nil, "subnet", "create", "--network", n, "--subnet-range", "10.0."+strconv.Itoa(i+1)+".0/24",
			"--dns-nameserver", "10.0."+strconv.Itoa(i+1)+".2", n+"-subnet")
	}
	r.openstack(nil, "router", "create", "r1")
	r.openstack(nil, "router", "add", "subnet", "r1", "net1-subnet")
	r.openstack(nil, "router", "add", "subnet", "r1", "net2-subnet")
	r.openstack(nil, "router", "set", "r1", "--external-gateway", "public")
	var router struct {
		Gateway struct {
			IPs []struct {
				IP string `json:"ip_address"`
			} `json:"external_fixed_ips"`
		} `json:"external_gateway_info"`
	}
	r.openstack(&router, "router", "show", "r1")
	if len(router.Gateway.IPs) != 1 {
		t.Fatalf("router r1 has no gateway address: %+v", router)
	}
	gatewayIP := router.Gateway.IPs[0].IP

	// A security group letting in SSH-like TCP (22) and ICMP.
	r.openstack(nil, "security", "group", "create", "web")
	r.openstack(nil, "security", "group", "rule", "create", "web", "--ingress", "--protocol", "tcp", "--dst-port", "22")
	r.openstack(nil, "security", "group", "rule", "create", "web", "--ingress", "--protocol", "icmp")

	vms := []*vm{
		{name: "vm1", host: 0, network: "net1", ip: "10.0.1.11"},
		{name: "vm2", host: 1, network: "net2", ip: "10.0.2.11"},
		{name: "vm3", host: 2, network: "net1", ip: "10.0.1.12"},
	}
	for _, v := range vms[:2] {
		r.createPort(v, "--security-group", "web")
		net := v.ip[:strings.LastIndex(v.ip, ".")]
		r.plug(v, net+".1", net+".2")
	}
	// vm3: how long from the port's creation to its first packet through:
	// the CLI's call, plugging (until the agent has the port active), DHCP,
	// then pings probing every 50 ms.
	start := time.Now()
	r.createPort(vms[2], "--security-group", "web")
	cli := time.Since(start)
	plugged := time.Now()
	r.plug(vms[2], "10.0.1.1", "10.0.1.2")
	leased := time.Since(plugged)
	for !pingOnce(vms[2].ns(), vms[0].ip) {
		if time.Since(plugged) > time.Minute {
			t.Fatal("vm3's pings to vm1 are not answered within a minute of its port's creation")
		}
		time.Sleep(20 * time.Millisecond)
	}
	first := time.Since(plugged)
	ms := func(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }
	t.Logf("FIGURE port create --host to the VM's first packet forwarded: %v (the openstack CLI's call %v, the VM's "+
		"interface created and plugged by the agent %v, DHCP %v, the first ping answered %v)", ms(cli+first), ms(cli),
		ms(vms[2].active.Sub(plugged)), ms(leased-vms[2].active.Sub(plugged)), ms(first-leased))

	var fip struct {
		Address string `json:"floating_ip_address"`
	}
	// An address of our choosing, which Neutron's IPAM may have given the
	// router's gateway at random (then the create fails with a 409).
	fipAddr := "198.51.100.50"
	if gatewayIP == fipAddr {
		fipAddr = "198.51.100.51"
	}
	r.openstack(&fip, "floating", "ip", "create", "public", "--port", "vm1", "--floating-ip-address", fipAddr)

	for _, v := range vms {
		serve(t, v.ns(), 22)
		serve(t, v.ns(), 23)
	}
	serve(t, extNS, 80)

	t.Run("same network across hosts", func(t *testing.T) {
		eventually(t, 30*time.Second, "vm1 pings vm3", func() bool { return pings(vms[0].ns(), vms[2].ip, 2) >= 1 })
	})
	t.Run("routed across hosts", func(t *testing.T) {
		eventually(t, 30*time.Second, "vm1 pings vm2 through the router", func() bool { return pings(vms[0].ns(), vms[1].ip, 2) >= 1 })
		if seen := dial(vms[1].ns(), net.JoinHostPort(vms[0].ip, "22"), 5*time.Second); seen != vms[1].ip {
			t.Errorf("vm2 -> vm1:22: the server saw %q, want vm2's address %s", seen, vms[1].ip)
		}
	})
	t.Run("security group holds", func(t *testing.T) {
		if seen := dial(vms[1].ns(), net.JoinHostPort(vms[0].ip, "23"), 2*time.Second); seen != "" {
			t.Errorf("vm2 -> vm1:23 connected (the server saw %s); the group allows only 22 and ICMP", seen)
		}
		if seen := dial(vms[0].ns(), net.JoinHostPort(vms[2].ip, "23"), 2*time.Second); seen != "" {
			t.Errorf("vm1 -> vm3:23 connected; the group allows only 22 and ICMP")
		}
	})
	t.Run("SNAT to the outside", func(t *testing.T) {
		eventually(t, 30*time.Second, "vm2 pings the outside", func() bool { return pings(vms[1].ns(), outside.ip, 2) >= 1 })
		if seen := dial(vms[1].ns(), net.JoinHostPort(outside.ip, "80"), 5*time.Second); seen != gatewayIP {
			t.Errorf("vm2 -> outside: the outside saw %q, want the router's gateway address %s", seen, gatewayIP)
		}
	})
	t.Run("floating IP", func(t *testing.T) {
		eventually(t, 30*time.Second, "the outside pings the floating IP", func() bool { return pings(extNS, fip.Address, 2) >= 1 })
		if seen := dial(extNS, net.JoinHostPort(fip.Address, "22"), 5*time.Second); seen != outside.ip {
			t.Errorf("outside -> floating IP:22: vm1 saw %q, want %s", seen, outside.ip)
		}
		if seen := dial(extNS, net.JoinHostPort(fip.Address, "23"), 2*time.Second); seen != "" {
			t.Errorf("outside -> floating IP:23 connected; the group allows only 22 and ICMP")
		}
		if seen := dial(vms[0].ns(), net.JoinHostPort(outside.ip, "80"), 5*time.Second); seen != fip.Address {
			t.Errorf("vm1 -> outside: the outside saw %q, want vm1's floating IP %s", seen, fip.Address)
		}
	})

	t.Run("DHCPv6 on an IPv6 subnet", func(t *testing.T) {
		// An IPv6 subnet on net1 and an address on it for vm3: the agent
		// of vm3's host gives it by DHCPv6 to Debian's dhclient -6, which
		// identifies itself by a DUID made from vm3's MAC.
		r.openstackIn(t, nil, "subnet", "create", "--network", "net1", "--ip-version", "6", "--subnet-range", "2001:db8:1::/64",
			"--ipv6-address-mode", "dhcpv6-stateful", "--dns-nameserver", "2001:db8:1::53", "net1-v6")
		r.openstackIn(t, nil, "port", "set", "vm3", "--fixed-ip", "subnet=net1-v6,ip-address=2001:db8:1::12")
		if err := r.dhclient6(vms[2]); err != nil {
			t.Fatalf("vm3: %v", err)
		}
		addrs, _ := exec.Command("ip", "-n", vms[2].ns(), "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global").Output()
		if !strings.Contains(string(addrs), " 2001:db8:1::12/") {
			t.Errorf("vm3: DHCPv6 configured %q, want its port's fixed IP 2001:db8:1::12", strings.TrimSpace(string(addrs)))
		}
		if resolv, _ := os.ReadFile(filepath.Join("/etc/netns", vms[2].ns(), "resolv.conf")); !strings.Contains(string(resolv), "2001:db8:1::53") {
			t.Errorf("vm3: DHCPv6 configured the resolver %q, want the subnet's DNS server 2001:db8:1::53", resolv)
		}
		// A router on the IPv6 subnet is refused (Neutron itself refuses a
		// stateful subnet without ipv6_ra_mode; the cluster's own 501 for
		// router ports on IPv6 subnets is TestSubnet6Refusals').
		if err := r.openstackErr(nil, "router", "add", "subnet", "r1", "net1-v6"); err == nil {
			t.Error("router add subnet on an IPv6 subnet succeeded")
		} else {
			t.Logf("router add subnet on an IPv6 subnet refused: %v", err)
		}
		// Its IPv4 address still works.
		if pings(vms[2].ns(), vms[0].ip, 2) == 0 {
			t.Error("vm3 no longer pings vm1 after its IPv6 address was added")
		}
	})
	t.Run("metadata through the agent", func(t *testing.T) {
		for _, v := range []*vm{vms[0], vms[2]} {
			var md map[string]string
			eventually(t, 30*time.Second, v.name+" reads its metadata", func() bool { md = metadata(v.ns()); return md != nil })
			if md["uuid"] != v.instance || md["forwarded_for"] != v.ip || md["project_id"] != "fake_project_id" ||
				md["path"] != "/openstack/latest/meta_data.json" {
				t.Errorf("%s got the metadata %v; want instance %s, forwarded for %s", v.name, md, v.instance, v.ip)
			}
		}
	})
	t.Run("tokens and tenants on the cluster", func(t *testing.T) {
		// What neutron-server made belongs to its project; users of that
		// project and of another one, created through the API.
		for _, u := range []struct{ name, tenant, role string }{
			{"viewer", "fake_project_id", "tenant_user"}, {"stranger", "other_project", "tenant_admin"},
		} {
			if s := r.api("POST", "/users", map[string]any{"name": u.name, "tenant": u.tenant, "role": u.role,
				"password": u.name + "-password"}, nil); s != 201 {
				t.Fatalf("creating user %s: %d", u.name, s)
			}
		}
		viewer, stranger := r.login("viewer", "viewer-password"), r.login("stranger", "stranger-password")
		port := "/neutron/ports/" + vms[0].port
		for _, c := range []struct {
			who, token, method, path string
			want                     int
		}{
			{"no token", "", "GET", port, 401},
			{"a forged token", "forged-" + r.token, "GET", port, 401},
			{"no token", "", "GET", "/bridges", 401},
			{"the project's user", viewer, "GET", port, 200},
			{"the project's user", viewer, "DELETE", port, 403},
			{"another project's admin", stranger, "GET", port, 404},
			{"another project's admin", stranger, "DELETE", port, 404},
			{"another project's admin", stranger, "GET", "/hosts", 403},
		} {
			if s := r.apiAs(c.token, c.method, c.path, nil, nil); s != c.want {
				t.Errorf("%s: %s %s = %d, want %d", c.who, c.method, c.path, s, c.want)
			}
		}
		count := func(token, coll string) int {
			var l []map[string]any
			if s := r.apiAs(token, "GET", coll, nil, &l); s != 200 {
				t.Errorf("GET %s = %d", coll, s)
			}
			return len(l)
		}
		for _, coll := range []string{"/neutron/networks", "/neutron/ports", "/bridges", "/routers"} {
			if n := count(viewer, coll); n == 0 {
				t.Errorf("the project's user sees no %s", coll)
			}
			if n := count(stranger, coll); n != 0 {
				t.Errorf("another project's admin sees %d of the project's %s", n, coll)
			}
		}
		// The refusals changed nothing: vm1 still reaches vm3.
		if pings(vms[0].ns(), vms[2].ip, 2) == 0 {
			t.Error("vm1 no longer pings vm3 after the refused calls")
		}
	})
	t.Run("deleting everything leaves nothing", func(t *testing.T) {
		r.openstackIn(t, nil, "floating", "ip", "delete", fip.Address)
		for _, v := range append(vms, outside) {
			r.openstackIn(t, nil, "port", "delete", v.port)
		}
		r.openstackIn(t, nil, "router", "unset", "--external-gateway", "r1")
		r.openstackIn(t, nil, "router", "remove", "subnet", "r1", "net1-subnet")
		r.openstackIn(t, nil, "router", "remove", "subnet", "r1", "net2-subnet")
		r.openstackIn(t, nil, "router", "delete", "r1")
		var groups []struct {
			ID string `json:"ID"`
		}
		r.openstackIn(t, &groups, "security", "group", "list")
		for _, g := range groups {
			r.openstackIn(t, nil, "security", "group", "delete", g.ID)
		}
		for _, n := range []string{"net1", "net2", "public"} {
			r.openstackIn(t, nil, "network", "delete", n)
		}
		for _, coll := range []string{"/bridges", "/routers", "/ports", "/chains", "/port_groups", "/ip_addr_groups",
			"/neutron/networks", "/neutron/subnets", "/neutron/ports", "/neutron/routers", "/neutron/floating_ips",
			"/neutron/security_groups", "/neutron/security_group_rules"} {
			var left []map[string]any
			if s := r.api("GET", coll, nil, &left); s != 200 || len(left) != 0 {
				r.errorf(t, "GET %s = %d with %d objects left: %v", coll, s, len(left), left)
			}
		}
		for _, p := range []string{"/state/bridges/", "/state/routers/"} {
			entries, _, err := r.cluster.Store.ListState(t.Context(), p)
			if err != nil || len(entries) != 0 {
				r.errorf(t, "state under %s: %d entries left (%v)", p, len(entries), err)
			}
		}
	})
}

// newUUID returns a random UUID (an instance id).
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// plugOutside makes the outside world: a namespace on host3's uplink, at
// the public subnet's gateway address, routing the floating range back.
func (r *rig) plugOutside(o *vm) {
	r.t.Helper()
	ipAll(r.t,
		[]string{"netns", "add", extNS},
		[]string{"link", "add", o.name, "netns", hostNS(o.host), "type", "veth", "peer", "name", "eth0", "netns", extNS},
		[]string{"-n", hostNS(o.host), "link", "set", o.name, "up"},
		[]string{"-n", extNS, "link", "set", "eth0", "address", o.mac},
		[]string{"-n", extNS, "addr", "add", o.ip + "/24", "dev", "eth0"},
		[]string{"-n", extNS, "link", "set", "eth0", "up"},
		[]string{"-n", extNS, "link", "set", "lo", "up"})
}
