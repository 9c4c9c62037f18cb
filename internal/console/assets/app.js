// The MidoNet web console. Everything it shows comes from public REST calls
// (/midonet-api), sent with the token of a login when the API asks for one;
// GET /midonet-api/events tells it what changed, and it reads that again.
'use strict';

// Errors the page met, for the curious and the browser tests.
window.__errors = [];
window.addEventListener('error', (e) => window.__errors.push(String(e.message)));
window.addEventListener('unhandledrejection', (e) => window.__errors.push(String(e.reason && e.reason.stack || e.reason)));

(function () {
  const API = new URL('../midonet-api', location.href).href;
  const $ = (sel) => document.querySelector(sel);
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const k of kids.flat()) if (k != null) e.append(k.nodeType ? k : String(k));
    return e;
  };
  const short = (id) => (id || '').slice(0, 8);

  // ---- REST ---------------------------------------------------------------
  let token = sessionStorage.getItem('midonet-token') || '';
  let loginWait = null;

  async function call(pathOrURL, opts = {}) {
    const url = pathOrURL.startsWith('http') ? pathOrURL : API + pathOrURL;
    for (let attempt = 0; ; attempt++) {
      const headers = { Accept: 'application/json', ...(opts.headers || {}) };
      if (token) headers['X-Auth-Token'] = token;
      const resp = await fetch(url, { method: opts.method || 'GET', headers, body: opts.body, signal: opts.signal });
      if (resp.status === 401 && attempt === 0) {
        await login();
        continue;
      }
      if (opts.raw) return resp;
      const text = await resp.text();
      let body = null;
      try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
      if (!resp.ok) {
        const msg = body && body.message ? body.message : text || resp.statusText;
        const v = body && body.violations ? body.violations.map((x) => x.message).join('; ') : '';
        const err = new Error(v || msg);
        err.status = resp.status;
        throw err;
      }
      return body;
    }
  }
  const get = (p) => call(p);
  const getOr = (p, dflt) => call(p).catch((e) => (e.status === 404 ? dflt : Promise.reject(e)));

  // login shows the login dialog and resolves once a token is obtained.
  function login() {
    if (loginWait) return loginWait;
    loginWait = new Promise((resolve) => {
      const dlg = $('#login');
      $('#login-form').onsubmit = async (ev) => {
        ev.preventDefault();
        const headers = { Authorization: 'Basic ' + btoa($('#login-user').value + ':' + $('#login-pass').value) };
        if ($('#login-project').value) headers['X-Auth-Project'] = $('#login-project').value;
        const resp = await fetch(API + '/login', { method: 'POST', headers });
        const body = await resp.json().catch(() => ({}));
        if (!resp.ok || !body.key) {
          $('#login-error').textContent = body.message || 'Login refused (' + resp.status + ')';
          return;
        }
        token = body.key;
        sessionStorage.setItem('midonet-token', token);
        dlg.close();
        loginWait = null;
        resolve();
      };
      dlg.showModal();
    });
    return loginWait;
  }

  // ---- the model ----------------------------------------------------------
  const S = {
    routers: [], bridges: [], ports: [], portGroups: [], pgMembers: {}, loadBalancers: [], hosts: [],
    zoneAddr: {}, chains: [], tenant: '', find: '', selected: null, trace: null, metrics: {},
  };
  const byId = () => {
    const m = new Map();
    for (const k of ['routers', 'bridges', 'ports', 'portGroups', 'loadBalancers', 'hosts', 'chains']) {
      for (const o of S[k]) m.set(o.id, o);
    }
    return m;
  };
  let index = new Map();

  const loaders = {
    routers: async () => { S.routers = await get('/routers'); },
    bridges: async () => { S.bridges = await get('/bridges'); },
    ports: async () => { S.ports = await get('/ports'); },
    chains: async () => { S.chains = await get('/chains'); },
    loadBalancers: async () => { S.loadBalancers = await getOr('/load_balancers', []); },
    hosts: async () => { S.hosts = await get('/hosts'); },
    portGroups: async () => {
      const groups = await get('/port_groups');
      const members = {};
      await Promise.all(groups.map(async (g) => {
        members[g.id] = (await getOr('/port_groups/' + g.id + '/ports', [])).map((m) => m.portId);
      }));
      S.portGroups = groups;
      S.pgMembers = members;
    },
    tunnelZones: async () => {
      const zones = await get('/tunnel_zones');
      const addr = {};
      await Promise.all(zones.map(async (z) => {
        for (const m of await getOr('/tunnel_zones/' + z.id + '/hosts', [])) {
          addr[m.hostId] = (addr[m.hostId] ? addr[m.hostId] + ', ' : '') + m.ipAddress + ' (' + (z.name || short(z.id)) + ')';
        }
      }));
      S.zoneAddr = addr;
    },
  };
  // What a change of a store kind makes stale.
  const staleBy = {
    routers: ['routers'], bridges: ['bridges'], ports: ['ports'], chains: ['chains'], rules: ['chains'],
    port_groups: ['portGroups'], load_balancers: ['loadBalancers'], hosts: ['hosts'],
    tunnel_zones: ['tunnelZones'],
  };

  async function loadAll() {
    await Promise.all(Object.values(loaders).map((f) => f()));
    index = byId();
  }

  // ---- live updates -------------------------------------------------------
  const dirty = new Set();
  let detailsDirty = false;
  let flushTimer = null;
  function markDirty(kinds, details) {
    for (const k of kinds) dirty.add(k);
    detailsDirty = detailsDirty || details;
    if (!flushTimer) flushTimer = setTimeout(flush, 60);
  }
  async function flush() {
    flushTimer = null;
    const kinds = [...dirty];
    const details = detailsDirty;
    dirty.clear();
    detailsDirty = false;
    try {
      await Promise.all(kinds.map((k) => loaders[k]()));
      index = byId();
      if (kinds.length) render();
      if (details || kinds.length) refreshDetails();
      if (kinds.includes('hosts') || kinds.includes('ports') || kinds.includes('tunnelZones')) renderHosts();
    } catch (e) {
      setLive('off', 'reload failed: ' + e.message);
    }
  }

  function setLive(state, text) {
    $('#live').className = 'live ' + state;
    $('#live-text').textContent = text;
  }

  // stream reads GET /events with fetch (an EventSource cannot send the
  // token header) and reconnects after the last event it saw.
  async function stream() {
    let since = '';
    for (;;) {
      try {
        const resp = await call('/events' + (since ? '?since=' + since : ''), { raw: true, headers: { Accept: 'text/event-stream' } });
        if (!resp.ok) throw new Error('events: ' + resp.status);
        const reader = resp.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let cut;
          while ((cut = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            const ev = { event: 'message', id: '', data: '' };
            for (const line of block.split('\n')) {
              const i = line.indexOf(':');
              if (i <= 0) continue;
              const f = line.slice(0, i), v = line.slice(i + 1).replace(/^ /, '');
              if (f === 'event') ev.event = v; else if (f === 'id') ev.id = v; else if (f === 'data') ev.data += v;
            }
            if (ev.id) since = ev.id;
            const resync = await onEvent(ev);
            if (resync) { since = ''; break; }
          }
        }
      } catch (e) {
        setLive('off', 'disconnected, retrying…');
      }
      await new Promise((r) => setTimeout(r, 1500));
    }
  }

  let firstReady = true;
  async function onEvent(ev) {
    const d = ev.data ? JSON.parse(ev.data) : {};
    switch (ev.event) {
      case 'ready':
        // Everything after this revision comes as events: load now.
        setLive('on', 'live · revision ' + d.revision);
        if (firstReady) {
          firstReady = false;
          await loadAll();
          render(true);
          renderHosts();
          document.body.dataset.ready = 'true';
        } else {
          markDirty(Object.keys(loaders), true);
        }
        return false;
      case 'change':
        setLive('on', 'live · revision ' + d.revision);
        markDirty(staleBy[d.kind] || [], true);
        return false;
      case 'state':
        setLive('on', 'live · revision ' + d.revision);
        if (d.kind === 'hosts' && d.key !== 'interfaces') markDirty(['hosts'], false);
        else if (d.kind === 'ports') markDirty(['ports'], false);
        if (S.selected && (S.selected === d.id)) markDirty([], true);
        return false;
      case 'metrics':
        onMetrics(d);
        return false;
      case 'resync':
        markDirty(Object.keys(loaders), true);
        return true;
    }
    return false;
  }

  // ---- graph --------------------------------------------------------------
  let cy = null;
  const kindOf = (o) => {
    if (S.routers.includes(o)) return 'router';
    if (S.bridges.includes(o)) return 'bridge';
    if (S.ports.includes(o)) return 'port';
    if (S.hosts.includes(o)) return 'host';
    if (S.portGroups.includes(o)) return 'pgroup';
    if (S.loadBalancers.includes(o)) return 'lb';
    if (S.chains.includes(o)) return 'chain';
    return 'object';
  };
  const kindNames = { router: 'router', bridge: 'bridge', port: 'port', host: 'host', pgroup: 'port group', lb: 'load balancer', chain: 'chain' };

  function portLabel(p) {
    if (p.portAddress) return p.portAddress + '/' + p.networkLength;
    if (p.interfaceName) return p.interfaceName;
    return 'port ' + short(p.id);
  }
  function label(o, kind) {
    kind = kind || kindOf(o);
    if (kind === 'port') return portLabel(o);
    return o.name || kindNames[kind] + ' ' + short(o.id);
  }
  function portDescription(p) {
    const dev = index.get(p.deviceId);
    let s = (dev ? label(dev) : short(p.deviceId)) + ' · ' + portLabel(p);
    if (p.hostId) s += ' · ' + label(index.get(p.hostId) || { id: p.hostId, name: '' }, 'host');
    return s;
  }

  // visible returns the objects the tenant filter and search keep.
  function visible() {
    const t = S.tenant;
    const keepDev = (o) => !t || o.tenantId === t;
    const routers = S.routers.filter(keepDev);
    const bridges = S.bridges.filter(keepDev);
    const devs = new Set([...routers, ...bridges].map((o) => o.id));
    const ports = S.ports.filter((p) => devs.has(p.deviceId));
    const portIds = new Set(ports.map((p) => p.id));
    const hostIds = new Set(ports.filter((p) => p.hostId).map((p) => p.hostId));
    const hosts = S.hosts.filter((h) => !t || hostIds.has(h.id));
    const groups = S.portGroups.filter((g) => !t || g.tenantId === t);
    const lbs = S.loadBalancers.filter((l) => !t || devs.has(l.routerId) || routers.some((r) => r.loadBalancerId === l.id));
    return { routers, bridges, ports, portIds, hosts, groups, lbs };
  }

  // elements builds the graph. Edges point the way an operator reads a
  // cloud, left to right: uplink routers, the routers behind them, their
  // ports, the bridges, the VMs' ports, their hosts; dagre ranks nodes
  // along the edges.
  function elements(v) {
    const els = [], edges = [];
    const node = (o, kind, extra, text) => els.push({ group: 'nodes', data: { id: o.id, label: text == null ? label(o, kind) : text, kind }, classes: kind + (extra ? ' ' + extra : '') });
    const edge = (a, b, cls) => edges.push({ group: 'edges', data: { id: cls + ':' + a + ':' + b, source: a, target: b }, classes: cls });
    const depth = routerDepths(v);
    const ports = new Map(v.ports.map((p) => [p.id, p]));
    const isRouter = (id) => depth.has(id);
    v.routers.forEach((r) => node(r, 'router'));
    v.bridges.forEach((b) => node(b, 'bridge'));
    v.hosts.forEach((h) => node(h, 'host', h.alive ? 'alive' : 'dead'));
    for (const p of v.ports) {
      const peer = p.peerId && ports.get(p.peerId);
      // A bridge's side of a router link is drawn without a label: the
      // router's side shows the address.
      const text = peer && !isRouter(p.deviceId) && isRouter(peer.deviceId) ? '' : null;
      node(p, 'port', (p.hostId ? 'bound' : '') + (p.active ? ' active' : ''), text);
      // Toward the device, when the port leads to it from upstream: a
      // bridge's router link, or a router's link to a router nearer the
      // uplink.
      const upstream = peer && (isRouter(p.deviceId) ? isRouter(peer.deviceId) && depth.get(peer.deviceId) < depth.get(p.deviceId) : isRouter(peer.deviceId));
      if (upstream) edge(p.id, p.deviceId, 'attach');
      else edge(p.deviceId, p.id, 'attach');
      if (peer && p.id < peer.id) {
        const pUp = isRouter(p.deviceId) && (!isRouter(peer.deviceId) || depth.get(p.deviceId) <= depth.get(peer.deviceId));
        if (pUp) edge(p.id, peer.id, 'link');
        else edge(peer.id, p.id, 'link');
      }
      if (p.hostId && v.hosts.some((h) => h.id === p.hostId)) edge(p.id, p.hostId, 'binding');
    }
    for (const g of v.groups) {
      node(g, 'pgroup');
      for (const m of S.pgMembers[g.id] || []) if (ports.has(m)) edge(g.id, m, 'member');
    }
    for (const l of v.lbs) {
      node(l, 'lb');
      const r = l.routerId || (S.routers.find((x) => x.loadBalancerId === l.id) || {}).id;
      if (r && isRouter(r)) edge(r, l.id, 'lbof');
    }
    return els.concat(edges); // nodes first: an edge needs both ends
  }

  // routerDepths numbers routers by their distance, through router links,
  // from a router with an uplink (a port bound to a host).
  function routerDepths(v) {
    const depth = new Map();
    const byId = new Map(v.ports.map((p) => [p.id, p]));
    const next = (r) => v.ports.filter((p) => p.deviceId === r && p.peerId && byId.get(p.peerId))
      .map((p) => byId.get(p.peerId).deviceId).filter((d) => v.routers.some((x) => x.id === d));
    const bfs = (roots) => {
      const q = roots.filter((r) => !depth.has(r));
      q.forEach((r) => depth.set(r, 0));
      while (q.length) {
        const r = q.shift();
        for (const n of next(r)) if (!depth.has(n)) { depth.set(n, depth.get(r) + 1); q.push(n); }
      }
    };
    bfs(v.routers.filter((r) => v.ports.some((p) => p.deviceId === r.id && p.hostId)).map((r) => r.id));
    for (const r of v.routers) bfs([r.id]);
    return depth;
  }

  const style = [
    { selector: 'node', style: { label: 'data(label)', 'font-size': 11, 'min-zoomed-font-size': 7, color: '#1d2330', 'text-valign': 'bottom', 'text-margin-y': 4,
      'text-background-color': '#f4f6f9', 'text-background-opacity': 0.85, 'text-background-padding': 1, 'border-width': 0 } },
    { selector: 'node.router', style: { shape: 'round-rectangle', width: 46, height: 30, 'background-color': '#2f6fde', 'font-weight': 600, 'font-size': 12, 'min-zoomed-font-size': 5 } },
    { selector: 'node.bridge', style: { shape: 'rectangle', width: 46, height: 22, 'background-color': '#1f9d74', 'font-weight': 600, 'font-size': 12, 'min-zoomed-font-size': 5 } },
    { selector: 'node.port', style: { shape: 'ellipse', width: 11, height: 11, 'background-color': '#8a94a6', 'font-size': 9, color: '#4b5565' } },
    { selector: 'node.port.bound', style: { 'border-width': 2, 'border-color': '#5b6475' } },
    { selector: 'node.port.bound.active', style: { 'border-color': '#12a150' } },
    { selector: 'node.host', style: { shape: 'round-rectangle', width: 40, height: 24, 'background-color': '#5b6475', 'font-weight': 600 } },
    { selector: 'node.host.dead', style: { 'background-color': '#fff', 'border-width': 2, 'border-color': '#d92d20', 'border-style': 'dashed' } },
    { selector: 'node.pgroup', style: { shape: 'hexagon', width: 24, height: 22, 'background-color': '#b7791f' } },
    { selector: 'node.lb', style: { shape: 'diamond', width: 26, height: 26, 'background-color': '#8e44ad' } },
    { selector: 'edge', style: { width: 1.5, 'line-color': '#aab3c2', 'curve-style': 'bezier' } },
    { selector: 'edge.link', style: { width: 2.5, 'line-color': '#6d7a90' } },
    { selector: 'edge.binding', style: { 'line-style': 'dotted', 'line-color': '#8a94a6' } },
    { selector: 'edge.member', style: { 'line-style': 'dashed', 'line-color': '#d7a65a' } },
    { selector: 'edge.lbof', style: { 'line-style': 'dashed', 'line-color': '#b583cc' } },
    { selector: 'node:selected', style: { 'overlay-color': '#2f6fde', 'overlay-opacity': 0.18, 'overlay-padding': 6 } },
    { selector: '.faded', style: { opacity: 0.25 } },
    { selector: 'node.path', style: { 'border-width': 3, 'border-color': '#f79009', opacity: 1 } },
    { selector: 'edge.path', style: { width: 4, 'line-color': '#f79009', 'target-arrow-color': '#f79009', 'source-arrow-color': '#f79009', opacity: 1, 'z-index': 9 } },
    { selector: 'edge.path.fwd', style: { 'target-arrow-shape': 'triangle' } },
    { selector: 'edge.path.rev', style: { 'source-arrow-shape': 'triangle' } },
    { selector: 'node.dropped', style: { 'border-width': 4, 'border-color': '#d92d20', opacity: 1 } },
    { selector: 'node.egress', style: { 'border-width': 4, 'border-color': '#12a150', opacity: 1 } },
  ];

  // layout lays each connected part of the graph out left to right
  // (dagre), then packs the parts in rows that fill the view, biggest
  // first: a cloud of many tenants stays readable instead of one tall
  // column.
  function layout(fit) {
    if (!cy) return;
    const gap = 50;
    const parts = cy.elements().components().map((comp) => {
      comp.layout({ name: 'dagre', rankDir: 'LR', nodeSep: 22, rankSep: 60, edgeSep: 8, fit: false, animate: false }).run();
      return { comp, bb: comp.boundingBox({ includeLabels: true }) };
    });
    parts.sort((a, b) => b.bb.w * b.bb.h - a.bb.w * a.bb.h || a.comp.nodes()[0].id().localeCompare(b.comp.nodes()[0].id()));
    const area = parts.reduce((n, p) => n + (p.bb.w + gap) * (p.bb.h + gap), 0);
    const ratio = Math.max(0.5, cy.width() / Math.max(1, cy.height()));
    const rowWidth = Math.max(...parts.map((p) => p.bb.w), Math.sqrt(area * ratio));
    let x = 0, y = 0, rowH = 0;
    cy.batch(() => {
      for (const p of parts) {
        if (x > 0 && x + p.bb.w > rowWidth) {
          x = 0;
          y += rowH + gap;
          rowH = 0;
        }
        p.comp.nodes().shift({ x: x - p.bb.x1, y: y - p.bb.y1 });
        x += p.bb.w + gap;
        rowH = Math.max(rowH, p.bb.h);
      }
    });
    if (fit !== false) fitView();
  }
  // fitView shows the whole graph, without blowing a small one up.
  function fitView() {
    cy.fit(undefined, 40);
    if (cy.zoom() > 1.6) {
      cy.zoom(1.6);
      cy.center();
    }
  }

  function render(fit) {
    const v = visible();
    if (!cy && window.cytoscape) {
      window.cytoscape.use(window.cytoscapeDagre);
      cy = window.cytoscape({ container: $('#graph'), style, wheelSensitivity: 0.3, minZoom: 0.1, maxZoom: 3 });
      cy.on('tap', 'node', (e) => select(e.target.id()));
      cy.on('tap', (e) => { if (e.target === cy) select(null); });
    }
    if (cy) {
      const want = elements(v);
      const ids = new Set(want.map((e) => e.data.id));
      let changed = false;
      cy.batch(() => {
        cy.elements().forEach((e) => { if (!ids.has(e.id())) { e.remove(); changed = true; } });
        for (const e of want) {
          const have = cy.getElementById(e.data.id);
          if (have.nonempty()) {
            have.data(e.data);
            have.classes(e.classes);
          } else {
            cy.add(e);
            changed = true;
          }
        }
      });
      if (changed) layout(fit || cy.nodes().length < 60);
      if (S.selected) cy.getElementById(S.selected).select();
      paintTrace();
    }
    renderList(v);
    renderTenants();
    renderPortChoices();
  }

  // ---- the object list: the graph as text ---------------------------------
  function renderList(v) {
    const q = S.find.toLowerCase();
    const match = (o, kind) => !q || [label(o, kind), o.id, o.name || '', o.interfaceName || '', o.portAddress || ''].some((s) => s.toLowerCase().includes(q));
    const item = (o, kind, sub) => {
      const b = el('button', { type: 'button', class: 'obj', 'data-id': o.id, 'data-kind': kind, 'aria-current': S.selected === o.id ? 'true' : 'false',
        onclick: () => select(o.id, true) }, el('span', { class: 'sw ' + kind, 'aria-hidden': 'true' }),
      el('span', { class: 'nm' }, label(o, kind)), sub ? el('span', { class: 'sub' }, sub) : null);
      b.setAttribute('aria-label', kindNames[kind] + ' ' + label(o, kind) + (sub ? ', ' + sub : ''));
      return b;
    };
    const list = $('#object-list');
    const frag = document.createDocumentFragment();
    const device = (d, kind) => {
      const ports = v.ports.filter((p) => p.deviceId === d.id);
      const shownPorts = ports.filter((p) => match(p, 'port'));
      if (!match(d, kind) && !shownPorts.length) return null;
      const li = el('li', {}, item(d, kind, ports.length + ' port' + (ports.length === 1 ? '' : 's')));
      if (shownPorts.length) {
        li.append(el('ul', { 'aria-label': 'ports of ' + label(d, kind) }, shownPorts.map((p) => {
          const peer = p.peerId && index.get(p.peerId);
          const sub = peer ? '→ ' + label(index.get(peer.deviceId) || {}, undefined) : p.hostId ? 'on ' + label(index.get(p.hostId) || { id: p.hostId }, 'host') : '';
          return el('li', {}, item(p, 'port', sub));
        })));
      }
      return li;
    };
    const section = (title, objs, fn) => {
      const items = objs.map(fn).filter(Boolean);
      if (!items.length) return;
      frag.append(el('h3', { class: 'group' }, title + ' (' + items.length + ')'), el('ul', { class: 'obj-list', 'aria-label': title }, items));
    };
    section('Routers', v.routers, (r) => device(r, 'router'));
    section('Bridges', v.bridges, (b) => device(b, 'bridge'));
    section('Hosts', v.hosts, (h) => (match(h, 'host') ? el('li', {}, item(h, 'host', h.alive ? 'alive' : 'down')) : null));
    section('Port groups', v.groups, (g) => (match(g, 'pgroup') ? el('li', {}, item(g, 'pgroup', (S.pgMembers[g.id] || []).length + ' ports')) : null));
    section('Load balancers', v.lbs, (l) => (match(l, 'lb') ? el('li', {}, item(l, 'lb', l.adminStateUp === false ? 'down' : '')) : null));
    list.replaceChildren(frag);
    $('#counts').textContent = v.routers.length + ' routers · ' + v.bridges.length + ' bridges · ' + v.ports.length + ' ports';
    paintListTrace();
  }

  function renderTenants() {
    const sel = $('#tenant');
    const tenants = [...new Set([...S.routers, ...S.bridges].map((o) => o.tenantId).filter(Boolean))].sort();
    const have = [...sel.options].map((o) => o.value).slice(1);
    if (have.join() === tenants.join()) return;
    sel.replaceChildren(el('option', { value: '' }, 'all tenants'), ...tenants.map((t) => el('option', { value: t }, t)));
    sel.value = tenants.includes(S.tenant) ? S.tenant : '';
  }

  function renderPortChoices() {
    const sel = $('#t-port');
    const prev = sel.value;
    // Bound ports (where packets enter) first.
    const ports = S.ports.filter((p) => index.get(p.deviceId))
      .sort((a, b) => (b.hostId ? 1 : 0) - (a.hostId ? 1 : 0) || portDescription(a).localeCompare(portDescription(b)))
      .map((p) => [p.id, portDescription(p)]);
    const key = ports.map((p) => p.join('=')).join('|');
    if (sel.dataset.key === key) return;
    sel.dataset.key = key;
    sel.replaceChildren(...ports.map(([id, d]) => el('option', { value: id }, d)));
    if (prev && ports.some((p) => p[0] === prev)) sel.value = prev;
  }

  // ---- selection and details ----------------------------------------------
  // side shows the details or the trace panel.
  function side(which) {
    for (const [b, panel] of [['#side-details', '#details'], ['#side-trace', '#trace-panel']]) {
      const on = panel === (which === 'trace' ? '#trace-panel' : '#details');
      $(b).setAttribute('aria-pressed', String(on));
      $(panel).hidden = !on;
    }
  }

  function select(id, center) {
    S.selected = id;
    if (id) side('details');
    document.querySelectorAll('.obj[aria-current="true"]').forEach((b) => b.setAttribute('aria-current', 'false'));
    if (id) document.querySelectorAll('.obj[data-id="' + id + '"]').forEach((b) => b.setAttribute('aria-current', 'true'));
    if (cy) {
      cy.$(':selected').unselect();
      if (id) {
        const n = cy.getElementById(id);
        n.select();
        if (center && n.nonempty()) cy.animate({ center: { eles: n }, duration: 200 });
      }
    }
    refreshDetails();
  }

  let detailsSeq = 0;
  async function refreshDetails() {
    const box = $('#details');
    const seq = ++detailsSeq;
    const o = S.selected && index.get(S.selected);
    if (!o) {
      box.replaceChildren(el('h2', { id: 'details-title' }, 'Details'), el('p', { class: 'muted' }, 'Select an object in the graph or the list.'));
      return;
    }
    const kind = kindOf(o);
    const parts = [el('div', { class: 'details-head' }, el('h2', { id: 'details-title' }, label(o, kind)),
      el('span', { class: 'badge ' + kind }, kindNames[kind] || kind),
      o.uri ? el('a', { class: 'raw', href: o.uri, target: '_blank', rel: 'noopener' }, 'REST resource ↗') : null)];
    parts.push(fieldsTable(o));
    try {
      parts.push(...(await detailSections(o, kind)));
    } catch (e) {
      parts.push(el('p', { class: 'error' }, 'Could not read more: ' + e.message));
    }
    if (seq === detailsSeq) box.replaceChildren(...parts);
  }

  function fmt(v) {
    if (v == null) return '—';
    if (Array.isArray(v)) return v.length ? v.map(fmt).join(', ') : '—';
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  }
  function fieldsTable(o) {
    const rows = Object.entries(o).filter(([k, v]) => !(typeof v === 'string' && v.startsWith('http')) && k !== 'hostInterfaces' && !(Array.isArray(v) && !v.length) && v !== null)
      .map(([k, v]) => el('tr', {}, el('th', { scope: 'row' }, k), el('td', { class: /id$|Id$|Mac$|mac/i.test(k) ? 'mono' : '' }, refOrText(k, v))));
    return el('table', { class: 'kv', 'aria-label': 'fields' }, el('tbody', {}, rows));
  }
  function refOrText(k, v) {
    if (typeof v === 'string' && /Id$/.test(k) && index.get(v)) {
      const t = index.get(v);
      return el('button', { type: 'button', class: 'obj', onclick: () => select(v, true) }, label(t) + ' (' + short(v) + ')');
    }
    return fmt(v);
  }
  function table(caption, head, rows) {
    if (!rows.length) return [el('h3', {}, caption), el('p', { class: 'muted' }, 'none')];
    return [el('h3', {}, caption), el('table', { 'aria-label': caption },
      el('thead', {}, el('tr', {}, head.map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows.map((r) => el('tr', {}, r.map((c) => el('td', {}, c))))))];
  }
  function condition(r) {
    const c = [];
    if (r.nwProto) c.push((r.invNwProto ? 'not ' : '') + ({ 6: 'tcp', 17: 'udp', 1: 'icmp' }[r.nwProto] || 'proto ' + r.nwProto));
    if (r.nwSrcAddress) c.push((r.invNwSrc ? '!' : '') + 'src ' + r.nwSrcAddress + '/' + r.nwSrcLength);
    if (r.nwDstAddress) c.push((r.invNwDst ? '!' : '') + 'dst ' + r.nwDstAddress + '/' + r.nwDstLength);
    const range = (x) => (x.start === x.end ? x.start : x.start + '-' + x.end);
    if (r.tpSrc) c.push('sport ' + range(r.tpSrc));
    if (r.tpDst) c.push('dport ' + range(r.tpDst));
    if (r.matchForwardFlow) c.push('new/forward flow');
    if (r.matchReturnFlow) c.push('return flow');
    if (r.portGroup) c.push('port group ' + label(index.get(r.portGroup) || { id: r.portGroup }, 'pgroup'));
    if (r.ipAddrGroupSrc) c.push('src in ip group ' + short(r.ipAddrGroupSrc));
    if (r.ipAddrGroupDst) c.push('dst in ip group ' + short(r.ipAddrGroupDst));
    if (r.inPorts && r.inPorts.length) c.push('in ' + r.inPorts.map(short).join(','));
    if (r.condInvert) c.unshift('NOT(');
    return c.join(' ') + (r.condInvert ? ')' : '') || 'any';
  }
  function action(r) {
    if (r.type === 'jump') return 'jump to ' + (r.jumpChainName || short(r.jumpChainId));
    if (r.natTargets && r.natTargets.length) return r.type + ' → ' + r.natTargets.map((t) => t.addressFrom + (t.portFrom ? ':' + t.portFrom + '-' + t.portTo : '')).join(', ');
    return r.type + (r.flowAction && r.type.includes('nat') ? ' then ' + r.flowAction : '');
  }
  async function chainSections(o) {
    const out = [];
    for (const [k, what] of [['inboundFilterId', 'Inbound chain'], ['outboundFilterId', 'Outbound chain']]) {
      if (!o[k]) continue;
      const ch = index.get(o[k]) || { id: o[k], rules: API + '/chains/' + o[k] + '/rules' };
      const rules = await getOr(ch.rules, []);
      out.push(...table(what + ': ' + label(ch, 'chain'), ['#', 'match', 'action'],
        rules.map((r, i) => [String(i + 1), condition(r), action(r)])));
    }
    return out;
  }
  async function detailSections(o, kind) {
    const out = [];
    const ports = S.ports.filter((p) => p.deviceId === o.id);
    if (kind === 'router') {
      out.push(...table('Ports', ['address', 'MAC', 'to'], ports.map((p) => [portLabel(p), p.portMac || '—', p.peerId ? portDescription(index.get(p.peerId) || { deviceId: '', id: p.peerId }) : p.hostId ? 'bound: ' + p.interfaceName : '—'])));
      const [routes, arp] = await Promise.all([getOr(o.routes, []), getOr(o.uri + '/arp_table', [])]);
      out.push(...table('Routes', ['destination', 'next hop', 'port', 'weight'], routes.map((r) => [r.dstNetworkAddr + '/' + r.dstNetworkLength,
        r.nextHopGateway && r.nextHopGateway !== '0.0.0.0' ? r.nextHopGateway : r.type === 'BlackHole' ? 'blackhole' : r.type === 'Reject' ? 'reject' : 'direct',
        r.nextHopPort ? portLabel(index.get(r.nextHopPort) || { id: r.nextHopPort }) : '—', String(r.weight)])));
      out.push(...table('ARP table', ['IP', 'MAC'], arp.map((e) => [e.ip, e.mac])));
      out.push(...(await chainSections(o)));
    } else if (kind === 'bridge') {
      out.push(...table('Ports', ['port', 'to'], ports.map((p) => [portLabel(p), p.peerId ? portDescription(index.get(p.peerId) || { deviceId: '', id: p.peerId }) : p.hostId ? 'host ' + label(index.get(p.hostId) || { id: p.hostId }, 'host') + ' · ' + p.interfaceName + (p.active ? ' (active)' : ' (not active)') : '—'])));
      const [dhcp, macs, arps] = await Promise.all([getOr(o.dhcpSubnets, []), getOr(o.macTable, []), getOr(o.arpTable, [])]);
      out.push(...table('DHCP subnets', ['subnet', 'gateway', 'DNS', 'enabled'], dhcp.map((s) => [s.subnetPrefix + '/' + s.subnetLength, s.defaultGateway || '—', fmt(s.dnsServerAddrs), s.enabled === false ? 'no' : 'yes'])));
      out.push(...table('MAC table', ['MAC', 'VLAN', 'port'], macs.map((e) => [e.macAddr, String(e.vlanId || 0), portLabel(index.get(e.portId) || { id: e.portId })])));
      out.push(...table('ARP table', ['IP', 'MAC'], arps.map((e) => [e.ip, e.mac])));
      out.push(...(await chainSections(o)));
    } else if (kind === 'port') {
      const dev = index.get(o.deviceId);
      if (dev) out.push(el('p', {}, 'Port of ', el('button', { type: 'button', class: 'obj', onclick: () => select(dev.id, true) }, kindNames[kindOf(dev)] + ' ' + label(dev))));
      out.push(...(await chainSections(o)));
      const groups = S.portGroups.filter((g) => (S.pgMembers[g.id] || []).includes(o.id));
      if (groups.length) out.push(...table('Port groups', ['name'], groups.map((g) => [label(g, 'pgroup')])));
    } else if (kind === 'host') {
      const bound = S.ports.filter((p) => p.hostId === o.id);
      out.push(el('p', {}, 'Tunnel-zone address: ', S.zoneAddr[o.id] || 'none (not in a tunnel zone)'));
      out.push(...table('Bound ports', ['interface', 'port', 'active'], bound.map((p) => [p.interfaceName, portDescription(p), p.active ? 'yes' : 'no'])));
    } else if (kind === 'pgroup') {
      out.push(...table('Members', ['port'], (S.pgMembers[o.id] || []).map((id) => [index.get(id) ? portDescription(index.get(id)) : id])));
    } else if (kind === 'lb') {
      const [pools, vips] = await Promise.all([getOr(o.pools, []), getOr(o.vips, [])]);
      out.push(...table('VIPs', ['address', 'port', 'pool'], vips.map((x) => [x.address, String(x.protocolPort), short(x.poolId)])));
      out.push(...table('Pools', ['id', 'method', 'status'], pools.map((x) => [short(x.id), x.lbMethod || '—', x.status || '—'])));
    }
    return out;
  }

  // ---- trace --------------------------------------------------------------
  async function runTrace(ev) {
    ev.preventDefault();
    const box = $('#trace-result');
    const body = { portId: $('#t-port').value, srcIp: $('#t-src').value.trim(), dstIp: $('#t-dst').value.trim() };
    const proto = $('#t-proto').value;
    body.proto = proto;
    const sp = $('#t-sport').value.trim(), dp = $('#t-dport').value.trim();
    if (proto !== 'icmp') {
      if (sp) body.srcPort = Number(sp);
      if (dp) body.dstPort = Number(dp);
    }
    box.replaceChildren(el('p', { class: 'muted' }, 'Simulating…'));
    try {
      const rep = await call('/simulate', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      S.trace = rep;
      showTrace(rep);
    } catch (e) {
      S.trace = null;
      paintTrace();
      box.replaceChildren(el('p', { class: 'error', role: 'alert' }, 'Trace refused: ' + e.message));
    }
  }

  // kindAndLabel says what o is and its name, once: "port vm-a", "router r1".
  function kindAndLabel(o) {
    const k = kindNames[kindOf(o)], l = label(o);
    return l.startsWith(k + ' ') ? l : k + ' ' + l;
  }
  function ruleName(step) { return step.name || 'rule ' + short(step.device); }
  // named replaces the ids of objects the console knows with their names.
  const named = (text) => text.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, (id) => (index.get(id) ? label(index.get(id)) : id));

  function verdict(rep) {
    const matched = rep.steps.filter((s) => s.deviceType === 'rule' && s.event === 'matched');
    if (rep.result === 'forward') {
      const outs = rep.egress.map((e) => (e.name || short(e.port)) + (e.host ? ' on host ' + label(index.get(e.host) || { id: e.host }, 'host') : '') +
        (Object.keys(e.set || {}).length ? ' (rewrites ' + Object.entries(e.set).map(([k, v]) => k + '=' + v).join(' ') + ')' : ''));
      return el('div', { class: 'verdict forward', id: 'verdict' }, 'Forwarded', el('span', { class: 'why' }, 'Leaves by ' + outs.join('; ')));
    }
    if (rep.result === 'drop' || rep.result === 'temporary-drop') {
      const last = matched[matched.length - 1];
      const dropRule = last && /drop|reject/.test(last.detail || '') ? last : null;
      const why = dropRule ? 'by ' + ruleName(dropRule) : 'reason: ' + (rep.reason || 'none given');
      const at = index.get(dropAt(rep));
      return el('div', { class: 'verdict drop', id: 'verdict' }, (rep.result === 'drop' ? 'Dropped ' : 'Dropped for now ') + why,
        el('span', { class: 'why' }, at ? 'at ' + kindNames[kindOf(at)] + ' ' + label(at) : ''));
    }
    return el('div', { class: 'verdict other', id: 'verdict' }, rep.result, el('span', { class: 'why' }, rep.reason || (rep.arpNeeded ? 'the router would ARP for ' + rep.arpNeeded.ip + ' first' : '')));
  }

  function showTrace(rep) {
    const box = $('#trace-result');
    const steps = el('ol', { class: 'steps', 'aria-label': 'trace steps' }, rep.steps.map((s) => {
      const o = index.get(s.device);
      const who = s.deviceType === 'rule' ? ruleName(s) : (o ? kindAndLabel(o) : s.deviceType + ' ' + (s.name || short(s.device)));
      const cls = s.event === 'drop' ? 'drop' : s.deviceType === 'rule' ? 'rule' : '';
      return el('li', { class: cls }, who + ': ', el('span', { class: 'ev' }, s.event), s.detail ? el('span', { class: 'det' }, ' — ' + named(s.detail)) : null);
    }));
    const pk = rep.packet;
    const summary = el('p', { class: 'muted' }, (pk.proto || pk.ethType) + ' ' + (pk.nwSrc || '') + (pk.tpSrc ? ':' + pk.tpSrc : '') + ' → ' + (pk.nwDst || '') + (pk.tpDst ? ':' + pk.tpDst : '') + ', ' + pk.ethSrc + ' → ' + pk.ethDst);
    const flow = rep.result === 'userspace-only' ? 'No flow: every such packet is simulated.' :
      'Flow: matches in_port ' + (rep.megaflowMatch || []).join(' ') + '; hard timeout ' + rep.hardTimeout + (rep.where ? '; runs in ' + rep.where : '');
    box.replaceChildren(verdict(rep), summary, steps, el('p', { class: 'muted' }, named(flow)));
    $('#clear-trace').hidden = false;
    paintTrace();
    paintListTrace();
  }

  // pathOf returns the devices and ports the trace crossed, in order (the
  // final "result" step names the ingress port again: not a hop).
  function pathOf(rep) {
    const ids = [];
    for (const s of rep.steps) {
      if (s.event === 'result') continue;
      if (['port', 'bridge', 'router', 'load-balancer'].includes(s.deviceType) && ids[ids.length - 1] !== s.device) ids.push(s.device);
    }
    return ids;
  }
  // dropAt returns the device that dropped the packet.
  function dropAt(rep) {
    const d = rep.steps.filter((s) => s.event === 'drop' || s.event === 'temporary drop').pop();
    const ids = pathOf(rep);
    return d ? d.device : ids[ids.length - 1];
  }
  function paintTrace() {
    if (!cy) return;
    cy.batch(() => {
      cy.elements().removeClass('path fwd rev faded dropped egress');
      const rep = S.trace;
      if (!rep) return;
      const ids = pathOf(rep);
      cy.elements().addClass('faded');
      for (let i = 0; i < ids.length; i++) {
        cy.getElementById(ids[i]).removeClass('faded').addClass('path');
        if (i > 0) {
          const a = ids[i - 1], b = ids[i];
          cy.edges().filter((e) => e.source().id() === a && e.target().id() === b).removeClass('faded').addClass('path fwd');
          cy.edges().filter((e) => e.source().id() === b && e.target().id() === a).removeClass('faded').addClass('path rev');
        }
      }
      if (rep.result === 'drop' || rep.result === 'temporary-drop') cy.getElementById(dropAt(rep)).addClass('dropped');
      for (const e of rep.egress || []) {
        cy.getElementById(e.port).removeClass('faded').addClass('egress');
        const p = index.get(e.port);
        if (p && p.hostId) cy.getElementById(p.hostId).removeClass('faded');
      }
    });
  }
  function paintListTrace() {
    document.querySelectorAll('.obj.on-path, .obj.dropped').forEach((b) => b.classList.remove('on-path', 'dropped'));
    if (!S.trace) return;
    const dropped = S.trace.result.includes('drop') ? dropAt(S.trace) : '';
    pathOf(S.trace).forEach((id) => document.querySelectorAll('.obj[data-id="' + id + '"]').forEach((b) => {
      b.classList.add(id === dropped ? 'dropped' : 'on-path');
    }));
  }

  // ---- hosts --------------------------------------------------------------
  const num = (v) => (v >= 1e6 ? (v / 1e6).toFixed(1) + 'M' : v >= 1e4 ? (v / 1e3).toFixed(1) + 'k' : String(Math.round(v * 10) / 10));

  async function loadMetrics() {
    await Promise.all(S.hosts.map(async (h) => {
      try { S.metrics[h.id] = await call('/hosts/' + h.id + '/metrics'); } catch (e) { /* shown as missing */ }
    }));
    renderHosts();
  }
  function onMetrics(m) {
    const prev = S.metrics[m.hostId] || { history: [] };
    const history = (prev.history || []).concat(m.history || []).filter((p, i, a) => i === 0 || p.t !== a[i - 1].t);
    const cut = Date.now() - 10 * 60 * 1000;
    S.metrics[m.hostId] = { ...m, history: history.filter((p) => p.t >= cut) };
    if (!$('#view-hosts').hidden) renderHost(m.hostId);
  }

  // chart draws simulations per second over the history kept (up to the
  // last 10 minutes), with its text equivalent.
  function chart(history) {
    const W = 400, H = 70, ns = 'http://www.w3.org/2000/svg';
    const mk = (tag, attrs) => {
      const e = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      return e;
    };
    const svg = mk('svg', { viewBox: '0 0 ' + W + ' ' + H, class: 'chart', preserveAspectRatio: 'none', role: 'img' });
    const pts = history.slice(-300);
    const t1 = Date.now();
    const t0 = Math.max(t1 - 10 * 60 * 1000, Math.min(t1 - 60 * 1000, pts.length ? pts[0].t : t1));
    const peak = pts.length ? Math.max(...pts.map((p) => p.simulationsPerSecond)) : 0;
    const max = Math.max(1, peak * 1.15);
    const x = (t) => ((t - t0) / (t1 - t0)) * W, y = (v) => H - 4 - (v / max) * (H - 10);
    svg.append(mk('path', { d: 'M0 ' + (H - 1) + ' H' + W, stroke: '#c9d0db', 'vector-effect': 'non-scaling-stroke' }),
      mk('path', { d: 'M0 ' + y(max / 1.15).toFixed(1) + ' H' + W, stroke: '#eef1f5', 'stroke-dasharray': '4 4', 'vector-effect': 'non-scaling-stroke' }));
    if (pts.length) {
      const line = pts.map((p, i) => (i ? 'L' : 'M') + x(p.t).toFixed(1) + ' ' + y(p.simulationsPerSecond).toFixed(1)).join(' ');
      const end = x(pts[pts.length - 1].t).toFixed(1), start = x(pts[0].t).toFixed(1);
      svg.append(mk('path', { d: line + ' L' + end + ' ' + (H - 1) + ' L' + start + ' ' + (H - 1) + ' Z', fill: 'rgba(47,111,222,.12)' }),
        mk('path', { d: line, fill: 'none', stroke: '#2f6fde', 'stroke-width': '1.8', 'vector-effect': 'non-scaling-stroke' }));
    }
    const mins = Math.round((t1 - t0) / 60000);
    const now = pts.length ? pts[pts.length - 1].simulationsPerSecond : 0;
    const text = 'Simulations per second over the last ' + mins + ' minute' + (mins === 1 ? '' : 's') + ': now ' + num(now) + ', peak ' + num(peak);
    svg.setAttribute('aria-label', text);
    svg.prepend(mk('title', {}));
    svg.firstChild.textContent = text;
    return [svg, el('div', { class: 'chart-cap', 'aria-hidden': 'true' }, el('span', {}, mins + ' min ago'),
      el('span', {}, 'simulations/s · peak ' + num(peak)), el('span', {}, 'now'))];
  }

  function hostCard(h) {
    const m = S.metrics[h.id];
    const bound = S.ports.filter((p) => p.hostId === h.id);
    const stat = (name, v, id) => el('div', { class: 'stat' }, el('dt', {}, name), el('dd', { 'data-metric': id }, v));
    const ok = m && m.available;
    const portRows = bound.map((p) => {
      const c = ok ? (m.ports || []).find((x) => x.interface === p.interfaceName) : null;
      return [p.interfaceName, portDescription(p).split(' · ').slice(0, 2).join(' · '), p.active ? 'yes' : 'no',
        c ? num(c.rxPackets) : '—', c ? num(c.txPackets) : '—', c ? num(c.rxDropped + c.txDropped) : '—'];
    });
    const overlay = ok ? (m.ports || []).filter((c) => !bound.some((p) => p.interfaceName === c.interface)) : [];
    for (const c of overlay) portRows.push([c.interface, c.kind, '—', num(c.rxPackets), num(c.txPackets), num(c.rxDropped + c.txDropped)]);
    const card = el('article', { class: 'host-card', 'data-host': h.id, 'aria-label': 'host ' + label(h, 'host') },
      el('header', {}, el('h3', {}, label(h, 'host')), el('span', { class: 'state ' + (h.alive ? 'alive' : 'dead') }, h.alive ? 'alive' : 'down'),
        el('span', { class: 'muted', style: 'margin-left:auto' }, S.zoneAddr[h.id] ? 'tunnel ' + S.zoneAddr[h.id] : 'not in a tunnel zone')),
      el('dl', { class: 'stats' }, stat('flows installed', ok ? num(m.flows) : '—', 'flows'), stat('simulations/s', ok ? num(m.simulationsPerSecond) : '—', 'sims'),
        stat('upcall drops', ok ? num(m.upcallDrops) : '—', 'upcallDrops'), stat('packets dropped', ok ? num(m.drops) : '—', 'drops')),
      ...chart((m && m.history) || []),
      !ok ? el('p', { class: 'muted' }, m && m.error ? 'Counters unavailable: ' + m.error : 'Counters not read yet.') : null,
      el('div', {}, ...table('Ports (' + bound.length + ' bound)', ['interface', 'port', 'active', 'rx pkts', 'tx pkts', 'dropped'], portRows)));
    return card;
  }
  function renderHost(id) {
    const h = S.hosts.find((x) => x.id === id);
    const old = document.querySelector('.host-card[data-host="' + id + '"]');
    if (h && old) old.replaceWith(hostCard(h));
    else renderHosts();
  }
  function renderHosts() {
    const box = $('#host-cards');
    if (!S.hosts.length) { box.replaceChildren(el('p', { class: 'muted' }, 'No hosts: start an agent (midonet agent).')); return; }
    box.replaceChildren(...S.hosts.slice().sort((a, b) => label(a, 'host').localeCompare(label(b, 'host'))).map(hostCard));
  }

  // ---- wiring -------------------------------------------------------------
  function show(view) {
    for (const v of ['topology', 'hosts']) {
      $('#view-' + v).hidden = v !== view;
      $('#tab-' + v).setAttribute('aria-pressed', String(v === view));
    }
    if (view === 'hosts') loadMetrics();
    else if (cy) cy.resize();
    history.replaceState(null, '', view === 'hosts' ? '#hosts' : '#');
  }

  function keyNav(ev) {
    if (!cy) return;
    const order = [...document.querySelectorAll('#object-list .obj')].map((b) => b.dataset.id);
    if (!order.length) return;
    let i = order.indexOf(S.selected);
    if (ev.key === 'ArrowRight' || ev.key === 'ArrowDown') i = (i + 1) % order.length;
    else if (ev.key === 'ArrowLeft' || ev.key === 'ArrowUp') i = (i - 1 + order.length) % order.length;
    else if (ev.key === 'Enter' && S.selected) { $('#details').focus(); return; } else return;
    ev.preventDefault();
    select(order[i], true);
  }

  function init() {
    $('#tab-topology').onclick = () => show('topology');
    $('#tab-hosts').onclick = () => show('hosts');
    $('#tenant').onchange = (e) => { S.tenant = e.target.value; render(true); };
    $('#find').oninput = (e) => { S.find = e.target.value; renderList(visible()); };
    $('#fit').onclick = () => cy && fitView();
    $('#relayout').onclick = () => layout(true);
    $('#clear-trace').onclick = () => { S.trace = null; $('#trace-result').replaceChildren(); $('#clear-trace').hidden = true; paintTrace(); paintListTrace(); };
    $('#trace-form').onsubmit = runTrace;
    $('#side-details').onclick = () => side('details');
    $('#side-trace').onclick = () => side('trace');
    $('#t-proto').onchange = (e) => { const icmp = e.target.value === 'icmp'; $('#t-sport').disabled = icmp; $('#t-dport').disabled = icmp; };
    $('#t-proto').onchange({ target: $('#t-proto') });
    $('#graph').addEventListener('keydown', keyNav);
    if (location.hash === '#hosts') show('hosts');
    stream();
  }

  // For tests and the curious: the graph and the model.
  window.midonetConsole = { get cy() { return cy; }, state: S, select };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
