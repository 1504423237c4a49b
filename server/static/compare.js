// Compare runs (`/compare?runs=ID,ID,...`): their parameters side by side (rows whose values
// differ are highlighted, `tr.differs`) and, for every metric key, one uPlot chart with one line
// per run (legend by run name), on the union of their steps; live runs extend their lines.

import { byId, h, replaceChildren, setText } from './dom.js';
import { onProgressGap, snapshotThenLive, startPage } from './pagekit.js';
import { align, colorOf, Series, SeriesChart } from './plots.js';
import {
  applyRunEvent, fmtValue, getJson, pageUrl, progressPoint, RUN_EVENTS, runName,
} from './runsdata.js';

const MAX_RUNS = 12;
const { config, manager } = startPage();
const ids = [...new Set((new URLSearchParams(window.location.search).get('runs') || '')
  .split(',').map((s) => s.trim()).filter(Boolean))].slice(0, MAX_RUNS);
const state = { runs: [], series: new Map(), charts: new Map() }; // series: key → [Series|null per run]

const rank = (k) => (k === 'loss' ? 0 : k === 'accuracy' ? 1 : 2);
const byRank = (a, b) => rank(a) - rank(b) || a.localeCompare(b);

function renderParams() {
  const runs = state.runs;
  replaceChildren(byId('compare-head'), h('tr', {}, h('th', { scope: 'col', text: 'parameter' }),
    runs.map((run, i) => h('th', { scope: 'col', dataset: { runId: run.run_id } },
      h('span', { class: 'swatch', style: { background: colorOf(i) } }),
      h('a', { href: pageUrl(config, `/runs/${encodeURIComponent(run.run_id)}`), text: runName(run) }),
      h('span', { class: 'run-id', text: run.run_id })))));
  const rows = [
    ['status', (run) => run.status],
    ['group', (run) => run.group],
    ['final accuracy', (run) => run.final_accuracy],
  ];
  const keys = [...new Set(runs.flatMap((run) => Object.keys(run.params || {})))].sort();
  for (const key of keys) rows.push([key, (run) => (run.params || {})[key], true]);
  replaceChildren(byId('compare-body'), rows.map(([key, get, isParam]) => {
    const values = runs.map((run) => get(run));
    const differs = new Set(values.map((v) => JSON.stringify(v ?? null))).size > 1;
    return h('tr', { class: differs ? 'differs' : null, dataset: isParam ? { param: key } : { field: key } },
      h('th', { scope: 'row', text: key }), values.map((v) => h('td', { text: fmtValue(v) })));
  }));
  setText(byId('compare-count'), `${runs.length} runs`);
}

function draw(key) {
  const lines = state.series.get(key);
  let chart = state.charts.get(key);
  if (!chart) {
    const box = h('div', { class: 'chart' });
    byId('charts').append(h('figure', { class: 'chart-card', dataset: { key } }, h('h3', { text: key }), box));
    chart = new SeriesChart(box, key, state.runs.map(runName), { height: 220 });
    state.charts.set(key, chart);
  }
  const { xs, lines: ys } = align(lines);
  chart.set(xs, ys);
}

async function load() {
  if (ids.length === 0) {
    byId('compare-empty').hidden = false;
    return;
  }
  const results = await Promise.all(ids.map(async (id) => {
    const path = `/api/runs/${encodeURIComponent(id)}`;
    try {
      const [detail, metrics] = await Promise.all([getJson(config, path), getJson(config, `${path}/metrics`)]);
      return { run: { params: {}, ...detail.run }, series: metrics.series || {} };
    } catch (err) {
      if (err.status !== 404) throw err;
      console.warn(`mlops-hooks: no run ${id}`);
      return null;
    }
  }));
  const found = results.filter(Boolean);
  state.runs = found.map((r) => r.run);
  for (const chart of state.charts.values()) chart.destroy();
  state.charts.clear();
  state.series.clear();
  byId('charts').replaceChildren();
  const keys = [...new Set(found.flatMap((r) => Object.keys(r.series)))].sort(byRank);
  for (const key of keys) {
    state.series.set(key, found.map((r) => (r.series[key] ? new Series(r.series[key]) : null)));
  }
  renderParams();
  for (const key of keys) draw(key);
  byId('charts-empty').hidden = keys.length > 0;
  byId('compare-empty').hidden = state.runs.length > 0;
}

function apply(event) {
  const index = state.runs.findIndex((run) => run.run_id === event.run_id);
  if (index < 0) return;
  if (applyRunEvent(state.runs[index], event) && event.type !== 'training_progress') renderParams();
  const point = event.type === 'training_progress' ? progressPoint(event) : null;
  if (!point) return;
  for (const [key, value] of Object.entries(point.values)) {
    if (!state.series.has(key)) state.series.set(key, state.runs.map(() => null));
    const lines = state.series.get(key);
    if (!lines[index]) lines[index] = new Series();
    lines[index].add(point.step, value);
    if (refreshing.has(index)) refreshing.get(index).push([key, point.step, value]);
    draw(key);
  }
}

// A gap before a run's progress event (the server coalesced some): read that run's series
// again, then add the points that arrived meanwhile.
const refreshing = new Map(); // run index → points [key, step, value] that arrived meanwhile
async function refreshRun(index) {
  if (refreshing.has(index)) return;
  refreshing.set(index, []);
  try {
    const id = state.runs[index].run_id;
    const metrics = await getJson(config, `/api/runs/${encodeURIComponent(id)}/metrics`);
    const arrived = refreshing.get(index);
    for (const [key, points] of Object.entries(metrics.series || {})) {
      if (!state.series.has(key)) state.series.set(key, state.runs.map(() => null));
      const series = new Series(points);
      for (const [k, x, y] of arrived) if (k === key) series.add(x, y);
      state.series.get(key)[index] = series;
      draw(key);
    }
  } catch (err) {
    console.warn(`mlops-hooks: ${err.message}`);
  } finally {
    refreshing.delete(index);
  }
}
onProgressGap(manager, (event) => {
  const index = state.runs.findIndex((run) => run.run_id === event.run_id);
  if (index >= 0) refreshRun(index);
});

snapshotThenLive(manager, RUN_EVENTS, load, apply);
window.mlopsCompare = { config, manager, state };
manager.start();
