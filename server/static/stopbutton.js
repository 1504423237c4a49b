// "Stop" on a live run: after a confirmation, `POST /api/runs/{run_id}/stop` (with the
// dashboard's token, which must be the publisher token on a server that has one). The server
// sends the request down the run's own publisher connection; the button then says "Stopping…"
// until the run's `training_completed` / `training_failed` arrives on the stream (push: the
// caller passes each new run state to `update`, nothing is polled).

import { h, setText } from './dom.js';

/** Ask the server to stop `runId`; resolves to its 202 body or rejects with its error. */
export async function requestStop(config, runId) {
  const headers = { Accept: 'application/json' };
  if (config.token) headers.Authorization = `Bearer ${config.token}`;
  const response = await fetch(`/api/runs/${encodeURIComponent(runId)}/stop`, {
    method: 'POST', headers, credentials: 'same-origin', cache: 'no-store',
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const detail = body && body.error ? body.error : `HTTP ${response.status}`;
    throw new Error(response.status === 401 ? `${detail} (open the dashboard with ?token=<publisher token>)` : detail);
  }
  return body;
}

const LIVE = new Set(['running', 'stalled']);

/** A Stop button for one run; `update(run)` shows it while the run is live. */
export class StopButton {
  constructor(config, runId, { onError = null, className = 'btn btn-small btn-danger' } = {}) {
    this.config = config;
    this.runId = runId;
    this.onError = onError;
    this.stopping = false;
    this.element = h('button', {
      type: 'button', class: className, hidden: true, dataset: { role: 'stop-run' },
      'aria-label': `Stop run ${runId}`,
    }, 'Stop');
    this.element.addEventListener('click', () => this.click());
  }

  async click() {
    if (this.stopping) return;
    if (!window.confirm(`Stop run ${this.runId}? It ends at its next step, as completed.`)) return;
    this.stopping = true;
    this.element.disabled = true;
    this.element.setAttribute('aria-busy', 'true');
    setText(this.element, 'Stopping…');
    try {
      await requestStop(this.config, this.runId);
    } catch (err) {
      this.stopping = false;
      this.element.disabled = false;
      this.element.removeAttribute('aria-busy');
      setText(this.element, 'Stop');
      if (this.onError) this.onError(err);
    }
  }

  /** The run's current state (from the stream): hidden once it has ended. */
  update(run) {
    const live = Boolean(run) && LIVE.has(run.status);
    this.element.hidden = !live;
    if (!live && this.stopping) {
      this.stopping = false;
      this.element.removeAttribute('aria-busy');
    }
  }
}
