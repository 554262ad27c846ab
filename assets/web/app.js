// taskscope serve: the Top Activity page. Plain JavaScript over the JSON
// API (no build step); uPlot draws the chart. The URL holds the window,
// the selection and the filters, so a pasted link opens the same view.
// Live (no end time, no selection) it asks /api/changes every POLL_MS and
// reads the data again only when the directory changed: it follows any
// flush interval of the agent, and costs one small request when nothing
// was written.
'use strict';

const COLORS = {
  // wait classes
  CPU: '#3a9b3a', RUNQUEUE: '#c9b300', IO: '#2f6fbf', LOCK: '#d0403a', NET: '#8a5cc2',
  IPC: '#d96fb4', TIMER: '#27b3c4', IDLE: '#b9b9b9', PAGING: '#ef8a25', OTHER: '#8c6a4f',
  // states
  ON_CPU: '#3a9b3a', DISK: '#d0403a', UNINTERRUPTIBLE: '#ef8a25', SLEEP: '#2f6fbf',
  STOPPED: '#a040a0', TRACED: '#a040a0', PARKED: '#999', ZOMBIE: '#777', DEAD: '#555',
};
const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948',
  '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac', '#1f77b4', '#aec7e8'];
const FILTERS = ['comm', 'tgid', 'container', 'where'];
const POLL_MS = 1000;

const $ = (id) => document.getElementById(id);
let chart = null;
let info = null;
let timer = null; // the next poll
let loads = 0; // loadAll calls: a poll of an older load stops
let seenVersion = null; // the data version the panels were read at
let rest = null; // the panels' refresh in flight (live)
let restAgain = false; // the data changed again meanwhile
let last = null; // the activity answer drawn
let cpusTotal = 0; // the CPU line (0: not known yet)

function colorOf(name, i) {
  return COLORS[name] || PALETTE[i % PALETTE.length];
}

// --- the view's state, in the URL ---------------------------------------
function view() {
  const p = new URLSearchParams(location.search);
  return {
    from: p.get('from') || '', to: p.get('to') || '', since: p.get('since') || '',
    sel_from: p.get('sel_from') || '', sel_to: p.get('sel_to') || '',
    comm: p.get('comm') || '', tgid: p.get('tgid') || '', container: p.get('container') || '',
    where: p.get('where') || '', by: p.get('by') || 'wait_class', states: p.get('states') || 'active',
    groups: p.get('groups') || 'wait_class,comm,syscall,kfunc', tid: p.get('tid') || '',
    latency: p.get('latency') || 'syscalls', flame: p.get('flame') || '',
    stacks: p.get('stacks') || '',
  };
}

function setView(changes, push) {
  const v = Object.assign(view(), changes);
  const p = new URLSearchParams();
  for (const [k, val] of Object.entries(v)) if (val) p.set(k, val);
  const url = location.pathname + '?' + p.toString();
  if (push) history.pushState(null, '', url); else history.replaceState(null, '', url);
  return v;
}

function iso(unixSeconds) {
  return new Date(Math.round(unixSeconds) * 1000).toISOString().replace('.000', '');
}

// The chart's window as API parameters.
function windowParams(v) {
  const p = {};
  if (v.from) p.from = v.from;
  if (v.to) p.to = v.to;
  if (!v.from && v.since) p.since = v.since;
  if (!v.from && !v.since && !v.to && info && info.newest_unix &&
      info.now_unix - info.newest_unix > 120) {
    // The data ended a while ago: show its last hour, not an empty present.
    p.from = iso(info.newest_unix - 3600);
    p.to = iso(info.newest_unix + 1);
  }
  return p;
}

// The panels' window: the selection, else the chart's.
function panelParams(v) {
  if (v.sel_from && v.sel_to) return { from: v.sel_from, to: v.sel_to };
  return windowParams(v);
}

function filterParams(v) {
  const p = {};
  for (const k of FILTERS) if (v[k]) p[k] = v[k];
  if (v.states === 'all') p.states = 'all';
  return p;
}

function apiUrl(path, ...parts) {
  const p = new URLSearchParams();
  for (const part of parts) for (const [k, val] of Object.entries(part)) p.set(k, val);
  return path + '?' + p.toString();
}

async function getJson(url) {
  const response = await fetch(url, { credentials: 'same-origin' });
  if (!response.ok) {
    const text = (await response.text()).trim();
    throw new Error(text || response.statusText);
  }
  return response.json();
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

// --- the chart ----------------------------------------------------------
function drawChart(data, cpus) {
  const times = data.times;
  const raw = data.series.map((s) => s.values);
  // Stacked: each series drawn as the sum of it and those below it, the
  // top of the stack first so each fill covers only its own band.
  const sums = [];
  let below = times.map(() => 0);
  for (const values of raw) {
    const sum = values.map((v, i) => (v === null ? null : below[i] + v));
    below = sum.map((v, i) => (v === null ? below[i] : v));
    sums.push(sum);
  }
  const order = raw.map((_, i) => raw.length - 1 - i);
  const series = [{ value: (u, t) => (t === null ? '' : iso(t).replace('T', ' ').replace('Z', '')) }];
  const columns = [times];
  for (const i of order) {
    const name = data.series[i].name;
    const color = colorOf(name, i);
    series.push({
      label: name, stroke: color, fill: color + 'cc', width: 1, points: { show: false },
      value: (u, v, si, idx) => (idx === null || raw[i][idx] === null ? '–' : raw[i][idx].toFixed(2)),
    });
    columns.push(sums[i]);
  }
  if (cpus) {
    series.push({ label: 'CPUs (' + cpus + ')', stroke: '#222', width: 1.5, dash: [6, 4], points: { show: false } });
    columns.push(times.map(() => cpus));
  }
  const box = $('chart');
  box.replaceChildren();
  const width = Math.max(400, box.clientWidth || 1000);
  const opts = {
    width, height: 280,
    series,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
    scales: { x: { time: true, range: [data.from_unix, data.to_unix] }, y: { range: (u, lo, hi) => [0, Math.max(1, hi * 1.05)] } },
    axes: [{}, { label: 'average active threads', size: 60 }],
    cursor: { drag: { x: true, y: false, setScale: false } },
    select: { show: true },
    hooks: { setSelect: [onSelect] },
  };
  if (chart) chart.destroy();
  chart = new uPlot(opts, columns, box);
  box.dataset.series = data.series.map((s) => s.name).join(',');
  // The newest time drawn (the last flushed tick while live), and how many
  // times the chart was drawn: what a reader (and the tests) can follow.
  box.dataset.newest = data.in_progress_until || data.to;
  box.dataset.draws = Number(box.dataset.draws || 0) + 1;
  showSelection();
}

// The brush: the selection becomes the panels' window (and the URL's).
function onSelect(u) {
  if (u.select.width < 3) return;
  const from = u.posToVal(u.select.left, 'x');
  const to = u.posToVal(u.select.left + u.select.width, 'x');
  const v = setView({ sel_from: iso(Math.floor(from)), sel_to: iso(Math.ceil(to)) }, true);
  showSelection();
  schedule(v, loads); // a selection is a fixed window: no more polls
  loadPanels(v);
}

function showSelection() {
  const v = view();
  const text = $('selection');
  text.firstChild.textContent = v.sel_from
    ? 'Panels show ' + v.sel_from + ' to ' + v.sel_to + ' (drag again to change). '
    : 'Panels show the whole window; drag across the chart to pick a part of it. ';
  if (chart && last && v.sel_from) {
    const a = Date.parse(v.sel_from) / 1000, b = Date.parse(v.sel_to) / 1000;
    const left = chart.valToPos(a, 'x'), right = chart.valToPos(b, 'x');
    if (isFinite(left) && isFinite(right) && right > left) {
      chart.setSelect({ left, width: right - left, top: 0, height: chart.over.clientHeight }, false);
    }
  }
}

function showChart(data) {
  last = data;
  $('chart-msg').textContent = data.problems.length ? 'left out: ' + data.problems.join('; ') : '';
  $('chart-note').textContent = '— ' + data.from.slice(0, 19) + ' to ' + data.to.slice(0, 19) +
    ' UTC, ' + data.bucket_seconds + ' s buckets, by ' + data.by +
    (data.states === 'all' ? ', every state' : ', active threads') + (data.live ? ', live' : '');
  drawChart(data, cpusTotal);
}

function chartFailed(err) {
  last = null;
  if (chart) { chart.destroy(); chart = null; }
  $('chart').replaceChildren();
  $('chart').dataset.series = '';
  $('chart-msg').textContent = err.message;
}

async function loadChart(v) {
  try {
    showChart(await getJson(apiUrl('/api/activity', windowParams(v), filterParams(v), { by: v.by })));
  } catch (err) { chartFailed(err); }
}

// The first view without a selection: the chart and the top groups of the
// same window in one answer (one read of the files).
async function loadOverview(v) {
  $('groups-msg').textContent = '';
  try {
    const both = await getJson(apiUrl('/api/overview', windowParams(v), filterParams(v),
      { by: v.by, groups: v.groups, top: 15 }));
    showChart(both.activity);
    showGroups(both.top);
  } catch (err) {
    chartFailed(err);
    $('groups').replaceChildren();
    $('groups-msg').textContent = err.message;
  }
}

// --- the panels ---------------------------------------------------------
function table(target, doc, onPick) {
  const t = $(target);
  t.replaceChildren();
  const head = el('tr');
  for (const g of doc.groups) head.appendChild(el('th', g));
  head.appendChild(el('th', 'avg active'));
  head.appendChild(el('th', 'share'));
  t.appendChild(head);
  for (const row of doc.rows) {
    const tr = el('tr', null, onPick ? 'pick' : '');
    for (const g of doc.groups) tr.appendChild(el('td', row[g] === null ? '–' : row[g]));
    tr.appendChild(el('td', row.avg_active.toFixed(3), 'num'));
    const share = el('td');
    const bar = el('span', null, 'bar');
    bar.style.width = Math.round(row.share * 120) + 'px';
    share.appendChild(bar);
    share.appendChild(document.createTextNode(' ' + (100 * row.share).toFixed(1) + '%'));
    tr.appendChild(share);
    if (onPick) tr.addEventListener('click', () => onPick(row));
    t.appendChild(tr);
  }
  t.dataset.rows = doc.rows.length;
  t.dataset.from = doc.from;
  t.dataset.to = doc.to;
}

async function panel(msgId, work) {
  $(msgId).textContent = '';
  try { await work(); } catch (err) { $(msgId).textContent = err.message; }
}

function pickThread(row) {
  const v = setView({ tid: String(row.tid) }, true);
  loadThread(v, row.comm);
}

async function loadGroups(v) {
  await panel('groups-msg', async () => {
    $('groups').replaceChildren();
    showGroups(await getJson(apiUrl('/api/top', panelParams(v), filterParams(v), { by: v.groups, top: 15 })));
  });
}

function showGroups(doc) {
  table('groups', doc, doc.groups.includes('tid') ? pickThread : null);
}

async function loadThreads(v) {
  await panel('threads-msg', async () => {
    $('threads').replaceChildren();
    const doc = await getJson(apiUrl('/api/threads', panelParams(v), filterParams(v), { top: 15 }));
    table('threads', doc, pickThread);
  });
}

async function loadThread(v, comm) {
  const strip = $('thread-strip');
  if (!v.tid) return;
  $('thread-name').textContent = 'tid ' + v.tid + (comm ? ' (' + comm + ')' : '');
  await panel('thread-msg', async () => {
    strip.replaceChildren();
    const f = filterParams(v);
    delete f.states;
    const data = await getJson(apiUrl('/api/thread', panelParams(v), f, { tid: v.tid }));
    const legend = $('thread-legend');
    legend.replaceChildren();
    data.series.forEach((s, i) => {
      const item = el('span');
      const swatch = el('i');
      swatch.style.background = colorOf(s.name, i);
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(s.name));
      legend.appendChild(item);
    });
    data.times.forEach((t, k) => {
      const cell = el('div');
      let best = null, bestValue = 0;
      const parts = [];
      data.series.forEach((s, i) => {
        const value = s.values[k];
        if (value) parts.push(s.name + ' ' + (100 * value).toFixed(0) + '%');
        if (value !== null && value > bestValue) { best = i; bestValue = value; }
      });
      cell.style.background = best === null ? '#fff' : colorOf(data.series[best].name, best);
      cell.title = iso(t) + ': ' + (parts.join(', ') || 'not seen');
      strip.appendChild(cell);
    });
    strip.dataset.tid = v.tid;
    strip.dataset.states = data.series.map((s) => s.name).join(',');
  });
}

async function loadBlockers(v) {
  await panel('blockers-msg', async () => {
    const list = $('blockers');
    list.replaceChildren();
    const doc = await getJson(apiUrl('/api/blockers', panelParams(v), filterParams(v), { top: 10 }));
    for (const b of doc.blockers) {
      const doing = b.doing.slice(0, 3).map((d) =>
        (d.wait_class || d.state || '?') + (d.syscall ? ' in ' + d.syscall : '') + ' ' + (100 * d.share).toFixed(0) + '%').join(', ');
      list.appendChild(el('li', (b.comm || '?') + ' [tid ' + b.tid + ']: ' + b.waiters + ' thread(s) waited ' +
        (b.waited_us / 1e6).toFixed(2) + ' s; meanwhile ' + doing));
    }
    if (!doc.blockers.length) list.appendChild(el('li', 'no thread waited for another here'));
  });
}

function micros(us) {
  if (us < 1000) return us + ' µs';
  if (us < 1e6) return (us / 1e3).toFixed(1) + ' ms';
  return (us / 1e6).toFixed(2) + ' s';
}

async function loadLatency(v) {
  $('latency-table').value = v.latency;
  await panel('latency-msg', async () => {
    const box = $('latency');
    box.replaceChildren();
    const f = filterParams(v);
    delete f.states;
    const doc = await getJson(apiUrl('/api/latency', panelParams(v), f, { table: v.latency, top: 6 }));
    for (const row of doc.rows) {
      const hist = el('div', null, 'hist');
      const name = doc.groups.map((g) => row[g] || '–').join(' ');
      hist.appendChild(el('b', name + ': ' + row.count + ' caught, p50 ' + micros(row.p50_us) + ', p99 ' + micros(row.p99_us)));
      const peak = Math.max(1, ...row.histogram.map((b) => b.count));
      for (const b of row.histogram) {
        const line = el('div', null, 'row');
        line.appendChild(el('span', micros(b.low_us) + ' – ' + micros(b.high_us)));
        const bar = el('span', null, 'bar');
        bar.style.width = Math.round((b.count / peak) * 200) + 'px';
        line.appendChild(bar);
        line.appendChild(el('span', String(b.count)));
        hist.appendChild(line);
      }
      box.appendChild(hist);
    }
  });
}

// Top stacks (through the SQL query layer): a few frames each, all on a click.
async function loadStacks(v) {
  $('stacks-kind').value = v.stacks || '';
  await panel('stacks-msg', async () => {
    const t = $('stacks');
    t.replaceChildren();
    const kind = v.stacks ? { kind: v.stacks } : {};
    const doc = await getJson(apiUrl('/api/stacks', panelParams(v), filterParams(v), kind, { top: 12 }));
    const head = el('tr');
    for (const h of ['kind', 'avg active', 'threads', 'mostly', 'states', 'frames']) head.appendChild(el('th', h));
    t.appendChild(head);
    for (const s of doc.stacks) {
      const tr = el('tr', null, 'pick');
      tr.appendChild(el('td', s.kind));
      tr.appendChild(el('td', s.avg_threads.toFixed(3), 'num'));
      tr.appendChild(el('td', String(s.threads), 'num'));
      tr.appendChild(el('td', s.top_comm || '–'));
      tr.appendChild(el('td', s.states || '–'));
      const frames = el('td', null, 'frames');
      const few = s.frames.slice(0, 4).join(' ← ') + (s.frames.length > 4 ? ' ← …' : '');
      frames.textContent = few;
      tr.addEventListener('click', () => {
        frames.textContent = frames.textContent === few ? s.frames.join('\n') : few;
      });
      tr.appendChild(frames);
      t.appendChild(tr);
    }
    if (!doc.stacks.length) {
      const tr = el('tr');
      tr.appendChild(el('td', 'no stacks here (the agent records them for active threads when stacks are on)'));
      t.appendChild(tr);
    }
    t.dataset.rows = doc.stacks.length;
  });
}

function loadFlame(v) {
  const frame = $('flame');
  if (!v.flame) { frame.hidden = true; frame.removeAttribute('src'); return; }
  $('flame-msg').textContent = 'drawing…';
  const url = apiUrl('/api/flame.svg', panelParams(v), filterParams(v));
  // inferno's interactive SVG in a frame of its own (its script runs only
  // there, under the SVG's own policy); an error answer is one line of text.
  frame.onload = () => {
    const doc = frame.contentDocument;
    const svg = doc && doc.contentType === 'image/svg+xml' ? doc.documentElement : null;
    if (!svg) {
      frame.hidden = true;
      $('flame-msg').textContent = doc && doc.body ? doc.body.textContent.trim() : 'no flame graph';
      return;
    }
    frame.hidden = false;
    frame.style.height = (svg.getAttribute('height') || '600') + 'px';
    $('flame-msg').textContent = '';
    frame.dataset.loaded = url;
  };
  frame.hidden = false;
  frame.src = url;
}

// Another host's CPU count is read from its samples: after the first view.
async function loadCpus(v) {
  if (info && info.cpus_complete) return;
  try {
    const answer = await getJson(apiUrl('/api/cpus', windowParams(v)));
    if (answer.cpus_total && answer.cpus_total !== cpusTotal) {
      cpusTotal = answer.cpus_total;
      if (last) drawChart(last, cpusTotal);
      $('cpus').textContent = cpusTotal + ' CPUs seen';
    }
  } catch (err) { /* the chart stays without the line */ }
}

function loadPanels(v) {
  loadGroups(v);
  loadRest(v);
}

// Every panel but the top groups (which come with the chart first).
function loadRest(v) {
  loadFlame(v);
  return Promise.all([loadCpus(v), loadThreads(v), loadBlockers(v), loadLatency(v),
    loadStacks(v), loadThread(v)]);
}

// The same, after the data changed: one refresh at a time, so panels
// slower than the agent's flushes never pile up queries (the chart does
// not wait for them); a change meanwhile refreshes them once more.
function refreshRest() {
  if (rest) { restAgain = true; return; }
  rest = loadRest(view()).finally(() => {
    rest = null;
    if (restAgain) { restAgain = false; refreshRest(); }
  });
}

// --- the form, following the agent, start --------------------------------
function fillForm(v) {
  $('f-from').value = v.from; $('f-to').value = v.to;
  if (v.since) $('f-since').value = v.since;
  for (const k of FILTERS) $('f-' + k).value = v[k];
  $('f-by').value = v.by; $('f-states').value = v.states;
  $('group-by').value = v.groups;
}

// A window that ends now and no selection: the page follows the data.
function following(v) {
  return !v.to && !(v.sel_from && v.sel_to);
}

// The data ended over two minutes ago: its last hour is shown.
function ended(v) {
  return following(v) && Boolean(windowParams(v).to);
}

async function dataVersion() {
  try { return (await getJson('/api/changes')).version; } catch (err) { return null; }
}

function schedule(v, load) {
  clearTimeout(timer);
  let status = '';
  if (ended(v)) status = 'no new data for over 2 min: its last hour is shown; checked every ' + POLL_MS / 1000 + ' s';
  else if (following(v)) status = 'live: follows the agent\'s flushes (checked every ' + POLL_MS / 1000 + ' s)';
  $('status').textContent = status;
  if (following(v)) timer = setTimeout(() => poll(load), POLL_MS);
}

// One look at the data's version: read everything again when it changed.
async function poll(load) {
  if (!following(view())) return schedule(view(), load); // a selection was made
  const version = await dataVersion();
  if (load !== loads) return; // the view changed meanwhile: its own polls run
  if (version && version !== seenVersion) await loadAll(version);
  else schedule(view(), load);
}

// Read and draw the view. `version`: the data version a poll saw change
// (a live refresh); none when the view itself changed.
async function loadAll(version) {
  const load = ++loads;
  clearTimeout(timer);
  const v = view();
  fillForm(v);
  // The version first: the answers are at least as new as it.
  seenVersion = following(v) ? (version || await dataVersion()) : null;
  if (version) {
    // The header's span follows the data too; the window needs it first
    // when the data had ended.
    const fresh = loadInfo();
    if (ended(v)) await fresh;
  }
  // The first view: the chart and the top groups (one read of the files
  // when the panels show the chart's window).
  if (v.sel_from && v.sel_to) await Promise.all([loadChart(v), loadGroups(v)]);
  else await loadOverview(v);
  if (version) refreshRest(); else loadRest(v);
  if (load === loads) schedule(v, load);
}

// Where the data is (directory, hosts, span), for the page's header and
// the window (`windowParams`).
async function loadInfo() {
  try {
    info = await getJson('/api/info');
    const hosts = info.hosts.map((h) => h.host).join(', ') || 'no data yet';
    cpusTotal = info.cpus_total || 0;
    $('source').textContent = info.dir + ' — host ' + hosts + ' — ';
    $('cpus').textContent = info.cpus_complete ? cpusTotal + ' CPUs' : 'CPUs: counting…';
    $('span').textContent = (info.oldest ? ' — data ' + info.oldest.slice(0, 19) + ' to ' + (info.newest || '?').slice(0, 19) + ' UTC' : '');
    document.title = 'taskscope — ' + hosts;
  } catch (err) {
    $('source').textContent = 'cannot read the data: ' + err.message;
  }
}

async function start() {
  await loadInfo();
  $('filters').addEventListener('submit', (e) => {
    e.preventDefault();
    const changes = { sel_from: '', sel_to: '' };
    for (const k of ['from', 'to', 'since', ...FILTERS, 'by', 'states']) changes[k] = $('f-' + k).value.trim();
    if (changes.from) changes.since = '';
    setView(changes, true);
    loadAll();
  });
  $('live').addEventListener('click', () => {
    setView({ from: '', to: '', sel_from: '', sel_to: '', since: $('f-since').value }, true);
    loadAll();
  });
  $('clear-selection').addEventListener('click', () => {
    const v = setView({ sel_from: '', sel_to: '' }, true);
    if (chart) chart.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
    showSelection();
    schedule(v, loads); // following again
    loadPanels(v);
  });
  $('group-by').addEventListener('change', () => loadGroups(setView({ groups: $('group-by').value }, true)));
  $('latency-table').addEventListener('change', () => loadLatency(setView({ latency: $('latency-table').value }, true)));
  $('stacks-kind').addEventListener('change', () => loadStacks(setView({ stacks: $('stacks-kind').value }, true)));
  $('flame-draw').addEventListener('click', () => loadFlame(setView({ flame: '1' }, true)));
  window.addEventListener('popstate', () => loadAll());
  window.addEventListener('resize', () => { if (chart) chart.setSize({ width: $('chart').clientWidth, height: 280 }); });
  await loadAll();
  document.body.dataset.ready = '1';
}

start();
