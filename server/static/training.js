// Training runs: one panel per run (several can be live), fed by training_progress,
// training_completed and training_failed, and seeded from the snapshot's runs (with points).

import { byId, fmtFraction, isNum, setText } from './dom.js';
import { publish, requestAction, runControl, toast, uid } from './notify.js';
import { RunPanel } from './runpanel.js';
import { ENDED_STATES, failedStatus, reopens, statusOfState } from './runsdata.js';
import { StopButton } from './stopbutton.js';

const MAX_POINTS = 400;
const STALLED_ALERT = 'training_stalled';

/** Keep at most MAX_POINTS chart points, thinning the older half so the whole run stays visible. */
export function capPoints(points) {
  if (points.length <= MAX_POINTS) return points;
  const half = Math.floor(points.length / 2);
  return points.slice(0, half).filter((_, i) => i % 2 === 0).concat(points.slice(half));
}

function pointOf(e) {
  const point = {
    seq: e.seq, progress: e.progress, epoch: e.current_epoch, step: e.current_step,
    loss: e.current_loss, accuracy: e.current_accuracy, metrics: e.metrics || null,
  };
  const useful = isNum(point.loss) || isNum(point.accuracy) || (point.metrics && Object.keys(point.metrics).length);
  return useful ? point : null;
}

function versionOf(name) {
  const match = /\bv\d+(?:\.\d+)*\b/i.exec(name || '');
  return match ? match[0] : undefined;
}

export class TrainingView {
  /**
   * @param {object} manager the WebSocketManager
   * @param {object} config settings (celebrationMs, finishedRunsShown)
   * @param {(modelId: string) => boolean} isDeployed whether a model id is deployed already
   */
  constructor(manager, config, isDeployed) {
    this.config = config;
    this.isDeployed = isDeployed;
    this.runs = new Map();
    this.panels = new Map();
    this.hidden = new Set();
    this.showOlder = false;
    this.order = 0;
    this.list = byId('runs');
    this.empty = byId('runs-empty');
    this.count = byId('runs-count');
    this.olderButton = byId('runs-older');
    this.olderButton.addEventListener('click', () => {
      this.showOlder = !this.showOlder;
      this.layout();
    });
    this.unsubscribe = [
      manager.addWebSocketHandler('snapshot', (s) => this.applySnapshot(s)),
      manager.addWebSocketHandler('training_progress', (e) => this.onProgress(e)),
      manager.addWebSocketHandler('training_completed', (e) => this.onCompleted(e)),
      manager.addWebSocketHandler('training_failed', (e) => this.onFailed(e)),
      manager.addWebSocketHandler('system_alert', (e) => this.onAlert(e)),
      manager.addWebSocketHandler('run_state', (e) => this.onState(e)),
    ];
    this.layout();
  }

  destroy() {
    this.unsubscribe.forEach((off) => off());
    for (const panel of this.panels.values()) panel.destroy();
    this.panels.clear();
  }

  applySnapshot(snap) {
    if (!Array.isArray(snap.runs)) return;
    const next = new Map();
    for (const run of snap.runs) {
      if (!run || !run.run_id) continue;
      const known = this.runs.get(run.run_id);
      next.set(run.run_id, {
        ...run, progress: run.progress || {}, points: capPoints([...(run.points || [])]),
        _order: known ? known._order : 0,
      });
    }
    // Runs new to this page are ordered by their last update, oldest first.
    [...next.values()].filter((run) => !run._order)
      .sort((a, b) => (Date.parse(a.updated || '') || 0) - (Date.parse(b.updated || '') || 0))
      .forEach((run) => { this.order += 1; run._order = this.order; });
    for (const [key, panel] of this.panels) {
      if (!next.has(key)) {
        panel.destroy();
        this.panels.delete(key);
      }
    }
    this.runs = next;
    for (const key of this.runs.keys()) this.renderRun(key);
    this.layout();
  }

  /** The run an event belongs to, as the server decides: run_id, else model_name, else "default". */
  keyFor(e) {
    return e.run_id || e.model_name || 'default';
  }

  ensure(key, e) {
    let run = this.runs.get(key);
    if (!run) {
      this.order += 1;
      run = {
        run_id: key, model_name: e.model_name || null, status: 'running', progress: {},
        completed: null, failed: null, points: [], _order: this.order,
      };
      this.runs.set(key, run);
    }
    if (e.model_name) run.model_name = e.model_name;
    run.updated = e.timestamp || new Date().toISOString();
    this.hidden.delete(key);
    return run;
  }

  onProgress(e) {
    const key = this.keyFor(e);
    const run = this.ensure(key, e);
    if (ENDED_STATES.has(run.status)) {
      // A finished run stays finished (as on the server): a late event of the ended attempt.
      // A new attempt reopens it first (the server's run_state, `onState`).
      this.renderRun(key);
      return;
    }
    const { type: _type, seq: _seq, ...fields } = e;
    run.progress = { ...run.progress, loss_not_finite: null, ...fields };
    // a NaN/Inf loss (docs/protocol.md) has no current_loss: the last finite one is not current
    if (fields.loss_not_finite) delete run.progress.current_loss;
    run.status = 'running'; // also ends "stalled" and "crashed": the run reports again
    run.stateReason = null;
    const point = pointOf(e);
    if (point && !(isNum(point.seq) && run.points.some((p) => p.seq === point.seq))) {
      run.points = capPoints([...run.points, point]);
    }
    this.renderRun(key);
    this.layout();
  }

  onCompleted(e) {
    const key = this.keyFor(e);
    const run = this.ensure(key, e);
    run.completed = { ...e };
    run.failed = null;
    run.status = 'completed';
    const panel = this.renderRun(key);
    panel.celebrate(this.config.celebrationMs);
    panel.render(run, this.deployedFor(run));
    const name = run.model_name || e.model_id || key;
    toast(`Training completed: ${name}`,
      isNum(e.final_accuracy) ? `Final accuracy ${fmtFraction(e.final_accuracy)}` : e.message || '', 'success');
    this.layout();
  }

  onFailed(e) {
    const key = this.keyFor(e);
    const run = this.ensure(key, e);
    run.failed = { ...e, suggestions: Array.isArray(e.suggestions) ? e.suggestions : [] };
    run.completed = null;
    run.status = failedStatus(e);
    const panel = this.renderRun(key);
    panel.retried = false;
    toast(`Training failed: ${run.model_name || key}`, `${e.error_code ? `${e.error_code}: ` : ''}${e.error || ''}`, 'error');
    this.layout();
  }

  /** The server's stall watchdog names the run in a `training_stalled` alert. */
  onAlert(e) {
    const run = e.run_id && this.runs.get(e.run_id);
    if (!run || !e.alert || e.alert.alert_type !== STALLED_ALERT || run.status !== 'running') return;
    run.status = 'stalled';
    this.renderRun(e.run_id);
    this.layout();
  }

  /** The server's word on a run's state (stalled, crashed, running again, ...). */
  onState(e) {
    const key = this.keyFor(e);
    const run = this.runs.get(key);
    const status = statusOfState(e.state);
    if (!run || !status) return;
    const reopened = reopens(run, e); // a new attempt of the ended run started (same run_id)
    if (ENDED_STATES.has(run.status) && !reopened) return;
    if (status === 'stalled' && run.status !== 'running') return; // a late stall of a crash
    run.status = status;
    run.stateReason = e.reason || null;
    if (reopened) {
      run.completed = null;
      run.failed = null;
      this.hidden.delete(key);
    }
    this.renderRun(key);
    this.layout();
  }

  deployedFor(run) {
    const id = run.completed && run.completed.model_id;
    return Boolean(id && this.isDeployed(id));
  }

  renderRun(key) {
    let panel = this.panels.get(key);
    if (!panel) {
      panel = new RunPanel({
        onRetry: (run, button) => this.retry(run, button),
        onDeploy: (run, button) => this.deploy(run, button),
        onDismiss: (run) => {
          this.hidden.add(run.run_id);
          this.layout();
        },
        runHref: (run) => {
          const token = this.config.token ? `?token=${encodeURIComponent(this.config.token)}` : '';
          return `/runs/${encodeURIComponent(run.run_id)}${token}`;
        },
      });
      // Stop (a live run): POST /api/runs/{id}/stop; "Stopping…" until the completion arrives.
      panel.stop = new StopButton(this.config, key, { onError: (err) => toast('Stop failed', err.message, 'error') });
      panel.root.querySelector('.run-head-right').prepend(panel.stop.element);
      this.panels.set(key, panel);
    }
    panel.render(this.runs.get(key), this.deployedFor(this.runs.get(key)));
    panel.stop.update(this.runs.get(key));
    return panel;
  }

  /** Re-render completion panels (the deployed models changed). */
  refreshDeployState() {
    for (const [key, run] of this.runs) if (run.status === 'completed') this.renderRun(key);
  }

  async retry(run, button) {
    const name = run.model_name || run.run_id;
    const f = run.failed || {};
    await runControl(button, () => requestAction('retry_requested', `Retry requested: ${name}`,
      `Retry of run ${run.run_id} after ${f.error_code || 'an error'} was requested from the dashboard`,
      { run_id: run.run_id, model_name: name, error_code: f.error_code || null, stage_failed: f.stage_failed || null }),
    `Retry requested for ${name}`);
    const panel = this.panels.get(run.run_id);
    if (panel) {
      panel.retried = true;
      button.disabled = true;
      setText(button, 'Retry requested');
    }
  }

  async deploy(run, button) {
    const c = run.completed || {};
    const name = c.model_name || run.model_name || c.model_id || run.run_id;
    const event = {
      type: 'model_deployed', event_id: uid('deploy'), model_name: name,
      model_version: versionOf(name), deployment_timestamp: new Date().toISOString(),
    };
    if (c.model_id) event.model_id = c.model_id;
    if (isNum(c.final_accuracy)) event.model_accuracy = c.final_accuracy;
    let ok = false;
    await runControl(button, async () => {
      await publish(event);
      ok = true;
    }, `Deployed ${name}`);
    if (ok) {
      button.disabled = true;
      setText(button, 'Deployed ✓');
    }
  }

  /**
   * Order panels and fold older finished runs: live runs first, newest started on top (a stable
   * order, so two live runs never swap places), then finished runs, most recently updated first.
   */
  layout() {
    const time = (run) => Date.parse(run.updated || '') || 0;
    const live = (run) => run.status === 'running' || run.status === 'stalled';
    const ordered = [...this.runs.entries()]
      .filter(([key]) => !this.hidden.has(key))
      .sort(([, a], [, b]) => (live(b) - live(a))
        || (live(a) ? b._order - a._order : time(b) - time(a) || b._order - a._order));
    let finished = 0;
    let folded = 0;
    const visible = [];
    for (const [key, run] of ordered) {
      if (!live(run)) finished += 1;
      const fold = !live(run) && finished > this.config.finishedRunsShown && !this.showOlder;
      if (fold) folded += 1;
      else visible.push(this.panels.get(key).root);
    }
    const current = [...this.list.children];
    if (current.length !== visible.length || current.some((el, i) => el !== visible[i])) {
      this.list.replaceChildren(...visible);
    }
    this.empty.hidden = ordered.length > 0;
    const liveCount = ordered.filter(([, run]) => live(run)).length;
    setText(this.count, `${liveCount} live · ${ordered.length} total`);
    this.olderButton.hidden = folded === 0 && !this.showOlder;
    setText(this.olderButton, this.showOlder ? 'Show fewer runs' : `Show ${folded} older run${folded === 1 ? '' : 's'}`);
  }
}
