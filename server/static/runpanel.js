// One training run's panel: progress bar, stage pipeline, epoch/loss/ETA, message, live chart,
// the failure state (error, error_code, suggestions, Retry) and the completion summary (Deploy).

import { RunChart } from './chart.js';
import { icon } from './icons.js';
import {
  fmtDuration, fmtFraction, fmtInt, fmtLoss, h, humanize, isNum, replaceChildren, setText, setTime,
} from './dom.js';

export const STAGES = ['data_preparation', 'feature_engineering', 'model_training', 'validation', 'finalization'];

export const STAGE_TEXT = {
  data_preparation: 'Preparing data',
  feature_engineering: 'Engineering features',
  model_training: 'Training model',
  validation: 'Validating model',
  finalization: 'Finalizing model',
};

const STATUS_LABEL = {
  running: 'Running', completed: 'Completed', failed: 'Failed', stalled: 'Stalled',
  interrupted: 'Interrupted', killed: 'Killed', crashed: 'Crashed',
};
/** Statuses that end with a `training_failed` (its error, code and suggestions are shown). */
const FAILED_STATES = new Set(['failed', 'interrupted', 'killed']);
/** `training_progress.loss_not_finite` as the loss stat shows it. */
const NOT_FINITE = Object.freeze({ nan: 'NaN', inf: '+Inf', '-inf': '-Inf' });
const STATE_NOTE = {
  stalled: 'No step from this run for much longer than usual: the training loop may be stuck.',
  crashed: 'The training process vanished (killed by SIGKILL or the out-of-memory killer, or its machine went away).',
};

let panelCount = 0;

function stat(label, key) {
  const value = h('dd', {}, '—');
  return { node: h('div', { class: 'stat', dataset: { stat: key } }, h('dt', {}, label), value), value };
}

export class RunPanel {
  /**
   * @param {object} handlers `{onRetry(run, button), onDeploy(run, button), onDismiss(run),
   *   runHref(run)}` (`runHref`: the link to the run's page, /runs/{run_id})
   */
  constructor(handlers) {
    panelCount += 1;
    const id = `run-${panelCount}`;
    this.handlers = handlers;
    this.run = null;
    this.celebrateTimer = 0;
    const e = {};
    e.title = h('h3', { id: `${id}-title`, class: 'run-title' });
    e.runId = h('span', { class: 'run-id' });
    e.history = h('a', { class: 'run-history small', text: 'History ›' });
    e.badge = h('span', { class: 'badge', role: 'status' });
    e.updated = h('time', { class: 'ago run-updated' });
    e.dismiss = h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Hide this run' }, '×');
    e.dismiss.addEventListener('click', () => this.handlers.onDismiss(this.run));
    e.stageText = h('span', { class: 'stage-text' });
    e.stageKey = h('code', { class: 'stage-key' });
    e.percent = h('span', { class: 'run-percent num' });
    e.bar = h('div', { class: 'progress-fill' });
    e.progress = h('div', {
      class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100,
      'aria-labelledby': `${id}-title`,
    }, e.bar);
    e.pips = STAGES.map((stage) => h('li', { class: 'pip', dataset: { stage } }, h('span', {}, STAGE_TEXT[stage])));
    e.pipeline = h('ol', { class: 'pipeline', 'aria-label': 'Training stages' }, e.pips);
    const epoch = stat('Epoch', 'epoch');
    const loss = stat('Loss', 'loss');
    const eta = stat('ETA', 'eta');
    const accuracy = stat('Accuracy', 'accuracy');
    Object.assign(e, {
      epoch: epoch.value, epochLabel: epoch.node.firstChild, loss: loss.value, eta: eta.value,
      accuracy: accuracy.value,
    });
    e.message = h('p', { class: 'run-message' });
    e.stalled = h('p', { class: 'run-note warn', hidden: true },
      'No events from this run for a while: the training process may have stopped.');

    e.error = h('p', { class: 'failure-error' });
    e.errorCode = h('code', { class: 'chip chip-error' });
    e.failedWhere = h('span', { class: 'failure-where' });
    e.suggestions = h('ul', { class: 'suggestions' });
    e.retry = h('button', { type: 'button', class: 'btn btn-warning' }, 'Retry training');
    e.retry.addEventListener('click', () => this.handlers.onRetry(this.run, e.retry));
    e.failure = h('section', { class: 'failure', hidden: true, 'aria-label': 'Training failure' },
      h('div', { class: 'failure-head' }, h('strong', {}, 'Training failed'), e.errorCode, e.failedWhere),
      e.error,
      h('p', { class: 'suggestions-title' }, 'Suggestions'), e.suggestions,
      h('div', { class: 'actions' }, e.retry));

    e.doneText = h('span', {});
    e.doneMessage = h('p', { class: 'done-message' }, icon('milestone'), ' ', e.doneText);
    const finalAcc = stat('Final accuracy', 'final_accuracy');
    const valScore = stat('Validation score', 'validation_score');
    const time = stat('Training time', 'training_time');
    const size = stat('Model size', 'model_size');
    const epochs = stat('Epochs', 'total_epochs');
    Object.assign(e, {
      finalAcc: finalAcc.value, valScore: valScore.value, time: time.value, size: size.value,
      epochs: epochs.value,
    });
    e.deploy = h('button', { type: 'button', class: 'btn btn-primary' }, 'Deploy model');
    e.deploy.addEventListener('click', () => this.handlers.onDeploy(this.run, e.deploy));
    e.completion = h('section', { class: 'completion', hidden: true, 'aria-label': 'Training summary' },
      e.doneMessage,
      h('dl', { class: 'stats stats-summary' }, finalAcc.node, valScore.node, time.node, size.node, epochs.node),
      h('div', { class: 'actions' }, e.deploy));

    e.chartBox = h('figure', { class: 'run-chart' });
    this.el = e;
    this.root = h('article', { class: 'run', 'aria-labelledby': `${id}-title` },
      h('header', { class: 'run-head' },
        h('div', { class: 'run-heading' }, e.title, e.runId, e.history),
        h('div', { class: 'run-head-right' }, e.updated, e.badge, e.dismiss)),
      h('div', { class: 'run-body' },
        h('div', { class: 'run-main' },
          h('div', { class: 'stage-row' }, h('span', {}, e.stageText, ' ', e.stageKey), e.percent),
          e.progress, e.pipeline,
          e.stats = h('dl', { class: 'stats' }, epoch.node, loss.node, eta.node, accuracy.node),
          e.message, e.stalled, e.failure, e.completion),
        e.chartBox));
    this.chart = new RunChart(e.chartBox, 'Loss and accuracy');
  }

  destroy() {
    clearTimeout(this.celebrateTimer);
    this.chart.destroy();
    this.root.remove();
  }

  /** Show the completion celebration, then settle to the "Ready" state. */
  celebrate(ms) {
    clearTimeout(this.celebrateTimer);
    this.root.classList.add('celebrate');
    this.celebrateTimer = setTimeout(() => {
      this.root.classList.remove('celebrate');
      if (this.run) this.render(this.run, this.deployed);
    }, ms);
  }

  render(run, deployed = false) {
    this.run = run;
    this.deployed = deployed;
    const e = this.el;
    const p = run.progress || {};
    const status = run.status || 'running';
    const failed = FAILED_STATES.has(status) && run.failed ? run.failed : null;
    const name = run.model_name || p.model_name || (run.completed && run.completed.model_name)
      || (run.failed && run.failed.model_name) || run.run_id;
    this.root.dataset.status = status;
    this.root.dataset.runId = run.run_id;
    setText(e.title, name);
    setText(e.runId, run.run_id && run.run_id !== name ? run.run_id : '');
    e.history.href = this.handlers.runHref(run);
    setText(e.badge, STATUS_LABEL[status] || humanize(status));
    e.badge.dataset.status = status;
    setTime(e.updated, run.updated);
    e.badge.title = run.stateReason || '';
    e.dismiss.hidden = status === 'running';
    this.chart.label = `Loss and accuracy of ${name}`;

    let percent = isNum(p.progress) ? p.progress : null;
    if (status === 'completed') percent = 100;
    if (failed && isNum(failed.progress_when_failed)) percent = failed.progress_when_failed;
    const shown = percent === null ? null : Math.max(0, Math.min(100, percent));
    e.bar.style.width = shown === null ? '' : `${shown}%`;
    e.progress.classList.toggle('indeterminate', shown === null && status === 'running');
    if (shown === null) e.progress.removeAttribute('aria-valuenow');
    else e.progress.setAttribute('aria-valuenow', String(Math.round(shown)));
    e.progress.setAttribute('aria-valuetext', shown === null ? 'In progress' : `${Math.round(shown)}%`);
    setText(e.percent, shown === null ? '—' : `${Math.round(shown)}%`);

    const stage = failed && failed.stage_failed ? failed.stage_failed : p.stage;
    const celebrating = this.root.classList.contains('celebrate');
    let stageText = p.current_stage || STAGE_TEXT[stage] || humanize(stage) || 'Starting';
    if (status === 'completed') stageText = celebrating ? 'Training completed!' : 'Ready';
    if (failed) stageText = `${STATUS_LABEL[status]}: ${STAGE_TEXT[stage] || humanize(stage) || 'training'}`;
    setText(e.stageText, stageText);
    setText(e.stageKey, status === 'completed' ? '' : stage || '');
    const current = STAGES.indexOf(stage);
    e.pips.forEach((pip, i) => {
      let state = 'pending';
      if (status === 'completed' || i < current) state = 'done';
      else if (i === current) state = failed || status === 'crashed' ? 'failed' : 'active';
      pip.dataset.state = state;
      if (state === 'active') pip.setAttribute('aria-current', 'step');
      else pip.removeAttribute('aria-current');
    });

    const total = p.total_epochs ?? (run.completed && run.completed.total_epochs);
    if (!isNum(p.current_epoch) && isNum(p.current_step)) {
      // Runs without epochs (open-ended loops, some estimators) count steps instead.
      setText(e.epochLabel, 'Step');
      setText(e.epoch, `${fmtInt(p.current_step)}${isNum(p.total_steps) ? `/${fmtInt(p.total_steps)}` : ''}`);
    } else {
      setText(e.epochLabel, 'Epoch');
      setText(e.epoch, isNum(p.current_epoch) ? `${p.current_epoch}/${isNum(total) ? total : '?'}` : '—');
    }
    setText(e.loss, NOT_FINITE[p.loss_not_finite] || fmtLoss(p.current_loss));
    setText(e.eta, status === 'running' && isNum(p.estimated_time_remaining) ? fmtDuration(p.estimated_time_remaining) : '—');
    setText(e.accuracy, isNum(p.current_accuracy) ? fmtFraction(p.current_accuracy) : '—');
    setText(e.message, status === 'completed' && run.completed ? '' : p.message || '');
    e.message.hidden = !e.message.textContent;
    e.stalled.hidden = !STATE_NOTE[status];
    if (STATE_NOTE[status]) setText(e.stalled, `${STATE_NOTE[status]}${run.stateReason ? ` (${run.stateReason})` : ''}`);
    e.stats.hidden = status === 'completed' || !Object.keys(p).length;
    const live = status === 'running' || status === 'stalled';
    this.root.classList.toggle('no-chart', !live && !(run.points || []).some((p) => isNum(p.loss) || isNum(p.accuracy)));
    this.chart.emptyText(status === 'running' || status === 'stalled'
      ? 'Waiting for loss and accuracy values…' : 'This run reported no loss or accuracy values.');

    this.renderFailure(failed);
    this.renderCompletion(status === 'completed' ? run.completed || {} : null, deployed);
    this.chart.setPoints(run.points || []);
  }

  renderFailure(f) {
    const e = this.el;
    e.failure.hidden = !f;
    if (!f) return;
    setText(e.error, f.error || 'Unknown error');
    setText(e.errorCode, f.error_code || '');
    e.errorCode.hidden = !f.error_code;
    const where = [];
    if (f.stage_failed) where.push(`during ${(STAGE_TEXT[f.stage_failed] || humanize(f.stage_failed)).toLowerCase()}`);
    if (isNum(f.progress_when_failed)) where.push(`at ${Math.round(f.progress_when_failed)}%`);
    setText(e.failedWhere, where.join(' '));
    const suggestions = Array.isArray(f.suggestions) ? f.suggestions : [];
    replaceChildren(e.suggestions, suggestions.map((s) => h('li', {}, s)));
    e.suggestions.hidden = !suggestions.length;
    e.suggestions.previousElementSibling.hidden = !suggestions.length;
    if (!e.retry.getAttribute('aria-busy') && !this.retried) e.retry.disabled = false;
  }

  renderCompletion(c, deployed) {
    const e = this.el;
    e.completion.hidden = !c;
    if (!c) return;
    setText(e.doneText, c.message || 'Training completed successfully!');
    setText(e.finalAcc, fmtFraction(c.final_accuracy));
    setText(e.valScore, isNum(c.validation_score)
      ? (c.validation_score <= 1 ? fmtFraction(c.validation_score) : String(c.validation_score)) : '—');
    setText(e.time, c.training_time || '—');
    setText(e.size, c.model_size || '—');
    setText(e.epochs, isNum(c.total_epochs) ? fmtInt(c.total_epochs) : '—');
    if (!e.deploy.getAttribute('aria-busy')) {
      e.deploy.disabled = deployed;
      setText(e.deploy, deployed ? 'Deployed ✓' : 'Deploy model');
    }
  }
}
