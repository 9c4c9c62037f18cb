package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

// HostStateDir is where the agent of host keeps its host id and flow state
// under the --state-dir given (ReadSavedState reads the flow state there).
func HostStateDir(stateDir, host string) string {
	return filepath.Join(stateDir, "hosts", safeName(host))
}

// safeName turns a host name into a directory name.
func safeName(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') || (c == '.' && i == 0) {
			b[i] = '_'
		}
	}
	return string(b)
}

// loadHostID reads the host id kept in the state directory, creating it on
// first start so the host keeps its identity across restarts.
func loadHostID(dir string) (id topology.ID, fresh bool, err error) {
	path := filepath.Join(dir, "host_id")
	if b, err := os.ReadFile(path); err == nil {
		id, err := topology.ParseID(strings.TrimSpace(string(b)))
		if err != nil {
			return id, false, fmt.Errorf("agent: %s holds %q, not a host id; remove it to get a new one", path, b)
		}
		return id, false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return topology.ID{}, false, fmt.Errorf("agent: read host id: %w", err)
	}
	id = topology.NewID()
	return id, true, saveHostID(dir, id)
}

func saveHostID(dir string, id topology.ID) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("agent: state directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "host_id"), []byte(id.String()+"\n"), 0o644); err != nil {
		return fmt.Errorf("agent: write host id: %w", err)
	}
	return nil
}

// register reads the host's identity, makes sure the host object exists
// with its name and opens the session that keeps the host alive.
func (a *Agent) register(ctx context.Context) error {
	id, fresh, err := loadHostID(a.cfg.StateDir)
	if err != nil {
		return err
	}
	a.setHostID(id)
	if fresh {
		if err := a.adoptHost(ctx); err != nil {
			return err
		}
	}
	err = a.store.Update(ctx, func(tx topology.Store) error {
		var h topology.Host
		err := tx.Get(topology.KindHost, a.hostID.String(), &h)
		switch {
		case errors.Is(err, topology.ErrNotFound):
			h = topology.Host{ID: a.hostID, FloodingProxyWeight: 1, ContainerWeight: 1, ContainerLimit: -1}
		case err != nil:
			return err
		}
		if h.Name != nil && *h.Name == a.cfg.HostName {
			return nil
		}
		h.Name = topology.Str(a.cfg.HostName)
		return tx.Put(&h)
	})
	if err != nil {
		return fmt.Errorf("agent: register host %s: %w", a.hostID, err)
	}
	a.session, err = a.store.NewSession(ctx, a.cfg.SessionTTL)
	if err != nil {
		return fmt.Errorf("agent: open a session: %w", err)
	}
	if err := a.session.SetState(ctx, nsdb.HostAliveKey(a.hostID.String()), []byte(a.cfg.HostName)); err != nil {
		a.session.Close()
		return fmt.Errorf("agent: mark host alive: %w", err)
	}
	if a.cfg.MetricsAddress != "" {
		if err := a.session.SetState(ctx, nsdb.HostMetricsKey(a.hostID.String()), []byte(a.cfg.MetricsAddress)); err != nil {
			a.session.Close()
			return fmt.Errorf("agent: publish the metrics address: %w", err)
		}
	}
	a.log.Info("host registered", "name", a.cfg.HostName)
	return nil
}

// setHostID makes id the host's, in what the agent logs.
func (a *Agent) setHostID(id topology.ID) {
	a.hostID = id
	a.log = a.cfg.Logger.With("host_id", id.String(), "host", a.cfg.HostName)
}

// adoptHost takes over the id of a host object an operator created with
// this agent's name (POST /hosts before the agent first ran, to bind
// ports in advance), unless an agent already keeps that host alive.
func (a *Agent) adoptHost(ctx context.Context) error {
	var match []topology.Host
	err := a.store.View(ctx, func(tx topology.Store) error {
		hosts, err := topology.ListOf[topology.Host](tx)
		for _, h := range hosts {
			if h.Name != nil && *h.Name == a.cfg.HostName && h.ID != a.hostID {
				match = append(match, h)
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("agent: look up host %s: %w", a.cfg.HostName, err)
	}
	if len(match) != 1 {
		return nil
	}
	if _, err := a.store.GetState(ctx, nsdb.HostAliveKey(match[0].ID.String())); err == nil {
		return nil // another agent runs as this host
	}
	if err := saveHostID(a.cfg.StateDir, match[0].ID); err != nil {
		return err
	}
	a.setHostID(match[0].ID)
	a.log.Info("host adopted: an operator created it with this name")
	return nil
}

// publishInterfacesLoop publishes the host's interfaces (name, MAC,
// addresses, up/down, MTU) and keeps them current; it also retries
// bindings whose interface did not exist, as interfaces appear. It looks
// again as soon as the kernel reports a link change (a VM's tap created),
// and every 2 s in any case.
func (a *Agent) publishInterfacesLoop(ctx context.Context) {
	published := map[string]string{}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	links := a.subscribeLinks()
	defer links.close() // the subscription as made, even if links is cleared
	for {
		current := map[string]string{}
		itfs, err := net.Interfaces()
		if err == nil {
			for _, itf := range itfs {
				b, _ := json.Marshal(interfaceOf(a.hostID, itf))
				current[itf.Name] = string(b)
			}
		}
		appeared := false
		for name, v := range current {
			if published[name] == v {
				continue
			}
			if _, ok := published[name]; !ok {
				appeared = true
			}
			if err := a.session.SetState(ctx, nsdb.HostInterfaceKey(a.hostID.String(), name), []byte(v)); err == nil {
				published[name] = v
			}
		}
		for name := range published {
			if _, ok := current[name]; !ok {
				if err := a.session.DeleteState(ctx, nsdb.HostInterfaceKey(a.hostID.String(), name)); err == nil {
					delete(published, name)
				}
			}
		}
		if appeared {
			a.retryBindings()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case _, ok := <-links.changed():
			if !ok {
				a.log.Warn("link events ended; new interfaces are noticed within 2 s")
				links = nil
			}
			links.drain()
		}
	}
}

// linkEvents is a subscription to the kernel's link changes in the agent's
// network namespace; a nil one (no subscription) never fires.
type linkEvents struct {
	updates chan netlink.LinkUpdate
	done    chan struct{}
}

// subscribeLinks subscribes to link changes; on failure the agent falls
// back to its periodic scan.
func (a *Agent) subscribeLinks() *linkEvents {
	l := &linkEvents{updates: make(chan netlink.LinkUpdate, 64), done: make(chan struct{})}
	err := netlink.LinkSubscribeWithOptions(l.updates, l.done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) { a.log.Debug("link events", "err", err) },
	})
	if err != nil {
		a.log.Warn("link events unavailable; new interfaces are noticed within 2 s", "err", err)
		return nil
	}
	return l
}

// changed fires when links changed.
func (l *linkEvents) changed() <-chan netlink.LinkUpdate {
	if l == nil {
		return nil
	}
	return l.updates
}

// drain takes the updates already queued: one scan covers them all.
func (l *linkEvents) drain() {
	if l == nil {
		return
	}
	for {
		select {
		case _, ok := <-l.updates:
			if !ok {
				return
			}
		default:
			return
		}
	}
}

// close ends the subscription. The subscriber closes its socket and then
// the channel, which is read until then so that it never blocks sending.
func (l *linkEvents) close() {
	if l == nil {
		return
	}
	close(l.done)
	for range l.updates {
	}
}

// interfaceOf describes a network interface as MidoNet's API shows it.
func interfaceOf(host topology.ID, itf net.Interface) topology.Interface {
	out := topology.Interface{HostID: host, Name: itf.Name, MTU: itf.MTU, Type: "Virtual", Endpoint: "UNKNOWN",
		Addresses: []string{}}
	if len(itf.HardwareAddr) > 0 {
		out.MAC = topology.Str(itf.HardwareAddr.String())
	}
	if itf.Flags&net.FlagUp != 0 {
		out.Status |= topology.InterfaceUp
	}
	if itf.Flags&net.FlagRunning != 0 {
		out.Status |= topology.InterfaceHasLink
	}
	if itf.Flags&net.FlagLoopback != 0 {
		out.Endpoint = "LOCALHOST"
	}
	if addrs, err := itf.Addrs(); err == nil {
		for _, ad := range addrs {
			if ipn, ok := ad.(*net.IPNet); ok {
				out.Addresses = append(out.Addresses, ipn.IP.String())
			}
		}
	}
	return out
}
