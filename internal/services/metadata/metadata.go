// Package metadata is the OpenStack metadata proxy an agent runs for the
// VMs of its host, as MidoNet's agent did: a VM reaches
// http://169.254.169.254/ through its agent, which forwards the request to
// Nova's metadata service with the headers Nova needs to know the VM: its
// instance id (the Neutron port's device_id), its project, and
// X-Instance-ID-Signature, the HMAC-SHA256 of the instance id keyed with
// the secret Nova and the proxy share.
//
// The proxy listens on 169.254.169.254:80 on a veth pair of the agent's
// host; the other end is a port of the datapath. Each bound VM port gets
// an address of its own in 169.254.0.0/16 and two flows: the VM's TCP to
// 169.254.169.254:80 leaves with that address as its source, to the proxy's
// interface; the proxy's answers to that address go back to the VM with
// the VM's address and MAC. The proxy tells VMs apart by that address.
// Misses of that traffic reach the proxy before the simulation (it is a
// PacketTaker), so no simulated flow ever covers it.
package metadata

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"

	"github.com/midonet/midonet/internal/agent"
	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/flows"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// ServiceAddr is where VMs reach the metadata service.
var ServiceAddr = netip.MustParseAddr("169.254.169.254")

// DefaultInterface names the proxy's end of the veth pair; the
// datapath's end is the name with "-dp".
const DefaultInterface = "mnmeta"

// PortID names the proxy's datapath port among the services' ports (it is
// no topology object).
var PortID = uuid.MustParse("6d657461-6461-7461-2d70-726f78790001")

// Config configures the proxy.
type Config struct {
	// NovaURL is Nova's metadata service, e.g. http://nova-api:8775.
	NovaURL string
	// SharedSecret is Nova's metadata_proxy_shared_secret.
	SharedSecret string
	// Interface names the proxy's interface (default DefaultInterface).
	Interface string
	// Client forwards requests to Nova (default: 30 s timeout).
	Client *http.Client
}

// Proxy is the metadata proxy service. It implements agent.Service,
// agent.PortWatcher and agent.PacketTaker.
type Proxy struct {
	cfg  Config
	nova *url.URL

	mu              sync.Mutex
	host            *agent.ServiceHost              // guarded by mu: set while Run runs
	bound           map[topology.ID]agent.BoundPort // guarded by mu: every port bound here
	vms             map[topology.ID]*vm             // guarded by mu: the bound ports that are VMs
	others          map[topology.ID]bool            // guarded by mu: bound ports found not to be VMs
	byLocal         map[netip.Addr]*vm              // guarded by mu
	next            uint32                          // guarded by mu: the next local address index
	dpPort          datapath.PortNo                 // guarded by mu: the datapath's end (0: not up)
	proxyMAC, dpMAC [6]byte                         // guarded by mu
	kick            chan struct{}

	metricsOnce sync.Once
	requests    *prometheus.CounterVec // by result; nil until Run
}

// vm is a bound port of a VM with what the proxy needs of it.
type vm struct {
	port     topology.ID
	dp       datapath.PortNo
	ip       netip.Addr // the VM's
	mac      [6]byte
	local    netip.Addr // the VM's address on the proxy's side
	instance string     // the Neutron port's device_id
	tenant   string
}

// New returns a proxy; Run starts it.
func New(cfg Config) (*Proxy, error) {
	u, err := url.Parse(cfg.NovaURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--metadata-nova-url %q: want Nova's metadata URL, e.g. http://nova-api:8775", cfg.NovaURL)
	}
	if cfg.SharedSecret == "" {
		return nil, errors.New("metadata: no shared secret; give Nova's metadata_proxy_shared_secret (--metadata-secret-file)")
	}
	if cfg.Interface == "" {
		cfg.Interface = DefaultInterface
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	return &Proxy{cfg: cfg, nova: u, bound: map[topology.ID]agent.BoundPort{}, vms: map[topology.ID]*vm{},
		byLocal: map[netip.Addr]*vm{}, others: map[topology.ID]bool{}, kick: make(chan struct{}, 1)}, nil
}

// Name implements agent.Service.
func (p *Proxy) Name() string { return "metadata" }

// Sign returns the X-Instance-ID-Signature of an instance id.
func Sign(secret, instance string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(instance))
	return hex.EncodeToString(m.Sum(nil))
}

// Run implements agent.Service: it makes the veth pair and its datapath
// port, serves the proxy, and keeps the VMs' flows installed.
func (p *Proxy) Run(ctx context.Context, host *agent.ServiceHost) error {
	dpName := p.cfg.Interface + "-dp"
	if l, err := netlink.LinkByName(p.cfg.Interface); err == nil {
		netlink.LinkDel(l) // a previous run's
	}
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.cfg.Interface}, PeerName: dpName}); err != nil {
		return fmt.Errorf("metadata: create the veth pair %s/%s: %w", p.cfg.Interface, dpName, err)
	}
	defer func() {
		if l, err := netlink.LinkByName(p.cfg.Interface); err == nil {
			netlink.LinkDel(l)
		}
	}()
	proxyLink, err := netlink.LinkByName(p.cfg.Interface)
	if err != nil {
		return err
	}
	dpLink, err := netlink.LinkByName(dpName)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(proxyLink, &netlink.Addr{IPNet: &net.IPNet{IP: ServiceAddr.AsSlice(), Mask: net.CIDRMask(16, 32)}}); err != nil {
		return fmt.Errorf("metadata: address %s on %s: %w", ServiceAddr, p.cfg.Interface, err)
	}
	for _, l := range []netlink.Link{proxyLink, dpLink} {
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("metadata: bring %s up: %w", l.Attrs().Name, err)
		}
	}
	no, err := host.AttachPort(PortID, dpName, p.fromProxy)
	if err != nil {
		return fmt.Errorf("metadata: plug %s into the datapath: %w", dpName, err)
	}
	defer host.DetachPort(PortID)
	p.registerMetrics(host)
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ServiceAddr, 80).String())
	if err != nil {
		return fmt.Errorf("metadata: listen on %s:80: %w", ServiceAddr, err)
	}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		srv.Shutdown(sctx)
		cancel()
		<-done
	}()

	p.mu.Lock()
	p.host, p.dpPort = host, no
	copy(p.proxyMAC[:], proxyLink.Attrs().HardwareAddr)
	copy(p.dpMAC[:], dpLink.Attrs().HardwareAddr)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.host, p.dpPort = nil, 0
		clear(p.vms)
		clear(p.byLocal)
		p.mu.Unlock()
	}()
	host.Log.Info("metadata proxy serving", "addr", ServiceAddr.String()+":80", "nova", p.cfg.NovaURL, "interface", p.cfg.Interface)

	tick := time.NewTicker(refreshInterval)
	defer tick.Stop()
	for {
		p.refresh(ctx, host, proxyLink)
		select {
		case <-ctx.Done():
			return nil
		case err := <-done:
			return fmt.Errorf("metadata: proxy server: %w", err)
		case <-tick.C:
		case <-p.kick:
		}
	}
}

// refreshInterval is how often the proxy looks its VMs up again and
// installs their flows anew (they live flowLifetime).
const (
	refreshInterval = 5 * time.Second
	flowLifetime    = 30 * time.Second
)

// PortBound implements agent.PortWatcher.
func (p *Proxy) PortBound(b agent.BoundPort) {
	p.mu.Lock()
	p.bound[b.ID] = b
	delete(p.others, b.ID)
	p.mu.Unlock()
	p.poke()
}

// PortUnbound implements agent.PortWatcher.
func (p *Proxy) PortUnbound(b agent.BoundPort) {
	p.mu.Lock()
	delete(p.bound, b.ID)
	delete(p.others, b.ID)
	host := p.host
	if v, ok := p.vms[b.ID]; ok {
		delete(p.vms, b.ID)
		delete(p.byLocal, v.local)
	}
	p.mu.Unlock()
	if host != nil {
		host.Flows.Invalidate([]sim.Tag{portTag(b.ID)})
	}
}

func (p *Proxy) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// portTag tags the proxy's flows of a port.
func portTag(id topology.ID) sim.Tag { return sim.DeviceTag(id) }

// neutronPort is what the proxy reads of a Neutron port.
type neutronPort struct {
	DeviceID    string `json:"device_id"`
	DeviceOwner string `json:"device_owner"`
	TenantID    string `json:"tenant_id"`
	ProjectID   string `json:"project_id"`
	MACAddress  string `json:"mac_address"`
	FixedIPs    []struct {
		IPAddress string `json:"ip_address"`
	} `json:"fixed_ips"`
}

func (neutronPort) Kind() string       { return "neutron_ports" }
func (n neutronPort) ObjectID() string { return "" }

// refresh finds the VMs among the bound ports (the Neutron ports of
// instances with an IPv4 address), gives each its local address, and
// installs the flows of all of them.
func (p *Proxy) refresh(ctx context.Context, host *agent.ServiceHost, proxyLink netlink.Link) {
	p.mu.Lock()
	var todo []agent.BoundPort
	for id, b := range p.bound {
		if _, ok := p.vms[id]; !ok && !p.others[id] {
			todo = append(todo, b)
		}
	}
	p.mu.Unlock()
	notVM := func(id topology.ID) {
		p.mu.Lock()
		p.others[id] = true
		p.mu.Unlock()
	}
	for _, b := range todo {
		var np neutronPort
		err := host.Store.View(ctx, func(tx topology.Store) error { return tx.Get("neutron_ports", b.ID.String(), &np) })
		if errors.Is(err, topology.ErrNotFound) {
			notVM(b.ID) // a port of the MidoNet API, not of Neutron
			continue
		}
		if err != nil {
			continue // the store is away: next time
		}
		if np.DeviceID == "" || strings.HasPrefix(np.DeviceOwner, "network:") {
			notVM(b.ID)
			continue
		}
		var ip netip.Addr
		for _, f := range np.FixedIPs {
			if a, err := netip.ParseAddr(f.IPAddress); err == nil && a.Is4() {
				ip = a
				break
			}
		}
		mac, ok := topology.ParseMAC(np.MACAddress)
		if !ip.IsValid() || !ok {
			notVM(b.ID)
			continue
		}
		tenant := np.TenantID
		if tenant == "" {
			tenant = np.ProjectID
		}
		p.mu.Lock()
		if _, still := p.bound[b.ID]; still {
			local := localAddr(p.next)
			p.next++
			v := &vm{port: b.ID, dp: b.DatapathPort, ip: ip, mac: mac, local: local, instance: np.DeviceID, tenant: tenant}
			p.vms[b.ID], p.byLocal[local] = v, v
			host.Log.Info("metadata for a VM", "port_id", b.ID, "instance", np.DeviceID, "vm_ip", ip, "local", local)
		}
		p.mu.Unlock()
	}
	p.mu.Lock()
	vms := make([]*vm, 0, len(p.vms))
	for _, v := range p.vms {
		vms = append(vms, v)
	}
	p.mu.Unlock()
	for _, v := range vms {
		// The proxy's kernel reaches each VM's local address through
		// the datapath's end of the pair, without asking ARP.
		netlink.NeighSet(&netlink.Neigh{LinkIndex: proxyLink.Attrs().Index, State: netlink.NUD_PERMANENT,
			IP: v.local.AsSlice(), HardwareAddr: net.HardwareAddr(p.dpMACCopy()), Family: netlink.FAMILY_V4})
		p.install(host, v)
	}
}

func (p *Proxy) dpMACCopy() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]byte(nil), p.dpMAC[:]...)
}

// localAddr is the i-th local address: 169.254.1.0 and up (the proxy's own
// 169.254.169.254 is never one of them).
func localAddr(i uint32) netip.Addr {
	n := 1<<8 + i // 169.254.1.0 ...
	if n >= 169<<8+254 {
		n++
	}
	return netip.AddrFrom4([4]byte{169, 254, byte(n >> 8), byte(n)})
}

// flows returns the two flows of a VM: to the proxy, and back.
func (p *Proxy) flows(v *vm) (out, back flows.Entry) {
	p.mu.Lock()
	dpPort, proxyMAC, dpMAC := p.dpPort, p.proxyMAC, p.dpMAC
	p.mu.Unlock()
	out.Key = packet.FlowKey{InPort: uint32(v.dp), EthType: 0x0800, NwProto: 6, NwDst: ServiceAddr.As4(), TpDst: 80}
	out.Mask = packet.FlowKey{InPort: ^uint32(0), EthType: 0xffff, NwProto: 0xff, NwDst: [4]byte{255, 255, 255, 255}, TpDst: 0xffff}
	out.Actions = []datapath.Action{
		datapath.SetEthernet(datapath.EthernetSet{Src: dpMAC, Dst: proxyMAC, Fields: datapath.SetSrc | datapath.SetDst}),
		datapath.SetIPv4(datapath.IPv4Set{Src: v.local.As4(), Fields: datapath.SetSrc}),
		datapath.Output(dpPort),
	}
	back.Key = packet.FlowKey{InPort: uint32(dpPort), EthType: 0x0800, NwProto: 6, NwDst: v.local.As4(), TpSrc: 80}
	back.Mask = packet.FlowKey{InPort: ^uint32(0), EthType: 0xffff, NwProto: 0xff, NwDst: [4]byte{255, 255, 255, 255}, TpSrc: 0xffff}
	back.Actions = []datapath.Action{
		datapath.SetEthernet(datapath.EthernetSet{Src: dpMAC, Dst: v.mac, Fields: datapath.SetSrc | datapath.SetDst}),
		datapath.SetIPv4(datapath.IPv4Set{Dst: v.ip.As4(), Fields: datapath.SetDst}),
		datapath.Output(v.dp),
	}
	return out, back
}

// install (re)installs a VM's two flows.
func (p *Proxy) install(host *agent.ServiceHost, v *vm) {
	out, back := p.flows(v)
	exp := time.Now().Add(flowLifetime)
	for _, e := range []flows.Entry{out, back} {
		e.Tags, e.Expires, e.Since = []sim.Tag{portTag(v.port)}, exp, host.Flows.Generation()
		host.Flows.Add(&e)
	}
}

// fromProxy takes the misses of the proxy's datapath port: its answers to
// a VM's local address go back to the VM; anything else is dropped (the
// proxy's interface is no virtual port).
func (p *Proxy) fromProxy(u *datapath.Upcall) {
	k := &u.Key
	if k.EthType != 0x0800 || k.NwProto != 6 || k.TpSrc != 80 {
		return
	}
	p.mu.Lock()
	v, host := p.byLocal[netip.AddrFrom4(k.NwDst)], p.host
	p.mu.Unlock()
	if v == nil || host == nil {
		return
	}
	_, back := p.flows(v)
	host.Datapath.Execute(u.Packet, back.Actions, u.InPort)
	p.install(host, v)
}

// TakePacket implements agent.PacketTaker: a VM's TCP to the metadata
// service never reaches the simulation. The packet goes out as its flow
// would send it (a VM the proxy does not know yet drops its SYN: TCP
// sends it again).
func (p *Proxy) TakePacket(u *datapath.Upcall) bool {
	p.mu.Lock()
	dpPort := p.dpPort
	host := p.host
	var v *vm
	k := &u.Key
	switch {
	case dpPort == 0:
		p.mu.Unlock()
		return false
	case k.EthType == 0x0800 && k.NwProto == 6 && k.TpDst == 80 && netip.AddrFrom4(k.NwDst) == ServiceAddr:
		for _, x := range p.vms {
			if x.dp == u.InPort {
				v = x
				break
			}
		}
		id, isBound := p.boundDP(u.InPort)
		other := p.others[id]
		p.mu.Unlock()
		if !isBound || other {
			return false // not a VM of this proxy: the simulation decides
		}
		if v == nil {
			p.poke()
			return true
		}
		out, _ := p.flows(v)
		host.Datapath.Execute(u.Packet, out.Actions, u.InPort)
		p.install(host, v)
		return true
	}
	p.mu.Unlock()
	return false
}

// boundDP reports whether a datapath port is a bound virtual port
// (called with mu held).
func (p *Proxy) boundDP(no datapath.PortNo) (topology.ID, bool) {
	for id, b := range p.bound {
		if b.DatapathPort == no {
			return id, true
		}
	}
	return topology.ID{}, false
}

// registerMetrics registers the proxy's counter once.
func (p *Proxy) registerMetrics(host *agent.ServiceHost) {
	p.metricsOnce.Do(func() {
		p.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "midonet", Subsystem: "metadata",
			Name: "requests_total", Help: "VMs' metadata requests: forwarded to Nova, from an unknown address, Nova unreachable."},
			[]string{"result"})
		if host.Metrics != nil {
			host.Metrics.MustRegister(p.requests)
		}
	})
}

func (p *Proxy) count(result string) {
	if p.requests != nil {
		p.requests.WithLabelValues(result).Inc()
	}
}

// hopHeaders are not forwarded (RFC 9110, 7.6.1).
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade"}

// ServeHTTP forwards a VM's request to Nova with the VM's identity.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	local, err := netip.ParseAddr(host)
	p.mu.Lock()
	v := p.byLocal[local]
	var vc vm
	if v != nil {
		vc = *v
	}
	p.mu.Unlock()
	if err != nil || v == nil {
		p.count("unknown")
		http.Error(w, "this address is not a VM the metadata proxy knows", http.StatusNotFound)
		return
	}
	p.forward(w, r, vc.ip, vc.instance, vc.tenant)
}

// Handler returns the proxy's forwarding for a fixed caller: tests of the
// Nova side use it without a datapath.
func (p *Proxy) Handler(vmIP netip.Addr, instance, tenant string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.forward(w, r, vmIP, instance, tenant) })
}

func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, vmIP netip.Addr, instance, tenant string) {
	target := *p.nova
	target.Path = strings.TrimSuffix(p.nova.Path, "/") + r.URL.Path
	target.RawQuery = r.URL.RawQuery
	req, err := http.NewRequestWithContext(r.Context(), r.Method, target.String(), r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for k, vs := range r.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}
	req.Header.Set("X-Forwarded-For", vmIP.String())
	req.Header.Set("X-Instance-ID", instance)
	req.Header.Set("X-Tenant-ID", tenant)
	req.Header.Set("X-Instance-ID-Signature", Sign(p.cfg.SharedSecret, instance))
	resp, err := p.cfg.Client.Do(req)
	if err != nil {
		p.count("nova_unreachable")
		http.Error(w, "the metadata service (Nova) cannot be reached", http.StatusBadGateway)
		return
	}
	p.count("forwarded")
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	for _, h := range hopHeaders {
		w.Header().Del(h)
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// Status is what a test or an operator reads of the proxy: the VMs it
// knows.
func (p *Proxy) Status() []map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := []map[string]string{}
	for _, v := range p.vms {
		out = append(out, map[string]string{"port": v.port.String(), "instance": v.instance, "vm": v.ip.String(), "local": v.local.String()})
	}
	return out
}
