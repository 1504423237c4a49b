// System alerts: ordered by priority (high, medium, low) then newest, each with its actions and
// a dismiss control. The badge counts exactly the alerts listed.
//
// * The server monitor's resource warnings (`source: "monitoring_service"`,
//   `alert_type: "resource_warning"`) close when a `health_change` (or the snapshot's health)
//   drops below their level: a high-priority (critical) one once health is `warning` or
//   `healthy`, the others once it is `healthy` (health is the worst resource's level, so none of
//   them still applies). A machine whose CPU hovers around a threshold raises a new alert at each
//   crossing; this keeps the panel to the ones that still hold.
// * An alert rule's clearing alert (`clears: <id>`, docs/alerts.md) closes the alert it names;
//   it is itself low priority and auto-dismissed.
// * `auto_dismiss` alerts leave `alertAutoDismissMs` after their timestamp, so one that is
//   already older (in the snapshot of a reloaded page, in a replay) does not show up again.
//
// The list is rendered by key: an alert's element is built once and kept (moved into place when
// the order changes), so a new alert never rebuilds the others. Only an alert that arrives live
// is highlighted, and never by fading it in from transparent: a page that is not painting (a
// background tab, a screenshot taken right after an update) must still show every alert the
// badge counts.

import { byId, h, humanize, placeChildren, serverNow, setText, timeEl } from './dom.js';
import { requestAction, runControl, toast } from './notify.js';

export const PRIORITY_RANK = { high: 0, medium: 1, low: 2 };
export const MONITOR_SOURCE = 'monitoring_service';
const HEALTH_LEVEL = { healthy: 0, warning: 1, critical: 2 };

const rank = (alert) => PRIORITY_RANK[alert.priority] ?? 1;
const time = (alert) => Date.parse(alert.timestamp || '') || 0;

/** Whether system health `health` means the monitor's resource warning `alert` no longer applies. */
export function resolvedBy(alert, health) {
  const level = HEALTH_LEVEL[health];
  if (level === undefined || alert.alert_type !== 'resource_warning' || alert.source !== MONITOR_SOURCE) {
    return false;
  }
  return (alert.priority === 'high' ? 2 : 1) > level;
}

export class AlertsView {
  constructor(manager, config) {
    this.config = config;
    this.alerts = new Map(); // id → alert, every open one
    this.nodes = new Map(); // id → {alert, node}: the element drawn for that version of the alert
    this.dismissed = new Set(); // ids dismissed, expired or resolved: never shown again
    this.timers = new Map();
    this.deadlines = new Map();
    this.health = null;
    this.list = byId('alerts');
    this.empty = byId('alerts-empty');
    this.count = byId('alerts-count');
    this.unsubscribe = [
      manager.addWebSocketHandler('snapshot', (s) => this.applySnapshot(s)),
      manager.addWebSocketHandler('system_alert', (e) => this.onAlert(e)),
      manager.addWebSocketHandler('health_change', (e) => this.onHealth(e.current_health)),
    ];
    this.render();
  }

  destroy() {
    this.unsubscribe.forEach((off) => off());
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }

  applySnapshot(snap) {
    const health = snap.health && snap.health.current_health;
    if (health) this.health = health;
    if (!Array.isArray(snap.alerts)) {
      if (health) this.onHealth(health);
      return;
    }
    const next = new Map();
    for (const alert of snap.alerts) { // newest first: a repeated id keeps its newest version
      if (alert && alert.id && !this.dismissed.has(alert.id) && !next.has(alert.id)) {
        next.set(alert.id, alert);
      }
    }
    for (const id of this.timers.keys()) if (!next.has(id)) this.forget(id);
    this.alerts = next;
    for (const alert of [...next.values()]) this.admit(alert);
    this.render();
  }

  onAlert(e) {
    const alert = e.alert;
    if (typeof e.clears === 'string' && this.alerts.has(e.clears)) { // an alert rule's clear
      this.close(e.clears);
      this.render();
    }
    if (!alert || !alert.id || this.dismissed.has(alert.id)) return;
    const known = this.alerts.has(alert.id);
    this.alerts.set(alert.id, { ...alert, timestamp: alert.timestamp || e.timestamp });
    if (!this.admit(this.alerts.get(alert.id))) {
      if (known) this.render();
      return;
    }
    this.render(known ? null : alert.id);
    if (!known && alert.priority === 'high') toast(alert.title, alert.message || '', 'error');
  }

  /** New system health: close the monitor's resource warnings it rules out. */
  onHealth(health) {
    if (!health || !(health in HEALTH_LEVEL)) return;
    this.health = health;
    const resolved = [...this.alerts.values()].filter((a) => resolvedBy(a, health));
    if (!resolved.length) return;
    for (const alert of resolved) this.close(alert.id);
    this.render();
  }

  /** Keep `alert` open unless health or its age rules it out; returns whether it stays. */
  admit(alert) {
    if (resolvedBy(alert, this.health)) {
      this.close(alert.id);
      return false;
    }
    if (!alert.auto_dismiss || this.timers.has(alert.id)) return true;
    const total = this.config.alertAutoDismissMs;
    const raised = Date.parse(alert.timestamp || '');
    const left = Number.isFinite(raised) ? Math.min(total, raised + total - serverNow()) : total;
    if (left <= 0) {
      this.close(alert.id);
      return false;
    }
    this.deadlines.set(alert.id, Date.now() + left);
    this.timers.set(alert.id, setTimeout(() => this.dismiss(alert.id), left));
    return true;
  }

  forget(id) {
    clearTimeout(this.timers.get(id));
    this.timers.delete(id);
    this.deadlines.delete(id);
  }

  /** Remove an alert for good (without drawing). */
  close(id) {
    this.forget(id);
    this.dismissed.add(id);
    this.alerts.delete(id);
  }

  dismiss(id) {
    this.close(id);
    this.render();
  }

  async act(alert, action, button) {
    await runControl(button, () => requestAction('alert_action', `${action}: ${alert.title}`,
      `"${action}" was requested from the dashboard for the alert "${alert.title}"`,
      { alert_id: alert.id, action, alert_type: alert.alert_type || null }),
    `${action} requested`);
  }

  /** Draw the list and the badge from `this.alerts`; `entering` is the id of a new live alert. */
  render(entering = null) {
    const ordered = [...this.alerts.values()].sort((a, b) => rank(a) - rank(b) || time(b) - time(a));
    for (const id of [...this.nodes.keys()]) if (!this.alerts.has(id)) this.nodes.delete(id);
    const nodes = ordered.map((alert) => {
      const drawn = this.nodes.get(alert.id);
      if (drawn && drawn.alert === alert) return drawn.node;
      const node = this.item(alert);
      if (alert.id === entering) node.classList.add('entering');
      this.nodes.set(alert.id, { alert, node });
      return node;
    });
    placeChildren(this.list, nodes);
    this.empty.hidden = ordered.length > 0;
    const high = ordered.filter((a) => a.priority === 'high').length;
    setText(this.count, ordered.length ? `${ordered.length}${high ? ` · ${high} high` : ''}` : '0');
    this.count.dataset.level = high ? 'crit' : ordered.length ? 'warn' : 'ok';
  }

  item(alert) {
    const priority = PRIORITY_RANK[alert.priority] === undefined ? 'medium' : alert.priority;
    const actions = (Array.isArray(alert.actions) ? alert.actions : []).map((action) => {
      const button = h('button', { type: 'button', class: 'btn btn-small' }, action);
      button.addEventListener('click', () => this.act(alert, action, button));
      return button;
    });
    const close = h('button', { type: 'button', class: 'icon-button', 'aria-label': `Dismiss alert: ${alert.title}` }, '×');
    close.addEventListener('click', () => this.dismiss(alert.id));
    const meta = [alert.source, humanize(alert.alert_type)].filter(Boolean).join(' · ');
    return h('li', { class: 'alert', dataset: { priority, alertId: alert.id } },
      h('div', { class: 'alert-head' },
        h('span', { class: 'priority', dataset: { priority } }, humanize(priority)),
        h('strong', { class: 'alert-title' }, alert.title),
        alert.timestamp ? timeEl(alert.timestamp) : null, close),
      alert.message ? h('p', { class: 'alert-message' }, alert.message) : null,
      meta ? h('p', { class: 'alert-meta' }, meta) : null,
      actions.length ? h('div', { class: 'actions' }, actions) : null,
      alert.auto_dismiss ? this.countdown(alert.id) : null);
  }

  /** A bar that shrinks until the alert dismisses itself (resumes where it was on re-render). */
  countdown(id) {
    const total = this.config.alertAutoDismissMs;
    const left = Math.max(0, (this.deadlines.get(id) || Date.now() + total) - Date.now());
    return h('div', {
      class: 'auto-dismiss', title: 'Dismisses automatically',
      style: { animationDuration: `${total}ms`, animationDelay: `${left - total}ms` },
    });
  }
}
