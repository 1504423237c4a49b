// Model card (model_deployed, model_status_change) and predictions card (prediction_volume).

import {
  animateNumber, byId, fmtFraction, fmtInt, fmtRate, h, isNum, replaceChildren, replay, setText,
  setTime,
} from './dom.js';
import { icon } from './icons.js';
import { publish, requestAction, runControl, toast } from './notify.js';

export const STATUS_TEXT = {
  active: 'Deployed & Active',
  training: 'Training',
  error: 'Error — needs attention',
  inactive: 'Inactive',
};

/** Which model-card actions each status allows. */
export const ACTIONS_BY_STATUS = {
  active: { retrain: true, deactivate: true, activate: false },
  training: { retrain: false, deactivate: false, activate: false },
  error: { retrain: true, deactivate: true, activate: true },
  inactive: { retrain: true, deactivate: false, activate: true },
};

const keyOf = (m) => m.model_id || m.model_name || 'model';
const GLOBAL = '__predictions__';
const MAX_OTHERS = 5;

function versionOf(model) {
  if (model.model_version) return model.model_version;
  const match = /\bv\d+(?:\.\d+)*\b/i.exec(model.model_name || '');
  return match ? match[0] : '';
}

export class ModelView {
  constructor(manager) {
    this.models = new Map(); // in the server's order: most recently deployed last
    this.selected = null; // a model the user picked from "other models"
    this.el = {
      name: byId('model-name'), version: byId('model-version'), id: byId('model-id'),
      dot: byId('model-dot'), status: byId('model-status-text'), accuracy: byId('model-accuracy'),
      health: byId('model-health'), healthBar: byId('model-health-bar'),
      deployed: byId('model-deployed'), lastPrediction: byId('model-last-prediction'),
      others: byId('other-models'), card: byId('model-card'),
      retrain: byId('action-retrain'), deactivate: byId('action-deactivate'), activate: byId('action-activate'),
      total: byId('pred-total'), rate: byId('pred-rate'), predModel: byId('pred-model'),
      milestone: byId('pred-milestone'), milestoneText: byId('pred-milestone-text'),
    };
    byId('pred-milestone-icon').replaceChildren(icon('milestone'));
    this.el.retrain.addEventListener('click', () => this.control('retrain'));
    this.el.deactivate.addEventListener('click', () => this.control('deactivate'));
    this.el.activate.addEventListener('click', () => this.control('activate'));
    this.unsubscribe = [
      manager.addWebSocketHandler('snapshot', (s) => this.applySnapshot(s)),
      manager.addWebSocketHandler('model_deployed', (e) => this.onDeployed(e)),
      manager.addWebSocketHandler('model_status_change', (e) => this.onStatus(e)),
      manager.addWebSocketHandler('prediction_volume', (e) => this.onVolume(e)),
    ];
    this.render();
  }

  destroy() {
    this.unsubscribe.forEach((off) => off());
  }

  /** The current model, as the server picks it: the latest deployed active one, else the latest. */
  currentKey() {
    const keys = [...this.models.keys()].filter((k) => k !== GLOBAL);
    const active = keys.filter((k) => this.models.get(k).status === 'active');
    const pool = active.length ? active : keys;
    return pool.length ? pool[pool.length - 1] : null;
  }

  /** The model the card shows: the user's pick, else the current model. */
  get primary() {
    return this.selected !== null && this.models.has(this.selected) ? this.selected : this.currentKey();
  }

  applySnapshot(snap) {
    if (!Array.isArray(snap.models)) return;
    const global = this.models.get(GLOBAL);
    this.models = new Map(snap.models.map((m) => [keyOf(m), { ...m }]));
    if (global && !snap.models.length) this.models.set(GLOBAL, global);
    this.render();
  }

  onDeployed(e) {
    const key = keyOf(e);
    const model = { ...(this.models.get(key) || {}) };
    for (const field of ['model_id', 'model_name', 'model_version', 'model_accuracy', 'deployment_timestamp']) {
      if (e[field] !== undefined && e[field] !== null) model[field] = e[field];
    }
    model.deployment_timestamp = model.deployment_timestamp || e.timestamp || new Date().toISOString();
    model.status = 'active';
    this.models.delete(key);
    this.models.set(key, model); // most recently deployed last, as on the server
    this.selected = null;
    replay(this.el.card, 'flash');
    this.render();
  }

  onStatus(e) {
    const key = e.model_id || this.primary;
    if (!key) return;
    const model = { ...(this.models.get(key) || { model_id: e.model_id, model_name: e.model_id }) };
    const changed = model.status !== e.status;
    model.status = e.status;
    if (isNum(e.health_score)) model.health_score = e.health_score;
    if (e.last_prediction) model.last_prediction = e.last_prediction;
    const wasPrimary = key === this.primary;
    this.models.set(key, model);
    if (changed && (wasPrimary || key === this.primary)) replay(this.el.dot, 'pulse');
    this.render();
  }

  onVolume(e) {
    const key = e.model_id || this.currentKey() || GLOBAL;
    const model = { ...(this.models.get(key) || (e.model_id ? { model_id: e.model_id, model_name: e.model_id } : {})) };
    const previousTotal = model.total_predictions;
    const previousAt = model._volumeAt;
    const at = Date.parse(e.timestamp || '') || Date.now();
    model.total_predictions = e.total_predictions;
    if (isNum(e.predictions_per_minute)) model.predictions_per_minute = e.predictions_per_minute;
    else if (isNum(previousTotal) && previousAt && at > previousAt) {
      model.predictions_per_minute = ((e.total_predictions - previousTotal) * 60000) / (at - previousAt);
    }
    model._volumeAt = at;
    if (isNum(e.milestone_reached) && e.milestone_reached > 0 && e.milestone_reached !== model.milestone_reached) {
      const text = e.message || `${fmtInt(e.milestone_reached)} predictions milestone reached!`;
      toast(text, model.model_name || '', 'milestone');
      model.milestone_message = text;
      replay(this.el.milestone, 'pop');
    }
    if (isNum(e.milestone_reached)) model.milestone_reached = e.milestone_reached;
    this.models.set(key, model);
    this.render();
  }

  select(key) {
    this.selected = key;
    this.render();
  }

  async control(action) {
    const model = this.models.get(this.primary);
    if (!model) return;
    const name = model.model_name || model.model_id;
    const button = this.el[action];
    if (action === 'retrain') {
      await runControl(button, () => requestAction('retrain_requested', `Retraining requested: ${name}`,
        `Retraining of ${name} was requested from the dashboard`, { model_id: model.model_id || null, model_name: name }),
      `Retraining requested for ${name}`);
    } else {
      const status = action === 'activate' ? 'active' : 'inactive';
      if (!model.model_id) {
        toast('Cannot change the status', `${name} has no model_id`, 'error');
        return;
      }
      await runControl(button, () => publish({ type: 'model_status_change', status, model_id: model.model_id }),
        `${name} marked ${status}`);
    }
    this.render();
  }

  render() {
    const el = this.el;
    const primary = this.primary;
    const model = this.models.get(primary);
    const real = model && primary !== GLOBAL ? model : null;
    const status = real ? real.status || (real.deployment_timestamp ? 'active' : 'inactive') : 'none';
    setText(el.name, real ? real.model_name || real.model_id : 'No model deployed yet');
    setText(el.version, real ? versionOf(real) : '');
    el.version.hidden = !el.version.textContent;
    setText(el.id, real && real.model_id ? real.model_id : '');
    el.dot.dataset.status = status;
    el.card.dataset.status = status;
    setText(el.status, real ? STATUS_TEXT[status] || status : 'Waiting for a deployment');
    this.setAccuracy(real ? real.model_accuracy : null);
    setText(el.health, real && isNum(real.health_score) ? fmtFraction(real.health_score, 0) : '—');
    const health = real && isNum(real.health_score) ? real.health_score : 0;
    el.healthBar.style.width = `${Math.round(health * 100)}%`;
    el.healthBar.dataset.level = health >= 0.8 ? 'ok' : health >= 0.5 ? 'warn' : 'crit';
    setTime(el.deployed, real ? real.deployment_timestamp : null);
    setTime(el.lastPrediction, real ? real.last_prediction : null);
    const allowed = ACTIONS_BY_STATUS[status] || { retrain: false, deactivate: false, activate: false };
    for (const action of ['retrain', 'deactivate', 'activate']) {
      const button = el[action];
      if (button.getAttribute('aria-busy')) continue;
      button.disabled = !allowed[action];
      button.title = allowed[action] ? '' : real ? `Not available while the model is ${status}` : 'No model deployed';
    }
    this.renderOthers(primary);
    this.renderPredictions(real);
  }

  setAccuracy(value) {
    const text = isNum(value) ? fmtFraction(value) : '—';
    if (this.el.accuracy.textContent !== text && this.el.accuracy.textContent !== '—') replay(this.el.accuracy, 'scale');
    setText(this.el.accuracy, text);
  }

  /** The other models, most recently deployed first (at most MAX_OTHERS, then "+N more"). */
  renderOthers(primary) {
    const others = [...this.models.entries()].filter(([key]) => key !== primary && key !== GLOBAL).reverse();
    this.el.others.hidden = !others.length;
    const items = others.slice(0, MAX_OTHERS).map(([key, m]) => h('li', {},
      h('button', {
        type: 'button', class: 'other-model', onclick: () => this.select(key),
        'aria-label': `Show ${m.model_name || m.model_id} (${STATUS_TEXT[m.status] || m.status || 'unknown'})`,
      },
      h('span', { class: 'dot', dataset: { status: m.status || 'inactive' }, 'aria-hidden': 'true' }),
      h('span', { class: 'other-name' }, m.model_name || m.model_id),
      h('span', { class: 'other-acc' }, isNum(m.model_accuracy) ? fmtFraction(m.model_accuracy) : ''))));
    if (others.length > MAX_OTHERS) items.push(h('li', { class: 'muted small' }, `+${others.length - MAX_OTHERS} more`));
    replaceChildren(this.el.others, items);
  }

  renderPredictions(model) {
    const m = model || this.models.get(GLOBAL) || {};
    const total = isNum(m.total_predictions) ? m.total_predictions : null;
    if (total === null) setText(this.el.total, '—');
    else animateNumber(this.el.total, total, fmtInt, 900);
    setText(this.el.rate, isNum(m.predictions_per_minute) ? fmtRate(m.predictions_per_minute) : '—');
    setText(this.el.predModel, model ? model.model_name || model.model_id || '' : '');
    const milestone = isNum(m.milestone_reached) && m.milestone_reached > 0;
    this.el.milestone.hidden = !milestone;
    if (milestone) {
      setText(this.el.milestoneText, m.milestone_message || `${fmtInt(m.milestone_reached)} predictions milestone reached`);
    }
  }
}
