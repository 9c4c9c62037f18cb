// Package bird runs BIRD 2 (Debian's bird2) as an upstream BGP router: the
// sandbox's ISP and the real, independent peer the tests speak to. It writes
// BIRD's configuration, starts the daemon in a network namespace and reads
// its state back through its control socket with birdc, so that what a test
// asserts is what BIRD itself says.
package bird

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Neighbor is one BGP session of the daemon.
type Neighbor struct {
	// Name is the protocol's name in BIRD (letters, digits, underscores).
	Name    string
	Address netip.Addr
	AS      uint32
	// Local is the daemon's address on the session.
	Local netip.Addr
	// Password enables TCP MD5 authentication.
	Password string
	// HoldTime, KeepAlive and ConnectRetry default to BIRD's own.
	HoldTime, KeepAlive, ConnectRetry time.Duration
}

// Config is the daemon's whole configuration.
type Config struct {
	RouterID  netip.Addr
	AS        uint32
	Neighbors []Neighbor
	// Announce are the prefixes the daemon originates to every neighbour.
	Announce []netip.Prefix
	// Kernel installs the routes it learns by BGP into the namespace's
	// routing table, so that the namespace forwards to them.
	Kernel bool
	// Transit re-announces what one neighbour taught to the others (an
	// ISP's core); otherwise each neighbour hears only Announce.
	Transit bool
}

// Render returns BIRD's configuration text for c, logging to logFile.
func (c Config) Render(logFile string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "router id %s;\n", c.RouterID)
	fmt.Fprintf(&b, "log %q all;\n", logFile)
	b.WriteString("protocol device { scan time 1; }\n")
	b.WriteString("protocol static announced {\n  ipv4;\n")
	for _, p := range c.Announce {
		fmt.Fprintf(&b, "  route %s blackhole;\n", p.Masked())
	}
	b.WriteString("}\n")
	if c.Kernel {
		b.WriteString("protocol kernel {\n  scan time 1;\n  ipv4 { import none; export where source = RTS_BGP; };\n  merge paths on;\n}\n")
	}
	for _, n := range c.Neighbors {
		fmt.Fprintf(&b, "protocol bgp %s {\n", n.Name)
		fmt.Fprintf(&b, "  local %s as %d;\n  neighbor %s as %d;\n", n.Local, c.AS, n.Address, n.AS)
		// Listen on the session's own address only, so that several
		// daemons can share a namespace.
		b.WriteString("  strict bind yes;\n")
		if n.HoldTime > 0 {
			fmt.Fprintf(&b, "  hold time %d;\n", int(n.HoldTime/time.Second))
		}
		if n.KeepAlive > 0 {
			fmt.Fprintf(&b, "  keepalive time %d;\n", int(n.KeepAlive/time.Second))
		}
		if n.ConnectRetry > 0 {
			fmt.Fprintf(&b, "  connect retry time %d;\n", int(n.ConnectRetry/time.Second))
			// After an error BIRD waits 60 s or more before it talks
			// again; a quick retry asks for a quick recovery too.
			fmt.Fprintf(&b, "  error wait time %d,%d;\n", int(n.ConnectRetry/time.Second), 4*int(n.ConnectRetry/time.Second))
		}
		if n.Password != "" {
			fmt.Fprintf(&b, "  password %q;\n", n.Password)
		}
		// EBGP in BIRD 2 needs explicit filters (RFC 8212).
		b.WriteString("  ipv4 {\n    import all;\n")
		if c.Transit {
			b.WriteString("    export where proto = \"announced\" || source = RTS_BGP;\n")
		} else {
			b.WriteString("    export where proto = \"announced\";\n")
		}
		b.WriteString("  };\n}\n")
	}
	return b.String()
}

// Daemon is a running BIRD.
type Daemon struct {
	dir  string
	ctl  string
	log  string
	cmd  *exec.Cmd
	done chan struct{}

	mu  sync.Mutex
	cfg Config
}

// Start starts BIRD with cfg in the directory dir (its configuration,
// control socket and log live there). start starts the prepared command,
// e.g. inside a network namespace; nil starts it here.
func Start(dir string, cfg Config, start func(*exec.Cmd) error) (*Daemon, error) {
	if _, err := exec.LookPath("bird"); err != nil {
		return nil, errors.New("bird: the bird program is missing (apt-get install bird2)")
	}
	d := &Daemon{dir: dir, ctl: filepath.Join(dir, "bird.ctl"), log: filepath.Join(dir, "bird.log"), cfg: cfg, done: make(chan struct{})}
	conf := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(conf, []byte(cfg.Render(d.log)), 0o644); err != nil {
		return nil, fmt.Errorf("bird: write %s: %w", conf, err)
	}
	if out, err := exec.Command("bird", "-p", "-c", conf).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("bird: configuration %s refused: %v: %s", conf, err, out)
	}
	d.cmd = exec.Command("bird", "-f", "-c", conf, "-s", d.ctl)
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	d.cmd.Stdout, d.cmd.Stderr = &stderr, &stderr
	if start == nil {
		start = (*exec.Cmd).Start
	}
	if err := start(d.cmd); err != nil {
		return nil, fmt.Errorf("bird: start: %w", err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	// Ready once its control socket answers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := d.Birdc("show status"); err == nil {
			return d, nil
		}
		select {
		case <-d.done:
			return nil, fmt.Errorf("bird: exited at start: %s", stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.Stop()
			return nil, fmt.Errorf("bird: control socket %s never answered", d.ctl)
		}
	}
}

// Birdc runs one birdc command and returns its output.
func (d *Daemon) Birdc(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "birdc", append([]string{"-s", d.ctl}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("birdc %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Pid is the daemon's process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Log returns the daemon's log so far, for failure messages.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(d.log)
	return string(b)
}

// State returns the state of BGP session name as BIRD shows it in "show
// protocols" ("Established", "Active", "Connect", "Idle", ...).
func (d *Daemon) State(name string) (string, error) {
	out, err := d.Birdc("show", "protocols", name)
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 5 && f[0] == name {
			// name proto table state since info...
			if f[3] == "up" && len(f) >= 6 {
				return f[len(f)-1], nil
			}
			if len(f) >= 6 {
				return f[5], nil
			}
			return f[3], nil
		}
	}
	return "", fmt.Errorf("bird: no protocol %s in %q", name, out)
}

// Route is a route BIRD learned by BGP.
type Route struct {
	Prefix  netip.Prefix
	NextHop netip.Addr
	// OriginAS is the AS that originated the route, as "show route"
	// prints it (e.g. "65000").
	OriginAS string
	// Protocol is the session it came from.
	Protocol string
}

var routeLine = regexp.MustCompile(`^(\S+)?\s+unicast \[(\S+) [^\]]*\] \S* ?\(\d+\) \[AS([0-9 ]*)[ie?]\]`)
var viaLine = regexp.MustCompile(`^\s+via (\S+) on `)

// Routes returns the routes BIRD learned by BGP (from every session).
func (d *Daemon) Routes() ([]Route, error) {
	out, err := d.Birdc("show", "route", "where", "source", "=", "RTS_BGP")
	if err != nil {
		return nil, err
	}
	var rs []Route
	var cur netip.Prefix
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := routeLine.FindStringSubmatch(line); m != nil {
			if m[1] != "" {
				p, err := netip.ParsePrefix(m[1])
				if err != nil {
					continue
				}
				cur = p
			}
			rs = append(rs, Route{Prefix: cur, Protocol: m[2], OriginAS: strings.TrimSpace(m[3])})
			continue
		}
		if m := viaLine.FindStringSubmatch(line); m != nil && len(rs) > 0 {
			rs[len(rs)-1].NextHop, _ = netip.ParseAddr(m[1])
		}
	}
	return rs, nil
}

// Reconfigure replaces the configuration of the running daemon.
func (d *Daemon) Reconfigure(cfg Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	conf := filepath.Join(d.dir, "bird.conf")
	if err := os.WriteFile(conf, []byte(cfg.Render(d.log)), 0o644); err != nil {
		return err
	}
	if _, err := d.Birdc("configure"); err != nil {
		return err
	}
	d.cfg = cfg
	return nil
}

// Signal sends the daemon a signal: SIGSTOP freezes it (its sessions go
// silent until the peers' hold timers expire), SIGCONT thaws it.
func (d *Daemon) Signal(sig syscall.Signal) error { return d.cmd.Process.Signal(sig) }

// Kill kills the daemon at once: its TCP sessions are closed by the kernel.
func (d *Daemon) Kill() {
	d.cmd.Process.Kill()
	<-d.done
}

// Stop stops the daemon and waits for it.
func (d *Daemon) Stop() {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGCONT) // a frozen daemon cannot take SIGTERM
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}
