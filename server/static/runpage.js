// One run (`/runs/{run_id}`): its status, progress, parameters and metadata (host, Python,
// frameworks, command, git commit), and every metric series charted with uPlot, one small
// chart per key: loaded from `GET /api/runs/{id}/metrics`, then extended by the run's live
// `training_progress` events (the same points the server stores, so a reload shows them all).
// The training machine's `system/...` series (docs/protocol.md, `host_metrics`) are a strip of
// small sparklines above the charts, extended live by the run's `host_metrics` events.

import { byId, fmtDateTime, fmtDuration, fmtFraction, h, isNum, replaceChildren, setText } from './dom.js';
import { onProgressGap, snapshotThenLive, startPage } from './pagekit.js';
import { Series, SeriesChart } from './plots.js';
import {
  applyRunEvent, fmtValue, getJson, LIVE_STATES, pageUrl, progressPoint, RUN_EVENTS, runName, STATUS_HELP,
} from './runsdata.js';
import { StopButton } from './stopbutton.js';

const { config, manager } = startPage();
const runId = decodeURIComponent(window.location.pathname.replace(/^\/runs\//, '').replace(/\/$/, ''));
const state = { run: { run_id: runId, params: {}, metadata: {} }, series: new Map(), charts: new Map() };
const stop = new StopButton(config, runId, { onError: (err) => showError(`Stop failed: ${err.message}`) });
byId('run-stop').append(stop.element);

function showError(text) {
  const box = byId('page-error');
  box.hidden = false;
  setText(box, text);
}

const SYSTEM = 'system/';
const isSystem = (key) => key.startsWith(SYSTEM);
const hosts = []; // hosts whose host_metrics arrived live: keys include the host once there are two

const rank = (k) => (k === 'loss' ? 0 : k === 'accuracy' ? 1 : 2);
const byRank = (a, b) => rank(a) - rank(b) || a.localeCompare(b);

function metaRows(run) {
  const meta = run.metadata || {};
  const rows = [
    ['started', run.started_at && fmtDateTime(run.started_at)],
    ['ended', run.ended_at && fmtDateTime(run.ended_at)],
    ['duration', isNum(run.duration_s) ? fmtDuration(run.duration_s) : null],
    ['final accuracy', isNum(run.final_accuracy) ? fmtFraction(run.final_accuracy) : null],
    ['host', meta.host], ['pid', meta.pid], ['python', meta.python],
  ];
  if (meta.frameworks && typeof meta.frameworks === 'object') {
    const list = Object.entries(meta.frameworks).map(([name, version]) => `${name} ${version}`);
    rows.push(['frameworks', list.join(', ') || null]);
  }
  rows.push(['command', Array.isArray(meta.command) ? meta.command.join(' ') : meta.command]);
  if (meta.git && typeof meta.git === 'object') {
    rows.push(['git', `${meta.git.commit || '?'}${meta.git.dirty ? ' (dirty)' : ''}`]);
  }
  return rows.filter(([, value]) => value !== null && value !== undefined && value !== '');
}

function renderHeader() {
  const run = state.run;
  setText(byId('run-name'), runName(run));
  document.title = `mlops-hooks · ${runName(run)}`;
  const status = byId('run-status');
  status.dataset.status = run.status || '';
  setText(status, run.status || 'unknown');
  status.title = run.state_reason || STATUS_HELP[run.status] || '';
  setText(byId('run-progress'), isNum(run.progress) && LIVE_STATES.has(run.status) ? `${Math.round(run.progress)}%` : '');
  setText(byId('run-id'), run.run_id);
  stop.update(run);
  const meta = metaRows(run).flatMap(([key, value]) => [h('dt', { text: key }), h('dd', { text: String(value) })]);
  if (run.group) {
    meta.unshift(h('dt', { text: 'group' }),
      h('dd', {}, h('a', { href: pageUrl(config, '/runs', { group: run.group }), text: run.group })));
  }
  replaceChildren(byId('run-meta'), meta);
  const params = Object.entries(run.params || {}).sort(([a], [b]) => a.localeCompare(b));
  replaceChildren(byId('params-body'), params.map(([key, value]) => h('tr', { dataset: { param: key } },
    h('th', { scope: 'row', text: key }), h('td', { text: fmtValue(value) }))));
  byId('params-empty').hidden = params.length > 0;
  setText(byId('params-count'), params.length ? String(params.length) : '');
}

function sparklineFor(key) {
  const box = h('div', { class: 'chart sparkline' });
  const label = key.slice(SYSTEM.length);
  const card = h('figure', { class: 'sparkline-card', dataset: { key } },
    h('h3', {}, label, h('span', { class: 'last num' })), box);
  const strip = byId('sparklines');
  const keys = [...strip.querySelectorAll('figure')].map((f) => f.dataset.key);
  const after = [...keys, key].sort().find((k) => k > key);
  strip.insertBefore(card, after ? strip.querySelector(`figure[data-key="${CSS.escape(after)}"]`) : null);
  byId('sparklines-empty').hidden = true;
  return new SeriesChart(box, key, [label], { height: 60, xLabel: 's since start' });
}

function chartFor(key) {
  let chart = state.charts.get(key);
  if (chart) return chart;
  if (isSystem(key)) {
    chart = sparklineFor(key);
    state.charts.set(key, chart);
    return chart;
  }
  const box = h('div', { class: 'chart' });
  const card = h('figure', { class: 'chart-card', dataset: { key } }, h('h3', { text: key }), box);
  const keys = [...state.charts.keys(), key].sort(byRank);
  const after = keys[keys.indexOf(key) + 1];
  const charts = byId('charts');
  const next = after ? charts.querySelector(`figure[data-key="${CSS.escape(after)}"]`) : null;
  charts.insertBefore(card, next);
  chart = new SeriesChart(box, key, [key]);
  state.charts.set(key, chart);
  byId('charts-empty').hidden = true;
  setText(byId('charts-count'), `${[...state.charts.keys()].filter((k) => !isSystem(k)).length} series`);
  return chart;
}

function draw(key) {
  const series = state.series.get(key);
  chartFor(key).set(series.xs, [series.ys]);
  if (isSystem(key) && series.length) {
    const card = byId('sparklines').querySelector(`figure[data-key="${CSS.escape(key)}"] .last`);
    if (card) setText(card, fmtValue(series.ys[series.length - 1]));
  }
}

// A live `host_metrics` sample: the points the server adds (docs/protocol.md), stepped by whole
// seconds since the run started, keyed by host once a second host reports.
function applySample(event) {
  if (!event.metrics || typeof event.metrics !== 'object' || !isNum(event.elapsed_s)) return;
  if (event.host && !hosts.includes(event.host)) hosts.push(event.host);
  setText(byId('resources-host'), hosts.join(', '));
  const prefix = hosts.length > 1 ? `${SYSTEM}${event.host}/` : SYSTEM;
  const step = Math.floor(event.elapsed_s);
  for (const [name, value] of Object.entries(event.metrics)) {
    if (!isNum(value)) continue;
    const key = prefix + name;
    if (!state.series.has(key)) state.series.set(key, new Series());
    state.series.get(key).add(step, value);
    if (refreshing) refreshing.push([key, step, value]);
    draw(key);
  }
}

async function load() {
  const path = `/api/runs/${encodeURIComponent(runId)}`;
  let detail;
  let metrics;
  try {
    [detail, metrics] = await Promise.all([getJson(config, path), getJson(config, `${path}/metrics`)]);
  } catch (err) {
    if (err.status !== 404) throw err;
    // Not (yet) known to the server: the page waits for the run's first live event.
    detail = { run: { run_id: runId, status: 'unknown' } };
    metrics = { series: {} };
    const box = byId('page-error');
    box.hidden = false;
    setText(box, `The server has no run "${runId}" (yet): it appears here when it reports.`);
  }
  state.run = { params: {}, metadata: {}, last_metrics: {}, ...detail.run };
  renderHeader();
  state.series.clear();
  for (const chart of state.charts.values()) chart.destroy();
  state.charts.clear();
  byId('charts').replaceChildren();
  byId('sparklines').replaceChildren();
  for (const key of Object.keys(metrics.series || {}).sort(byRank)) {
    state.series.set(key, new Series(metrics.series[key]));
    draw(key);
  }
  const keys = [...state.charts.keys()];
  byId('charts-empty').hidden = keys.some((k) => !isSystem(k));
  byId('sparklines-empty').hidden = keys.some(isSystem);
}

let headerFrame = 0;
function apply(event) {
  if (event.run_id !== runId) return;
  if (state.run.status === 'unknown') {
    state.run.status = '';
    byId('page-error').hidden = true;
  }
  const applied = applyRunEvent(state.run, event);
  if (applied && !headerFrame) {
    headerFrame = requestAnimationFrame(() => {
      headerFrame = 0;
      renderHeader();
    });
  }
  if (event.type === 'host_metrics') {
    applySample(event);
    return;
  }
  // a late progress of an ended attempt adds no point (the server keeps none either)
  if (event.type !== 'training_progress' || !applied) return;
  const point = progressPoint(event);
  if (!point) return;
  for (const [key, value] of Object.entries(point.values)) {
    if (!state.series.has(key)) state.series.set(key, new Series());
    state.series.get(key).add(point.step, value);
    if (refreshing) refreshing.push([key, point.step, value]);
    draw(key);
  }
}

// The server coalesces a run's `training_progress` events for a subscriber that is behind
// (docs/protocol.md, delivery), so the stream may skip points: a gap in `seq` before one of this
// run's progress events reads the series again (once per burst), keeping the points that
// arrive meanwhile. Triggered by the stream, never by a timer.
let refreshing = null; // live points that arrived while the series are read again
let refreshAgain = false;
onProgressGap(manager, (event) => {
  if (event.run_id === runId) refreshSeries();
});

async function refreshSeries() {
  if (refreshing) {
    refreshAgain = true;
    return;
  }
  refreshing = [];
  try {
    const metrics = await getJson(config, `/api/runs/${encodeURIComponent(runId)}/metrics`);
    const arrived = refreshing;
    refreshing = null;
    for (const [key, points] of Object.entries(metrics.series || {})) {
      const series = new Series(points);
      for (const [k, x, y] of arrived) if (k === key) series.add(x, y);
      state.series.set(key, series);
      draw(key);
    }
  } catch (err) {
    console.warn(`mlops-hooks: ${err.message}`);
  } finally {
    refreshing = null;
    if (refreshAgain) {
      refreshAgain = false;
      refreshSeries();
    }
  }
}

snapshotThenLive(manager, [...RUN_EVENTS, 'host_metrics'], load, apply);
window.mlopsRunPage = { config, manager, state };
manager.start();
