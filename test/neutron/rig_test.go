// Package neutron puts Debian's real neutron-server, with this project's
// plugin (contrib/neutron), in front of a cluster and three agents, drives
// it with the real openstack CLI, and checks the result with real packets
// between VMs (network namespaces) on different hosts. It needs root,
// python3-neutron, python3-openstackclient and isc-dhcp-client (the VMs
// get their addresses by DHCP from the agents); without them it skips
// (and fails in CI, where .ci/run installs them). Everything it creates
// is named with the "mnnt-" prefix.
package neutron

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/midonet/midonet/internal/auth"
	"github.com/midonet/midonet/internal/cluster"
	"github.com/midonet/midonet/internal/nsthread"
	"github.com/midonet/midonet/internal/testenv"
	"github.com/midonet/midonet/internal/tlstest"
)

// Names and addresses of the rig.
const (
	prefix     = "mnnt-"
	underlayBr = prefix + "br"
	underlay   = "10.251.0."
	storeAddr  = underlay + "254"
	extNS      = prefix + "ext"
)

// python is Debian's interpreter, where python3-neutron lives (a PATH
// python3 may be another one).
const python = "/usr/bin/python3"

// rig is the cloud: cluster, agents and neutron-server.
type rig struct {
	t        *testing.T
	dir      string
	bin      string
	cluster  *cluster.Cluster
	agents   []*exec.Cmd
	neutron  *exec.Cmd
	endpoint string // neutron-server's URL
	token    string // the cluster admin's
	certs    tlstest.Files
	// The stand-in for Nova's metadata service.
	novaURL, secretFile string
	hc                  *http.Client // trusts the rig's CA
	// failures repeats what failed at the end of the log dump: CI shows
	// only an output's tail, and the dump follows the failure.
	failMu     sync.Mutex
	failures   []string
	clusterLog *os.File
}

var hostNames = []string{"host1", "host2", "host3"}

func hostNS(i int) string { return prefix + "h" + strconv.Itoa(i+1) }

// need checks what the rig needs from the machine.
func need(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "ip", "iproute2")
	testenv.RequireTool(t, "ping", "iputils-ping")
	testenv.RequireTool(t, "openstack", "python3-openstackclient")
	testenv.RequireTool(t, "dhclient", "isc-dhcp-client")
	if err := exec.Command(python, "-c", "import neutron.cmd.eventlet.server").Run(); err != nil {
		testenv.RequireTool(t, "neutron-server-is-missing", "python3-neutron")
	}
}

// repoRoot is the repository's top directory (the plugin lives there).
func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// ip runs ip(8).
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func ipAll(t *testing.T, cmds ...[]string) {
	t.Helper()
	for _, c := range cmds {
		if err := ip(c...); err != nil {
			t.Fatal(err)
		}
	}
}

// dhclientPidFile is where the DHCP client of a VM keeps its pid: outside
// the test's directory, so that a crashed run's clients are found too.
func dhclientPidFile(vm string) string {
	return filepath.Join(os.TempDir(), prefix+"dhclient-"+vm+".pid")
}

// cleanup ends the VMs' DHCP clients and removes every namespace and link
// of the prefix.
func cleanup() {
	pids, _ := filepath.Glob(dhclientPidFile("*"))
	for _, f := range pids {
		b, _ := os.ReadFile(f)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			// Only a dhclient: the pid may have been reused.
			if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(cmdline), "dhclient") {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		os.Remove(f)
	}
	etcs, _ := filepath.Glob(filepath.Join("/etc/netns", prefix+"*"))
	for _, d := range etcs {
		os.RemoveAll(d)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if name, _, _ := strings.Cut(strings.TrimSpace(line), " "); strings.HasPrefix(name, prefix) {
			// A dhclient that has just gone to the background may not have
			// written its pid file yet: end the ones in the namespace too.
			pids, _ := exec.Command("ip", "netns", "pids", name).Output()
			for _, f := range strings.Fields(string(pids)) {
				if pid, err := strconv.Atoi(f); err == nil {
					if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "dhclient" {
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			ip("netns", "del", name)
		}
	}
	links, _ := exec.Command("ip", "-o", "link", "show").Output()
	for _, line := range strings.Split(string(links), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if strings.HasPrefix(name, prefix) {
				ip("link", "del", name)
			}
		}
	}
}

// startRig builds the underlay, the cluster with local authentication,
// the agents and neutron-server; t.Cleanup tears it all down.
func startRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir()}
	cleanup()
	t.Cleanup(func() {
		r.stop()
		cleanup()
		if r.clusterLog != nil {
			r.clusterLog.Close()
		}
		if t.Failed() {
			r.dumpLogs()
		}
	})
	r.bin = filepath.Join(r.dir, "midonet")
	if out, err := exec.Command("go", "build", "-o", r.bin, "github.com/midonet/midonet/cmd/midonet").CombinedOutput(); err != nil {
		t.Fatalf("building midonet: %v\n%s", err, out)
	}
	ipAll(t,
		[]string{"link", "add", underlayBr, "mtu", "9000", "type", "bridge"},
		[]string{"addr", "add", storeAddr + "/24", "dev", underlayBr},
		[]string{"link", "set", underlayBr, "up"})
	for i := range hostNames {
		peer := prefix + "u" + strconv.Itoa(i+1)
		ipAll(t,
			[]string{"netns", "add", hostNS(i)},
			[]string{"link", "add", peer, "mtu", "9000", "type", "veth", "peer", "name", "eth0", "mtu", "9000", "netns", hostNS(i)},
			[]string{"link", "set", peer, "master", underlayBr, "up"},
			[]string{"-n", hostNS(i), "addr", "add", underlay + strconv.Itoa(i+1) + "/24", "dev", "eth0"},
			[]string{"-n", hostNS(i), "link", "set", "eth0", "up"},
			[]string{"-n", hostNS(i), "link", "set", "lo", "up"})
	}

	// Everything over TLS: the API (neutron-server's plugin checks the
	// CA), the store (agents present client certificates).
	r.certs = tlstest.Write(t, r.dir, "127.0.0.1", storeAddr)
	clusterLog, err := os.Create(filepath.Join(r.dir, "cluster.log"))
	if err != nil {
		t.Fatal(err)
	}
	r.clusterLog = clusterLog
	r.cluster, err = cluster.Start(context.Background(), cluster.Config{
		Logger: slog.New(slog.NewTextHandler(clusterLog, nil)),
		Listen: "127.0.0.1:0", NSDBListen: storeAddr + ":0", DataDir: filepath.Join(r.dir, "nsdb"), FastStore: true,
		Auth: cluster.AuthLocal, AdminCredentials: filepath.Join(r.dir, "admin.credentials"),
		TLSCert: r.certs.Cert, TLSKey: r.certs.Key,
		NSDBTLSCert: r.certs.Cert, NSDBTLSKey: r.certs.Key, NSDBClientCA: r.certs.CA,
		NSDBCA: r.certs.CA, NSDBCert: r.certs.ClientCert, NSDBKey: r.certs.ClientKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := os.ReadFile(r.certs.CA)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	r.hc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 30 * time.Second}
	cred, err := auth.ReadCredentials(r.cluster.AdminCredentials)
	if err != nil {
		t.Fatalf("the fresh cluster wrote no admin credential: %v", err)
	}
	r.token = r.login(cred[auth.CredUser], cred[auth.CredPassword])

	r.startNova()
	for i, h := range hostNames {
		logf, err := os.Create(filepath.Join(r.dir, h+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("ip", "netns", "exec", hostNS(i), r.bin, "agent", "--host", h,
			"--nsdb", r.cluster.NSDBURLs[0], "--nsdb-ca", r.certs.CA, "--nsdb-cert", r.certs.ClientCert, "--nsdb-key", r.certs.ClientKey,
			"--state-dir", filepath.Join(r.dir, h), "--metrics-listen", "127.0.0.1:9100",
			"--metadata-nova-url", r.novaURL, "--metadata-secret-file", r.secretFile)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		logf.Close()
		r.agents = append(r.agents, cmd)
	}
	r.tunnelZone()
	r.startNeutron()
	return r
}

// novaSecret is the metadata proxy's shared secret with Nova.
const novaSecret = "nova-metadata-secret"

// startNova runs a stand-in for Nova's metadata service on the underlay,
// where the agents reach it: it answers as Nova does only when the
// request's X-Instance-ID-Signature is the HMAC-SHA256 of its
// X-Instance-ID keyed with the shared secret, with the identity it got.
func (r *rig) startNova() {
	r.t.Helper()
	r.secretFile = filepath.Join(r.dir, "metadata.secret")
	os.WriteFile(r.secretFile, []byte(novaSecret+"\n"), 0o600)
	ln, err := net.Listen("tcp", storeAddr+":0")
	if err != nil {
		r.t.Fatal(err)
	}
	r.novaURL = "http://" + ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id := req.Header.Get("X-Instance-ID")
		m := hmac.New(sha256.New, []byte(novaSecret))
		m.Write([]byte(id))
		if id == "" || req.Header.Get("X-Instance-ID-Signature") != hex.EncodeToString(m.Sum(nil)) {
			http.Error(w, "Invalid proxy request signature.", http.StatusForbidden)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"uuid": id, "project_id": req.Header.Get("X-Tenant-ID"),
			"forwarded_for": req.Header.Get("X-Forwarded-For"), "path": req.URL.Path})
	})}
	go srv.Serve(ln)
	r.t.Cleanup(func() { srv.Close() })
}

// login logs in to the cluster as MidoNet's clients do.
func (r *rig) login(user, password string) string {
	req, _ := http.NewRequest("POST", r.cluster.APIURL+"/login", nil)
	req.SetBasicAuth(user, password)
	resp, err := r.hc.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct{ Key string }
	json.NewDecoder(resp.Body).Decode(&tok)
	if resp.StatusCode != 200 || tok.Key == "" {
		r.t.Fatalf("login as %s: %d", user, resp.StatusCode)
	}
	return tok.Key
}

// api calls the cluster's REST API with the admin's token; out, if not
// nil, receives the JSON answer.
func (r *rig) api(method, path string, body, out any) int {
	r.t.Helper()
	return r.apiAs(r.token, method, path, body, out)
}

// apiAs is api with another token ("" for none).
func (r *rig) apiAs(token, method, path string, body, out any) int {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, r.cluster.APIURL+path, rd)
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			r.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

// tunnelZone waits for the agents to register their hosts and puts them
// in a VXLAN tunnel zone, as an operator does once per host.
func (r *rig) tunnelZone() {
	r.t.Helper()
	ids := map[string]string{}
	eventually(r.t, 2*time.Minute, "the three agents register their hosts", func() bool {
		var hosts []map[string]any
		r.api("GET", "/hosts", nil, &hosts)
		for _, h := range hosts {
			name, _ := h["name"].(string)
			if alive, _ := h["alive"].(bool); alive {
				ids[name] = h["id"].(string)
			}
		}
		return len(ids) == len(hostNames)
	})
	var zone struct{ ID string }
	loc := r.api("POST", "/tunnel_zones", map[string]any{"name": prefix + "zone", "type": "vxlan"}, nil)
	if loc != 201 {
		r.t.Fatalf("creating the tunnel zone: %d", loc)
	}
	var zones []map[string]any
	r.api("GET", "/tunnel_zones", nil, &zones)
	zone.ID = zones[0]["id"].(string)
	for i, h := range hostNames {
		if s := r.api("POST", "/tunnel_zones/"+zone.ID+"/hosts", map[string]any{"hostId": ids[h],
			"ipAddress": underlay + strconv.Itoa(i+1)}, nil); s != 201 {
			r.t.Fatalf("adding %s to the tunnel zone: %d", h, s)
		}
	}
}

// startNeutron configures Debian's neutron-server without Keystone
// (noauth, SQLite, no message bus), installs the plugin with
// contrib/neutron/install.sh as an operator would, pointing it at the
// cluster with the admin credential the cluster wrote, and starts it.
func (r *rig) startNeutron() {
	r.t.Helper()
	dir := filepath.Join(r.dir, "neutron")
	etc, site := filepath.Join(dir, "etc"), filepath.Join(dir, "site")
	os.MkdirAll(filepath.Join(dir, "lock"), 0o755)
	os.MkdirAll(etc, 0o755)
	port := freePort(r.t)
	r.endpoint = "http://127.0.0.1:" + strconv.Itoa(port)
	conf := fmt.Sprintf(`[DEFAULT]
api_paste_config = %[1]s/api-paste.ini
service_plugins = router
auth_strategy = noauth
bind_host = 127.0.0.1
bind_port = %[2]d
api_workers = 0
rpc_workers = 0
rpc_state_report_workers = 0
transport_url = fake:/
log_file = %[1]s/neutron-server.log
state_path = %[1]s
# No Nova here to tell about ports.
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
[database]
connection = sqlite:///%[1]s/neutron.db
[oslo_concurrency]
lock_path = %[1]s/lock
[agent]
report_interval = 0
`, dir, port)
	os.WriteFile(filepath.Join(etc, "neutron.conf"), []byte(conf), 0o600)
	install := exec.Command(filepath.Join(repoRoot(r.t), "contrib", "neutron", "install.sh"), "--api", r.cluster.APIURL,
		"--credentials", r.cluster.AdminCredentials, "--ca-file", r.certs.CA, "--etc-dir", etc, "--site-dir", site)
	if out, err := install.CombinedOutput(); err != nil {
		r.t.Fatalf("install.sh: %v\n%s", err, out)
	}
	// The paste pipeline of the package's tests, with the filter that
	// gives noauth requests a project.
	paste, err := os.ReadFile("/usr/lib/python3/dist-packages/neutron/tests/etc/api-paste.ini")
	if err != nil {
		r.t.Fatal(err)
	}
	p := strings.Replace(string(paste),
		"noauth = cors http_proxy_to_wsgi request_id catch_errors extensions neutronapiapp_v2_0",
		"noauth = cors http_proxy_to_wsgi request_id catch_errors noauthfakeprojectid extensions neutronapiapp_v2_0", 1)
	p += "\n[filter:noauthfakeprojectid]\npaste.filter_factory = neutron.auth:NoauthFakeProjectId.factory\n"
	os.WriteFile(filepath.Join(dir, "api-paste.ini"), []byte(p), 0o644)
	// SQLite cannot run the migrations: create the schema from the models
	// and stamp it.
	db := "sqlite:///" + dir + "/neutron.db"
	for _, script := range []string{
		`import sqlalchemy as sa; from neutron.db.migration.models import head; head.get_metadata().create_all(sa.create_engine("` + db + `"))`,
		`import sys; from neutron.db.migration.cli import main; sys.argv=['neutron-db-manage','--config-file','` + etc + `/neutron.conf','stamp','heads']; main()`,
	} {
		if out, err := exec.Command(python, "-c", script).CombinedOutput(); err != nil {
			r.t.Fatalf("neutron database: %v\n%s", err, out)
		}
	}
	logf, _ := os.Create(filepath.Join(dir, "server.out"))
	// The arguments of Debian's neutron-api: the server.conf.d directory,
	// neutron.conf, the ML2 file.
	cmd := exec.Command(python, "-c", `import sys; from neutron.cmd.eventlet.server import main; sys.argv=['neutron-server',`+
		`'--config-dir','`+etc+`/server.conf.d','--config-file','`+etc+`/neutron.conf','--config-file','`+etc+`/plugins/ml2/ml2_conf.ini']; main()`)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+site)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	logf.Close()
	r.neutron = cmd
	eventually(r.t, 3*time.Minute, "neutron-server answers", func() bool {
		resp, err := http.Get(r.endpoint + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// stop ends the processes the rig started and the cluster.
func (r *rig) stop() {
	if r.neutron != nil && r.neutron.Process != nil {
		syscall.Kill(-r.neutron.Process.Pid, syscall.SIGTERM)
		wait(r.neutron)
	}
	for _, a := range r.agents {
		a.Process.Signal(syscall.SIGTERM)
	}
	for _, a := range r.agents {
		wait(a)
	}
	if r.cluster != nil {
		r.cluster.Close()
	}
}

func wait(cmd *exec.Cmd) {
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

func (r *rig) dumpLogs() {
	files, _ := filepath.Glob(filepath.Join(r.dir, "*.log"))
	files = append(files, filepath.Join(r.dir, "neutron", "neutron-server.log"), filepath.Join(r.dir, "neutron", "server.out"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if strings.HasSuffix(f, "neutron-server.log") {
			var keep []string
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, "ERROR") || strings.Contains(l, "midonet") {
					keep = append(keep, l)
				}
			}
			b = []byte(strings.Join(keep, "\n"))
		}
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		r.t.Logf("--- %s (tail)\n%s", f, b)
	}
	r.failMu.Lock()
	defer r.failMu.Unlock()
	r.t.Logf("--- what failed (as above):\n%s", strings.Join(r.failures, "\n"))
}

// errorf fails t and records why for the end of the log dump.
func (r *rig) errorf(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	r.failMu.Lock()
	r.failures = append(r.failures, t.Name()+": "+msg)
	r.failMu.Unlock()
	t.Error(msg)
}

// openstack runs the openstack CLI against neutron-server without
// Keystone and decodes its JSON output into out (when not nil).
func (r *rig) openstack(out any, args ...string) {
	r.t.Helper()
	r.openstackIn(r.t, out, args...)
}

// openstackIn is openstack for a subtest t: a failure ends t (a subtest
// must not end its parent).
func (r *rig) openstackIn(t *testing.T, out any, args ...string) {
	t.Helper()
	err := r.openstackErr(out, args...)
	if err != nil && (strings.Contains(err.Error(), "503: Server Error") || strings.Contains(err.Error(), "Service Unavailable")) {
		// Temporarily unavailable (the plugin's answer when the cluster
		// or its store timed out, under CI's load): a client retries.
		// Said in the output, so that a run that needed it shows.
		t.Logf("retrying once after a 503: %v", err)
		time.Sleep(2 * time.Second)
		err = r.openstackErr(out, args...)
	}
	if err != nil {
		r.errorf(t, "%v", err)
		t.FailNow()
	}
}

func (r *rig) openstackErr(out any, args ...string) error {
	if out != nil {
		args = append(args, "-f", "json")
	}
	cmd := exec.Command("openstack", args...)
	cmd.Env = append(os.Environ(), "OS_AUTH_TYPE=none", "OS_ENDPOINT="+r.endpoint)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("openstack %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	if out != nil {
		if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
			return fmt.Errorf("openstack %s: %v: %s", strings.Join(args, " "), err, stdout.String())
		}
	}
	return nil
}

// eventually retries cond until it holds or timeout passes, and returns
// how long it took.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// inNS runs fn with its sockets in the namespace ns.
func inNS(ns string, fn func() error) error {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	return nsthread.Run(func() error { return netns.Set(h) }, fn)
}

// serve listens on TCP port in namespace ns and answers every connection
// with the address it came from; it stops with the test.
func serve(t *testing.T, ns string, port int) {
	t.Helper()
	var l net.Listener
	if err := inNS(ns, func() (err error) { l, err = net.Listen("tcp", ":"+strconv.Itoa(port)); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			c.Write([]byte(host + "\n"))
			c.Close()
		}
	}()
}

// dial connects from namespace ns to addr and returns what the server
// saw as the source address ("" when no connection was made).
func dial(ns, addr string, timeout time.Duration) string {
	var seen string
	inNS(ns, func() error {
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		b, _ := io.ReadAll(c)
		seen = strings.TrimSpace(string(b))
		return nil
	})
	return seen
}

// metadata asks http://169.254.169.254/openstack/latest/meta_data.json from
// namespace ns and returns the decoded answer (nil when none came). The
// connection is dialled on the namespace's thread (an http.Client would
// dial on a goroutine of its own, in another namespace).
func metadata(ns string) map[string]string {
	var out map[string]string
	inNS(ns, func() error {
		c, err := net.DialTimeout("tcp", "169.254.169.254:80", 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		req, _ := http.NewRequest("GET", "http://169.254.169.254/openstack/latest/meta_data.json", nil)
		req.Close = true
		if err := req.Write(c); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return json.NewDecoder(resp.Body).Decode(&out)
	})
	return out
}

// pingOnce reports whether one ping from ns to addr is answered within
// 50 ms.
func pingOnce(ns, addr string) bool {
	return exec.Command("ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", "1", "-W", "0.05", addr).Run() == nil
}

// pings returns how many of n pings from ns to addr were answered.
func pings(ns, addr string, n int) int {
	out, _ := exec.Command("ip", "netns", "exec", ns, "ping", "-n", "-c", strconv.Itoa(n), "-i", "0.2", "-W", "1", addr).CombinedOutput()
	var tx, rx int
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "packets transmitted") {
			fmt.Sscanf(line, "%d packets transmitted, %d received", &tx, &rx)
		}
	}
	return rx
}
