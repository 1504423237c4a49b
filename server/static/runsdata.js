// Shared by the run history pages (/runs, /runs/{id}, /compare): REST reads with the page's
// token, links that carry it, the metric points of a `training_progress` event, and how the
// live events change a run record of `GET /api/runs`.

import { isNum, plain } from './dom.js';

/** Run states in which nothing more is expected (everything but running and stalled). */
export const LIVE_STATES = new Set(['running', 'stalled']);

/** Statuses the status filter offers: the server's run states (`?status=` refuses others). */
export const STATUSES = ['running', 'stalled', 'completed', 'failed', 'interrupted', 'killed', 'crashed'];

/** Statuses of a run that ended (a crashed run may still come back: its process reconnected). */
export const ENDED_STATES = new Set(['completed', 'failed', 'interrupted', 'killed']);

/** A `run_state` event's state as a run status (`finished` is the spec's `completed`). */
export const statusOfState = (state) => (state === 'finished' ? 'completed' : state);

/** The status of a run ended by this `training_failed` (as the server decides). */
export function failedStatus(event) {
  if (event.error_code === 'INTERRUPTED') return 'interrupted';
  if (event.error_code === 'TERMINATED' && String(event.error || '').includes('SIGTERM')) return 'killed';
  return 'failed';
}

/** Words for a run status, shown as a tooltip (the run_state's reason when there is one). */
export const STATUS_HELP = {
  stalled: 'No step for much longer than this run usually takes',
  interrupted: 'Interrupted (Ctrl-C)',
  killed: 'Killed by SIGTERM (pre-emption, scancel, a job limit)',
  crashed: 'The training process vanished (SIGKILL, out of memory, lost machine)',
};

/**
 * Whether a `run_state` event reopens an ended run: the server raised `running` from an ended
 * state because a new attempt of the run started after its end (docs/protocol.md, *Run
 * states*). The server applies the rule (the start's time against the run's end); a page
 * follows its word, and the new attempt's progress then applies as to any running run.
 */
export const reopens = (run, event) => statusOfState(event.state) === 'running'
  && ENDED_STATES.has(statusOfState(event.previous)) && (ENDED_STATES.has(run.status) || run.status === 'crashed');

/**
 * Apply a `run_state` event to a run record with a `status`, in place; returns whether it
 * changed. An ended run keeps its end (as on the server) unless the event reopens it.
 */
export function applyRunState(run, event) {
  const status = statusOfState(event.state);
  const reopened = reopens(run, event);
  if (!status || (ENDED_STATES.has(run.status) && !reopened) || run.status === status) return false;
  if (status === 'stalled' && run.status !== 'running') return false; // a late stall of a crash
  run.status = status;
  run.state_reason = event.reason || null;
  if (reopened) run.final_accuracy = null; // its end is gone; history, params and series stay
  if (status === 'crashed') run.ended_at = event.timestamp || run.ended_at;
  else if (!ENDED_STATES.has(status)) run.ended_at = null;
  return true;
}

/** The run's display name: its model name, else its id. */
export const runName = (run) => plain(run.model_name || run.run_id || '');

/** `value` escaped for HTML (and without bidi controls): for rows built as one HTML string. */
export function esc(value) {
  return plain(value === null || value === undefined ? '' : value)
    .replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** A parameter or metric value as text: numbers with up to 4 significant digits. */
export function fmtValue(value) {
  if (value === null || value === undefined) return '—';
  if (isNum(value)) {
    if (Number.isInteger(value)) return String(value);
    const abs = Math.abs(value);
    if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return value.toExponential(2);
    return String(Number(value.toPrecision(4)));
  }
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/** A same-origin link that keeps the page's `?token=` (and adds `params`). */
export function pageUrl(config, path, params = {}) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== '') url.searchParams.set(key, value);
  }
  if (config.token) url.searchParams.set('token', config.token);
  return url.pathname + url.search;
}

/** `GET path` as JSON with the subscriber token (Bearer); throws an Error with `.status`. */
export async function getJson(config, path, params = {}, signal = undefined) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== '') url.searchParams.set(key, value);
  }
  const headers = { Accept: 'application/json' };
  if (config.token) headers.Authorization = `Bearer ${config.token}`;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), config.fetchTimeoutMs);
  if (signal) signal.addEventListener('abort', () => controller.abort(), { once: true });
  try {
    const response = await fetch(url.pathname + url.search, {
      headers, signal: controller.signal, cache: 'no-store', credentials: 'same-origin',
    });
    if (!response.ok) {
      let detail = '';
      try {
        detail = (await response.json()).error || '';
      } catch {
        // not JSON: the status says enough
      }
      const err = new Error(`GET ${url.pathname}: HTTP ${response.status}${detail ? ` (${detail})` : ''}`);
      err.status = response.status;
      throw err;
    }
    return await response.json();
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The metric points of a `training_progress` event (the contract of issue 16): step is
 * `current_step`, else `current_epoch`; `loss` ← `current_loss`, `accuracy` ←
 * `current_accuracy`, each key of `metrics` its own series. `null` without a step.
 * @returns {{step: number, values: Object<string, number>}|null}
 */
export function progressPoint(event) {
  const step = isNum(event.current_step) ? event.current_step
    : (isNum(event.current_epoch) ? event.current_epoch : null);
  if (step === null) return null;
  const values = {};
  if (isNum(event.current_loss)) values.loss = event.current_loss;
  if (isNum(event.current_accuracy)) values.accuracy = event.current_accuracy;
  if (event.metrics && typeof event.metrics === 'object') {
    for (const [key, value] of Object.entries(event.metrics)) if (isNum(value)) values[key] = value;
  }
  return Object.keys(values).length ? { step, values } : null;
}

/** A run record for a run first seen live (the fields of `GET /api/runs`). */
export function newRun(event) {
  return {
    run_id: event.run_id, model_name: event.model_name || null, status: 'running',
    started_at: event.timestamp || null, ended_at: null, progress: null, final_accuracy: null,
    params: {}, group: null, group_size: null, last_metrics: {}, duration_s: null,
  };
}

function elapsed(run, endIso) {
  const start = Date.parse(run.started_at);
  const end = Date.parse(endIso);
  return Number.isFinite(start) && Number.isFinite(end) && end >= start ? (end - start) / 1000 : run.duration_s;
}

/**
 * Apply a live event of this run to its record, in place. Returns whether anything changed.
 * A finished run is not set back to running by a progress event (a late one of the ended
 * attempt): only the server's `run_state` that reopens it does (`reopens`).
 */
export function applyRunEvent(run, event) {
  switch (event.type) {
    case 'training_progress': {
      if (!LIVE_STATES.has(run.status) && run.status && run.status !== 'crashed') return false;
      if (run.status === 'crashed') run.ended_at = null;
      run.status = 'running';
      if (isNum(event.progress)) run.progress = event.progress;
      if (event.model_name) run.model_name = event.model_name;
      const point = progressPoint(event);
      if (point) run.last_metrics = { ...(run.last_metrics || {}), ...point.values };
      if (event.timestamp) run.duration_s = elapsed(run, event.timestamp);
      return true;
    }
    case 'training_completed':
      run.status = 'completed';
      run.progress = 100;
      if (isNum(event.final_accuracy)) run.final_accuracy = event.final_accuracy;
      if (event.model_name) run.model_name = event.model_name;
      run.ended_at = event.timestamp || run.ended_at;
      if (event.timestamp) run.duration_s = elapsed(run, event.timestamp);
      return true;
    case 'training_failed':
      run.status = failedStatus(event);
      if (event.model_name) run.model_name = event.model_name;
      run.ended_at = event.timestamp || run.ended_at;
      if (event.timestamp) run.duration_s = elapsed(run, event.timestamp);
      return true;
    case 'run_state':
      return applyRunState(run, event);
    case 'run_params':
      run.params = { ...(run.params || {}), ...(event.params || {}) };
      if (event.model_name) run.model_name = event.model_name;
      if (event.group) run.group = event.group;
      if (Number.isInteger(event.group_size) && event.group_size > 0) run.group_size = event.group_size;
      if (event.metadata && typeof event.metadata === 'object') {
        run.metadata = { ...(run.metadata || {}), ...event.metadata };
      }
      return true;
    default:
      return false;
  }
}

/** The event types that change a run record. */
export const RUN_EVENTS = ['training_progress', 'training_completed', 'training_failed', 'run_params', 'run_state'];

/** Whether a metric is better when lower (losses, errors). */
export const lowerIsBetter = (key) => /loss|error|err\b|mse|mae|rmse|perplexity/i.test(key);
