package console_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/midonet/midonet/internal/testenv"
)

// artifactDir is where the browser tests keep their screenshots:
// $MIDONET_ARTIFACTS, or midonet-artifacts in the system's temporary
// directory.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("MIDONET_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "midonet-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser starts Debian's headless Chromium for the test, with the flags
// it needs on a machine without internet (no background connections).
func browser(t *testing.T) context.Context {
	t.Helper()
	exe := testenv.RequireTool(t, "chromium", "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // tests run as root
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1600, 1000),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	// The first run starts the browser, which lives as long as the context
	// of that run: give it the test's, not a step's with a deadline.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// do runs browser steps with a deadline.
func do(t *testing.T, ctx context.Context, timeout time.Duration, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		// Say what the page showed and logged.
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100)); err == nil {
			file := filepath.Join(artifactDir(t), "console-failure.png")
			os.WriteFile(file, png, 0o644)
			t.Logf("screenshot of the failure: %s", file)
		}
		if logs, err := chromedp.Run(sctx, chromedp.Evaluate[string](`(window.__errors || []).join('\n')`)); err == nil && logs != "" {
			t.Logf("page errors:\n%s", logs)
		}
		t.Fatalf("%s: %v", what, err)
	}
}

// poll waits for a JavaScript predicate.
func poll(expr string, opts ...chromedp.PollOption) chromedp.Action[chromedp.Void] {
	a := chromedp.Poll[bool](expr, opts...)
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := a(ctx, t)
		return chromedp.Void{}, err
	}
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// screenshot saves the page as PNG in the artifact directory and prints
// its path.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	file := filepath.Join(artifactDir(t), name)
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", file)
	fmt.Printf("console screenshot: %s\n", file)
}

// graphLabels is what the graph draws of a kind, by label.
const graphLabels = `midonetConsole.cy ? midonetConsole.cy.nodes('.%s').map(n => n.data('label')) : []`

// listLabels is the text equivalent: the names in the object list.
const listLabels = `[...document.querySelectorAll('#object-list .obj[data-kind="%s"] .nm')].map(e => e.textContent)`

func TestBrowserConsole(t *testing.T) {
	ctx := browser(t)
	r := theRig
	theRig.send(t, 10) // counters for the hosts view

	do(t, ctx, 30*time.Second, "load the console",
		chromedp.Navigate(r.cluster.ConsoleURL),
		chromedp.WaitVisible(chromedp.CSS(`body[data-ready="true"]`)),
		poll(`midonetConsole.cy && midonetConsole.cy.nodes().length > 0`))

	t.Run("the graph shows each router and bridge by name", func(t *testing.T) {
		for _, k := range []struct{ kind, name string }{{"router", "console-router"}, {"bridge", "console-net-a"}, {"bridge", "console-net-b"}} {
			drawn := eval[[]string](t, ctx, fmt.Sprintf(graphLabels, k.kind))
			listed := eval[[]string](t, ctx, fmt.Sprintf(listLabels, k.kind))
			if !slices.Contains(drawn, k.name) {
				t.Errorf("the graph's %ss are %q: no %s", k.kind, drawn, k.name)
			}
			if !slices.Contains(listed, k.name) {
				t.Errorf("the object list's %ss are %q: no %s", k.kind, listed, k.name)
			}
		}
		// The load balancer, linked to its router.
		if lb := eval[[]string](t, ctx, `midonetConsole.cy.edges('.lbof').map(e => e.source().id() + '>' + e.target().id())`); !slices.Equal(lb, []string{r.ids["router"] + ">" + r.ids["lb"]}) {
			t.Errorf("load balancer edges %q, want console-router > its load balancer %s", lb, r.ids["lb"])
		}
		// Ports, the host and the port group are drawn too.
		for _, k := range []struct{ kind, label string }{{"port", "10.71.1.1/24"}, {"port", "vm-a"}, {"host", "console-h1"}, {"pgroup", "console-web"}} {
			if drawn := eval[[]string](t, ctx, fmt.Sprintf(graphLabels, k.kind)); !slices.Contains(drawn, k.label) {
				t.Errorf("the graph's %s nodes are %q: no %s", k.kind, drawn, k.label)
			}
		}
	})

	t.Run("a bridge created through REST appears within a second", func(t *testing.T) {
		name := "browser-new-br"
		start := time.Now()
		id, err := r.post(t.Context(), "/bridges", map[string]any{"name": name, "tenantId": "acme"})
		if err != nil {
			t.Fatal(err)
		}
		posted := time.Since(start)
		do(t, ctx, 5*time.Second, "wait for the new bridge",
			poll(fmt.Sprintf(`midonetConsole.cy.getElementById(%q).nonempty() && document.querySelector('.obj[data-id=%q]') !== null`, id, id),
				chromedp.WithPollingTimeout(5*time.Second)))
		shown := time.Since(start) - posted
		t.Logf("bridge %s: POST took %v, then on the graph and in the list after %v", name, posted.Round(time.Millisecond), shown.Round(time.Millisecond))
		if shown > time.Second {
			t.Errorf("the new bridge took %v to appear, want at most 1s", shown)
		}
	})

	t.Run("the trace of a blocked packet names the rule that dropped it", func(t *testing.T) {
		do(t, ctx, 10*time.Second, "fill in and send the trace form",
			chromedp.Click(chromedp.CSS("#side-trace")),
			chromedp.WaitVisible(chromedp.CSS("#trace-form")),
			chromedp.SetValue(chromedp.CSS("#t-port"), r.ids["vm-a"]),
			chromedp.SetValue(chromedp.CSS("#t-src"), "10.71.1.5"),
			chromedp.SetValue(chromedp.CSS("#t-dst"), "10.71.2.5"),
			chromedp.SetValue(chromedp.CSS("#t-proto"), "tcp"),
			chromedp.Evaluate[chromedp.Void](`document.querySelector('#t-proto').dispatchEvent(new Event('change'))`),
			chromedp.SetValue(chromedp.CSS("#t-dport"), "22"),
			chromedp.Click(chromedp.CSS("#t-run")),
			chromedp.WaitVisible(chromedp.CSS("#verdict")))
		verdict := eval[string](t, ctx, `document.querySelector('#verdict').textContent`)
		if !strings.Contains(verdict, "Dropped") || !strings.Contains(verdict, "chain console-guard rule #1") {
			t.Errorf("verdict %q: want it dropped by chain console-guard rule #1", verdict)
		}
		// The path is drawn on the graph, device by device, up to the router
		// that dropped it.
		path := eval[[]string](t, ctx, `midonetConsole.cy.nodes('.path').map(n => n.id())`)
		for _, id := range []string{r.ids["vm-a"], r.ids["console-net-a"], r.ids["router"]} {
			if !slices.Contains(path, id) {
				t.Errorf("the drawn path %q misses %s", path, id)
			}
		}
		if dropped := eval[[]string](t, ctx, `midonetConsole.cy.nodes('.dropped').map(n => n.id())`); !slices.Equal(dropped, []string{r.ids["router"]}) {
			t.Errorf("the drop is drawn at %q, want the router %s", dropped, r.ids["router"])
		}
		steps := eval[[]string](t, ctx, `[...document.querySelectorAll('#trace-result .steps li')].map(e => e.textContent)`)
		if len(steps) == 0 || !strings.Contains(strings.Join(steps, "\n"), "chain console-guard rule #1: matched") {
			t.Errorf("the steps %q do not list the matched rule", steps)
		}
		screenshot(t, ctx, "console-trace.png")

		// A forwarded packet: where it leaves, and the rewrites on the way.
		do(t, ctx, 10*time.Second, "trace a forwarded packet",
			chromedp.SetValue(chromedp.CSS("#t-proto"), "udp"),
			chromedp.SetValue(chromedp.CSS("#t-dport"), "53"),
			chromedp.Click(chromedp.CSS("#t-run")),
			poll(`(document.querySelector('#verdict') || {textContent: ''}).textContent.startsWith('Forwarded')`, chromedp.WithPollingTimeout(5*time.Second)))
		verdict = eval[string](t, ctx, `document.querySelector('#verdict').textContent`)
		if !strings.Contains(verdict, "vm-b") || !strings.Contains(verdict, "on host console-h1") || !strings.Contains(verdict, "rewrites") {
			t.Errorf("verdict %q: want it to leave by vm-b on host console-h1, with the router's rewrites", verdict)
		}
		if egress := eval[[]string](t, ctx, `midonetConsole.cy.nodes('.egress').map(n => n.id())`); !slices.Equal(egress, []string{r.ids["vm-b"]}) {
			t.Errorf("the egress is drawn at %q, want vm-b %s", egress, r.ids["vm-b"])
		}
	})

	t.Run("filter by tenant", func(t *testing.T) {
		other, err := r.post(t.Context(), "/bridges", map[string]any{"name": "other-tenant-br", "tenantId": "globex"})
		if err != nil {
			t.Fatal(err)
		}
		do(t, ctx, 10*time.Second, "choose the tenant acme",
			poll(`[...document.querySelectorAll('#tenant option')].some(o => o.value === 'globex')`, chromedp.WithPollingTimeout(5*time.Second)),
			chromedp.SetValue(chromedp.CSS("#tenant"), "acme"),
			chromedp.Evaluate[chromedp.Void](`document.querySelector('#tenant').dispatchEvent(new Event('change'))`),
			poll(fmt.Sprintf(`midonetConsole.cy.getElementById(%q).empty()`, other), chromedp.WithPollingTimeout(5*time.Second)))
		if listed := eval[[]string](t, ctx, fmt.Sprintf(listLabels, "bridge")); slices.Contains(listed, "other-tenant-br") || !slices.Contains(listed, "console-net-a") {
			t.Errorf("bridges listed for tenant acme: %q, want console-net-a and not globex's other-tenant-br", listed)
		}
		do(t, ctx, 10*time.Second, "back to all tenants",
			chromedp.SetValue(chromedp.CSS("#tenant"), ""),
			chromedp.Evaluate[chromedp.Void](`document.querySelector('#tenant').dispatchEvent(new Event('change'))`),
			poll(fmt.Sprintf(`midonetConsole.cy.getElementById(%q).nonempty()`, other), chromedp.WithPollingTimeout(5*time.Second)))
	})

	t.Run("keyboard only", func(t *testing.T) {
		// From the object list: a focused entry opens its details on Enter.
		do(t, ctx, 10*time.Second, "open a bridge's details with the keyboard",
			chromedp.Focus(chromedp.CSS(fmt.Sprintf(`.obj[data-id=%q]`, r.ids["console-net-b"]))),
			chromedp.KeyEvent("\r"),
			poll(`document.querySelector('#details-title').textContent === 'console-net-b'`, chromedp.WithPollingTimeout(5*time.Second)),
			poll(`[...document.querySelectorAll('#details h3')].some(h => h.textContent === 'ARP table')`, chromedp.WithPollingTimeout(5*time.Second)))
		// On the graph: the arrow keys move the selection.
		before := eval[string](t, ctx, `midonetConsole.state.selected`)
		do(t, ctx, 10*time.Second, "move through the graph with the arrow keys",
			chromedp.Focus(chromedp.CSS("#graph")),
			poll(`document.activeElement && document.activeElement.id === 'graph'`, chromedp.WithPollingTimeout(5*time.Second)),
			chromedp.KeyEvent(kb.ArrowRight),
			poll(fmt.Sprintf(`midonetConsole.state.selected && midonetConsole.state.selected !== %q`, before), chromedp.WithPollingTimeout(5*time.Second)))
	})

	t.Run("hosts view shows the agent's live counters", func(t *testing.T) {
		do(t, ctx, 30*time.Second, "open the hosts view",
			chromedp.Click(chromedp.CSS("#tab-hosts")),
			chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`.host-card[data-host=%q]`, r.ids["host"]))),
			poll(fmt.Sprintf(`(() => { const d = document.querySelector('.host-card[data-host=%q] [data-metric="flows"]'); return d && d.textContent !== '—' && Number(d.textContent) > 0; })()`, r.ids["host"]),
				chromedp.WithPollingTimeout(20*time.Second)))
		card := eval[string](t, ctx, fmt.Sprintf(`document.querySelector('.host-card[data-host=%q]').textContent`, r.ids["host"]))
		for _, want := range []string{"console-h1", "alive", "127.0.0.1", "vm-a", "simulations/s", "upcall drops"} {
			if !strings.Contains(card, want) {
				t.Errorf("the host's card does not show %q:\n%s", want, card)
			}
		}
		screenshot(t, ctx, "console-hosts.png")
	})
}

// TestBrowserLogin: when the API asks for a token, the console logs in
// and sends the token with every call, the event stream included. The API
// does not ask yet (MidoNet's mock authentication), so a proxy in front of
// the cluster asks in its place.
func TestBrowserLogin(t *testing.T) {
	ctx := browser(t)
	target, _ := url.Parse(strings.TrimSuffix(theRig.api, "/midonet-api"))
	var mu sync.Mutex
	var refused, withToken []string
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if strings.HasPrefix(p, "/midonet-api") && p != "/midonet-api/login" {
			mu.Lock()
			if r.Header.Get("X-Auth-Token") != "00000000" {
				refused = append(refused, p)
				mu.Unlock()
				w.Header().Set("Content-Type", "application/vnd.org.midonet.Error-v1+json")
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"message":"no valid X-Auth-Token; log in with POST /login","code":401}`)
				return
			}
			withToken = append(withToken, p)
			mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		// The page's event stream stays open: cut it, or Close waits.
		front.CloseClientConnections()
		front.Close()
	})

	do(t, ctx, 30*time.Second, "log in when the API asks",
		chromedp.Navigate(front.URL+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("#login-user")),
		chromedp.SendKeys(chromedp.CSS("#login-user"), "admin"),
		chromedp.SendKeys(chromedp.CSS("#login-pass"), "secret"),
		chromedp.SendKeys(chromedp.CSS("#login-pass"), "\r"),
		chromedp.WaitVisible(chromedp.CSS(`body[data-ready="true"]`)),
		poll(`document.querySelectorAll('#object-list .obj[data-kind="router"]').length > 0`))
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(withToken, "/midonet-api/events") || !slices.Contains(withToken, "/midonet-api/routers") {
		t.Errorf("calls with the token: %q, want the event stream and the collections among them", withToken)
	}
	// Before the login, the first calls were refused; none after it.
	if len(refused) == 0 || len(refused) > 2 {
		t.Errorf("refused calls %q: want the one or two made before the login", refused)
	}
}
