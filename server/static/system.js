// Live system status: system_metrics (accuracy, predictions/min with trend, health, CPU/memory/
// disk bars, connections, response times) and health_change (reason, recommended action).

import {
  byId, fmtCompact, fmtFraction, fmtPercent, fmtRate, h, humanize, isNum, replaceChildren, replay, setText,
  setTime, svg,
} from './dom.js';
import { icon } from './icons.js';
import { toast } from './notify.js';

export const HEALTH = {
  healthy: { icon: 'ok', text: 'Healthy' },
  warning: { icon: 'warning', text: 'Warning' },
  critical: { icon: 'critical', text: 'Critical' },
};

/** Icon and text of a health value: ✅ Healthy, ⚠️ Warning, 🚨 Critical. */
function healthLabel(value) {
  const known = HEALTH[value];
  return known ? [icon(known.icon), ` ${known.text}`] : [humanize(value)];
}

const METRIC_LABEL = { cpu_percent: 'CPU', memory_percent: 'Memory', disk_percent: 'Disk' };

/** Color level of a resource percentage: ok below 70, warn below 90, crit above. */
export const levelOf = (percent) => (percent >= 90 ? 'crit' : percent >= 70 ? 'warn' : 'ok');

const RESOURCES = ['cpu', 'memory', 'disk'];
const SPARK_SAMPLES = 60;
const MAX_HISTORY = 5;

export class SystemView {
  constructor(manager) {
    this.health = null;
    this.rate = null;
    this.history = [];
    this.samples = [];
    this.el = {
      accuracy: byId('live-accuracy'), predictions: byId('live-predictions'), trend: byId('live-trend'),
      healthBadge: byId('system-health'), healthIcon: byId('system-health-icon'), healthText: byId('system-health-text'),
      connections: byId('connections'), api: byId('api-latency'), ws: byId('ws-latency'),
      updated: byId('system-updated'),
      changeBox: byId('health-change'), changeFrom: byId('health-from'), changeTo: byId('health-to'),
      reason: byId('health-reason'), action: byId('health-action'), metrics: byId('health-metrics'),
      changeTime: byId('health-time'), historyList: byId('health-history'), healthEmpty: byId('health-empty'),
      spark: byId('rate-spark'), sparkRange: byId('spark-range'),
    };
    for (const name of RESOURCES) {
      this.el[`${name}Bar`] = byId(`${name}-bar`);
      this.el[`${name}Fill`] = byId(`${name}-fill`);
      this.el[`${name}Value`] = byId(`${name}-value`);
    }
    this.unsubscribe = [
      manager.addWebSocketHandler('snapshot', (s) => this.applySnapshot(s)),
      manager.addWebSocketHandler('system_metrics', (e) => this.onMetrics(e)),
      manager.addWebSocketHandler('health_change', (e) => this.onHealthChange(e, true)),
    ];
  }

  destroy() {
    this.unsubscribe.forEach((off) => off());
  }

  applySnapshot(snap) {
    if ('system' in snap && snap.system) this.onMetrics(snap.system);
    if ('health' in snap && snap.health) {
      if (snap.health.reason || snap.health.previous_health) this.onHealthChange(snap.health, false);
      else this.setHealth(snap.health.current_health);
    }
    if (isNum(snap.connections) && !(snap.system && isNum(snap.system.active_connections))) {
      this.setConnections(snap.connections);
    }
  }

  onMetrics(e) {
    const accuracy = isNum(e.current_accuracy) ? e.current_accuracy : e.model_accuracy;
    if (isNum(accuracy)) {
      const text = fmtFraction(accuracy);
      if (this.el.accuracy.textContent !== text) {
        setText(this.el.accuracy, text);
        replay(this.el.accuracy, 'scale');
      }
    }
    const rate = isNum(e.predictions_per_minute) ? e.predictions_per_minute : e.prediction_rate;
    if (isNum(rate)) {
      this.setRate(rate);
      this.samples.push(rate);
      if (this.samples.length > SPARK_SAMPLES) this.samples.shift();
      this.drawSpark();
    }
    if (e.current_health) this.setHealth(e.current_health);
    for (const name of RESOURCES) {
      const value = e[`${name}_percent`];
      if (isNum(value)) this.setResource(name, value);
    }
    if (isNum(e.active_connections)) this.setConnections(e.active_connections);
    if (isNum(e.api_response_time_ms)) setText(this.el.api, `${Math.round(e.api_response_time_ms)} ms`);
    if (isNum(e.ws_response_time_ms)) setText(this.el.ws, `${Math.round(e.ws_response_time_ms)} ms`);
    setTime(this.el.updated, e.timestamp || new Date().toISOString());
  }

  setRate(rate) {
    setText(this.el.predictions, fmtCompact(rate));
    this.el.predictions.title = `${fmtRate(rate)} predictions per minute`;
    const trend = this.el.trend;
    if (this.rate !== null) {
      const delta = rate - this.rate;
      const sign = delta > 0 ? 'up' : delta < 0 ? 'down' : 'flat';
      const arrow = { up: '↗️', down: '↘️', flat: '→' }[sign];
      setText(trend, `${arrow} ${delta > 0 ? '+' : ''}${fmtCompact(delta)}`);
      trend.dataset.trend = sign;
      trend.setAttribute('aria-label', `${sign === 'flat' ? 'unchanged' : `${sign} by ${fmtRate(Math.abs(delta))}`} since the previous sample`);
    }
    this.rate = rate;
  }

  /** Predictions/min over the recent samples, as an area sparkline. */
  drawSpark() {
    const values = this.samples;
    this.el.spark.classList.toggle('is-empty', values.length < 2);
    const max = Math.max(1, ...values);
    const n = values.length;
    const y = (v) => 38 - (v / max) * 34;
    const pts = n === 1 ? [[0, y(values[0])], [100, y(values[0])]] : values.map((v, i) => [(i / (n - 1)) * 100, y(v)]);
    const line = pts.map(([px, py], i) => `${i ? 'L' : 'M'}${px.toFixed(2)},${py.toFixed(2)}`).join('');
    const area = `${line}L${pts[pts.length - 1][0].toFixed(2)},38L${pts[0][0].toFixed(2)},38Z`;
    this.el.spark.replaceChildren(
      svg('line', { x1: 0, x2: 100, y1: 38, y2: 38, class: 'spark-base' }),
      svg('path', { d: area, class: 'spark-area' }),
      svg('path', { d: line, class: 'spark-line' }),
    );
    const min = Math.min(...values);
    setText(this.el.sparkRange, `${fmtRate(min)}–${fmtRate(Math.max(...values))}`);
    this.el.spark.setAttribute('aria-label', `Predictions per minute over the last ${n} samples: from ${fmtRate(min)} to ${fmtRate(Math.max(...values))}, now ${fmtRate(values[n - 1])}`);
  }

  setHealth(value) {
    const health = HEALTH[value] ? value : null;
    if (!health || health === this.health) return;
    const changed = this.health !== null;
    this.health = health;
    replaceChildren(this.el.healthIcon, icon(HEALTH[health].icon));
    setText(this.el.healthText, HEALTH[health].text);
    this.el.healthBadge.dataset.health = health;
    document.body.dataset.health = health;
    if (changed) replay(this.el.healthBadge, 'pulse');
  }

  setResource(name, value) {
    const clamped = Math.max(0, Math.min(100, value));
    const fill = this.el[`${name}Fill`];
    fill.style.width = `${clamped}%`;
    fill.dataset.level = levelOf(clamped);
    this.el[`${name}Bar`].setAttribute('aria-valuenow', clamped.toFixed(1));
    setText(this.el[`${name}Value`], fmtPercent(value));
  }

  setConnections(n) {
    if (this.el.connections.textContent !== String(n)) {
      setText(this.el.connections, String(n));
      replay(this.el.connections, 'bump');
    }
  }

  onHealthChange(e, live) {
    const previous = e.previous_health || this.health;
    this.setHealth(e.current_health);
    const el = this.el;
    el.changeBox.hidden = false;
    el.healthEmpty.hidden = true;
    el.changeBox.dataset.health = e.current_health;
    replaceChildren(el.changeFrom, previous ? healthLabel(previous) : '—');
    replaceChildren(el.changeTo, healthLabel(e.current_health));
    setText(el.reason, e.reason || 'No reason given');
    setText(el.action, e.recommended_action || '—');
    el.action.parentElement.hidden = !e.recommended_action;
    const metrics = e.metrics && typeof e.metrics === 'object' ? Object.entries(e.metrics) : [];
    replaceChildren(el.metrics, metrics.map(([key, value]) =>
      h('li', { class: 'chip' }, `${METRIC_LABEL[key] || humanize(key.replace(/_percent$/, ''))} `,
        h('b', {}, isNum(value) ? (key.endsWith('_percent') ? fmtPercent(value) : fmtRate(value)) : String(value)))));
    setTime(el.changeTime, e.timestamp || null);
    if (live) {
      this.history.unshift({ ...e, previous_health: previous });
      this.history = this.history.slice(0, MAX_HISTORY);
      this.renderHistory();
      const kind = e.current_health === 'critical' ? 'error' : e.current_health === 'warning' ? 'warning' : 'success';
      toast(`System health: ${HEALTH[e.current_health]?.text || e.current_health}`, e.reason || '', kind);
    }
  }

  renderHistory() {
    replaceChildren(this.el.historyList, this.history.slice(1).map((c) => h('li', { dataset: { health: c.current_health } },
      HEALTH[c.current_health] ? icon(HEALTH[c.current_health].icon) : null,
      h('span', { class: 'history-reason' }, c.reason || humanize(c.current_health)),
      c.timestamp ? h('time', { class: 'ago', dataset: { time: c.timestamp } }) : null)));
    for (const t of this.el.historyList.querySelectorAll('time')) setTime(t, t.dataset.time);
  }
}
