// The runs table (`/runs`): every run of `GET /api/runs` (newest first, "Load more" by cursor),
// sorted by a click on a column, filtered by text and status, kept live by the events of
// `WS /ws` (a new run appears at the top, a run's status and progress change in its row).
// Rows are built as one HTML string per render (every value escaped), and the table has one
// click and one change listener for all rows, so 1,000 runs render at once.
// `?group=NAME` adds the group view (group.js); `?q=`, `?status=`, `?limit=` preset the reads.

import { byId, fmtDuration, fmtFraction, isNum, setText, timeAgo } from './dom.js';
import { GroupView } from './group.js';
import { snapshotThenLive, startPage } from './pagekit.js';
import {
  applyRunEvent, esc, fmtValue, getJson, newRun, pageUrl, RUN_EVENTS, runName, STATUS_HELP, STATUSES,
} from './runsdata.js';

const MAX_PARAM_COLUMNS = 8;
const MAX_METRIC_COLUMNS = 8;
const { config, manager } = startPage();
const query = new URLSearchParams(window.location.search);
const filter = {
  q: query.get('q') || '', status: query.get('status') || '', group: query.get('group') || '',
};
const limit = Math.max(1, Math.min(500, Number(query.get('limit')) || 50)); // the server's most

const state = {
  runs: new Map(), // run_id → run record, in the server's order (newest first)
  nextCursor: null,
  sort: { col: null, dir: 1 },
  selected: new Set(),
  columns: [],
  signature: '',
};

const head = byId('runs-head');
const body = byId('runs-body');
const more = byId('runs-more');
const compare = byId('compare-button');
const filterInput = byId('runs-filter');
const statusSelect = byId('status-filter');
const group = filter.group ? new GroupView(config, filter.group) : null;

// ------------------------------------------------------------------------- columns

function matches(run) {
  if (filter.status && run.status !== filter.status) return false;
  if (filter.group && run.group !== filter.group) return false;
  if (!filter.q) return true;
  const needle = filter.q.toLowerCase();
  return [run.model_name, run.run_id].some((v) => v && String(v).toLowerCase().includes(needle));
}

const visible = () => [...state.runs.values()].filter(matches);

/** The params whose values differ across `runs` (all of them for a single run). */
function keyParams(runs) {
  const values = new Map();
  for (const run of runs) {
    for (const [key, value] of Object.entries(run.params || {})) {
      if (!values.has(key)) values.set(key, new Set());
      values.get(key).add(JSON.stringify(value));
    }
  }
  const keys = [...values.keys()].filter((key) => runs.length === 1
    || values.get(key).size > 1 || runs.some((run) => !(key in (run.params || {}))));
  return keys.sort().slice(0, MAX_PARAM_COLUMNS);
}

function metricKeys(runs) {
  const keys = new Set();
  for (const run of runs) for (const key of Object.keys(run.last_metrics || {})) keys.add(key);
  const rank = (k) => (k === 'loss' ? 0 : k === 'accuracy' ? 1 : 2);
  return [...keys].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b)).slice(0, MAX_METRIC_COLUMNS);
}

function columnsFor(runs) {
  const cols = [
    { id: 'status', label: 'Status', get: (r) => r.status },
    { id: 'name', label: 'Name', get: (r) => runName(r) },
    { id: 'group', label: 'Group', get: (r) => r.group },
    { id: 'started', label: 'Started', get: (r) => Date.parse(r.started_at) || null },
    { id: 'duration', label: 'Duration', get: (r) => r.duration_s, num: true },
    { id: 'progress', label: 'Progress', get: (r) => r.progress, num: true },
    { id: 'final_accuracy', label: 'Final accuracy', get: (r) => r.final_accuracy, num: true },
  ];
  for (const key of keyParams(runs)) {
    cols.push({ id: `p:${key}`, label: key, kind: 'param', get: (r) => (r.params || {})[key] });
  }
  for (const key of metricKeys(runs)) {
    cols.push({ id: `m:${key}`, label: key, kind: 'metric', num: true, get: (r) => (r.last_metrics || {})[key] });
  }
  return cols;
}

// ------------------------------------------------------------------------- rendering

function cellHtml(col, run) {
  const value = col.get(run);
  switch (col.id) {
    case 'status':
      return `<span class="badge" data-status="${esc(run.status)}" title="${esc(run.state_reason || STATUS_HELP[run.status] || '')}">${esc(run.status || '—')}</span>`;
    case 'name':
      return `<a class="run-link" href="${esc(pageUrl(config, `/runs/${encodeURIComponent(run.run_id)}`))}">${esc(runName(run))}</a>`
        + `<span class="run-id">${esc(run.run_id)}</span>`;
    case 'group':
      return run.group
        ? `<a href="${esc(pageUrl(config, '/runs', { group: run.group }))}">${esc(run.group)}</a>` : '';
    case 'started':
      return run.started_at ? `<time data-time="${esc(run.started_at)}">${esc(timeAgo(run.started_at))}</time>` : '—';
    case 'duration':
      return esc(fmtDuration(value));
    case 'progress':
      return isNum(value) ? `${esc(Math.round(value))}%` : '—';
    case 'final_accuracy':
      return esc(fmtFraction(value));
    default:
      return esc(fmtValue(value));
  }
}

function rowHtml(run) {
  const id = esc(run.run_id);
  const checked = state.selected.has(run.run_id) ? ' checked' : '';
  const cells = state.columns.map((col) => `<td data-col="${esc(col.id)}"${col.num ? ' class="num"' : ''}>${cellHtml(col, run)}</td>`);
  return `<tr data-run-id="${id}" data-status="${esc(run.status)}"><td class="select"><input type="checkbox" aria-label="Select ${esc(runName(run))} for comparison" data-run-id="${id}"${checked}></td>${cells.join('')}</tr>`;
}

function compareValues(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined || a === '') return 1; // missing values last
  if (b === null || b === undefined || b === '') return -1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

function sorted(runs) {
  const col = state.columns.find((c) => c.id === state.sort.col);
  if (!col) return runs;
  return [...runs].sort((x, y) => {
    const a = col.get(x);
    const b = col.get(y);
    const missing = (v) => v === null || v === undefined || v === '';
    if (missing(a) !== missing(b)) return missing(a) ? 1 : -1; // missing last either way
    return compareValues(a, b) * state.sort.dir;
  });
}

function headHtml() {
  const ths = state.columns.map((col) => {
    const sort = state.sort.col === col.id ? (state.sort.dir > 0 ? 'ascending' : 'descending') : 'none';
    return `<th scope="col" data-col="${esc(col.id)}" aria-sort="${sort}"${col.kind ? ` class="${col.kind}"` : ''}>`
      + `<button type="button" class="sort" data-col="${esc(col.id)}">${esc(col.label)}</button></th>`;
  });
  return `<tr><th scope="col" class="select"><span class="visually-hidden">Select</span></th>${ths.join('')}</tr>`;
}

/** Render the whole table: one HTML string for the head and one for the rows. */
function render() {
  const runs = visible();
  state.columns = columnsFor(runs);
  state.signature = state.columns.map((c) => c.id).join('\n');
  head.innerHTML = headHtml();
  body.innerHTML = sorted(runs).map(rowHtml).join('');
  setText(byId('runs-count'), `${runs.length} run${runs.length === 1 ? '' : 's'}${state.nextCursor ? ' loaded' : ''}`);
  byId('runs-empty').hidden = runs.length > 0;
  more.hidden = !state.nextCursor;
  updateCompare();
  if (group) group.update(runs);
}

// Live events coalesce into one update per animation frame: changed rows are rebuilt in place
// and new runs put on top (unsorted table), or the whole table is rendered again when its
// columns change (a new param or metric key) or it is sorted.
const dirty = new Set();
const added = [];
let frame = 0;

function schedule(runId, isNew) {
  if (isNew) added.push(runId);
  else dirty.add(runId);
  if (!frame) frame = requestAnimationFrame(flush);
}

function replaceRow(run) {
  const row = body.querySelector(`tr[data-run-id="${CSS.escape(run.run_id)}"]`);
  if (!row) return;
  const tmp = document.createElement('tbody');
  tmp.innerHTML = rowHtml(run);
  row.replaceWith(tmp.firstElementChild);
}

function flush() {
  frame = 0;
  const ids = [...dirty];
  const fresh = added.splice(0).map((id) => state.runs.get(id)).filter((r) => r && matches(r));
  dirty.clear();
  const runs = visible();
  const signature = columnsFor(runs).map((c) => c.id).join('\n');
  const changed = ids.map((id) => state.runs.get(id)).filter(Boolean);
  const rowsLeave = changed.some((run) => !matches(run));
  if (signature !== state.signature || rowsLeave || (fresh.length && state.sort.col)) {
    render();
    return;
  }
  if (fresh.length) body.insertAdjacentHTML('afterbegin', fresh.reverse().map(rowHtml).join(''));
  for (const run of changed) replaceRow(run);
  setText(byId('runs-count'), `${runs.length} run${runs.length === 1 ? '' : 's'}${state.nextCursor ? ' loaded' : ''}`);
  byId('runs-empty').hidden = runs.length > 0;
  if (group) group.update(runs);
}

function updateCompare() {
  const n = state.selected.size;
  compare.disabled = n < 2;
  setText(compare, n ? `Compare (${n})` : 'Compare');
}

// ------------------------------------------------------------------------- data

async function fetchPage(cursor) {
  const data = await getJson(config, '/api/runs', {
    status: filter.status, q: filter.q, group: filter.group,
    limit: group && !query.get('limit') ? 500 : limit, cursor,
  });
  for (const run of data.runs || []) state.runs.set(run.run_id, { params: {}, last_metrics: {}, ...run });
  state.nextCursor = data.next_cursor || null;
}

async function load() {
  state.runs.clear();
  await fetchPage(null);
  // The group view counts every run of the group: read the rest of its pages too.
  for (let pages = 1; group && state.nextCursor && pages < 20; pages += 1) await fetchPage(state.nextCursor);
  render();
}

function apply(event) {
  if (!event.run_id) return;
  let run = state.runs.get(event.run_id);
  const isNew = !run;
  if (isNew) {
    if (event.type === 'run_params' && !event.group && filter.group) return;
    run = newRun(event);
  }
  if (!applyRunEvent(run, event) && !isNew) return;
  if (isNew) {
    state.runs = new Map([[run.run_id, run], ...state.runs]); // newest first
  }
  schedule(run.run_id, isNew);
}

// ------------------------------------------------------------------------- controls

head.addEventListener('click', (event) => {
  const button = event.target.closest('button.sort');
  if (!button) return;
  const col = button.dataset.col;
  state.sort = { col, dir: state.sort.col === col ? -state.sort.dir : 1 };
  render();
});

body.addEventListener('change', (event) => {
  const box = event.target.closest('input[type="checkbox"][data-run-id]');
  if (!box) return;
  if (box.checked) state.selected.add(box.dataset.runId);
  else state.selected.delete(box.dataset.runId);
  updateCompare();
});

compare.addEventListener('click', () => {
  if (state.selected.size < 2) return;
  window.location.href = pageUrl(config, '/compare', { runs: [...state.selected].join(',') });
});

more.addEventListener('click', async () => {
  more.disabled = true;
  try {
    await fetchPage(state.nextCursor);
    render();
  } catch (err) {
    console.warn(`mlops-hooks: ${err.message}`);
  } finally {
    more.disabled = false;
  }
});

function rememberFilters() {
  const url = new URL(window.location.href);
  for (const key of ['q', 'status']) {
    if (filter[key]) url.searchParams.set(key, filter[key]);
    else url.searchParams.delete(key);
  }
  window.history.replaceState(null, '', url);
}

let refetch = 0;
function filtersChanged() {
  rememberFilters();
  render(); // at once, over the runs already loaded
  clearTimeout(refetch);
  refetch = setTimeout(() => load().catch((err) => console.warn(`mlops-hooks: ${err.message}`)), 300);
}

for (const status of STATUSES) statusSelect.append(new Option(status, status));
statusSelect.value = filter.status;
filterInput.value = filter.q;
filterInput.addEventListener('input', () => {
  filter.q = filterInput.value.trim();
  filtersChanged();
});
statusSelect.addEventListener('change', () => {
  filter.status = statusSelect.value;
  filtersChanged();
});

snapshotThenLive(manager, RUN_EVENTS, load, apply);
setInterval(() => {
  for (const el of body.querySelectorAll('time[data-time]')) setText(el, timeAgo(el.dataset.time));
}, 10000);
window.mlopsRuns = { config, manager, state, render };
manager.start();
