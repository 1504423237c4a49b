// System alerts: ordered by priority (high, medium, low) then newest, each with its actions and
// a dismiss control; `auto_dismiss` alerts leave on their own after a while.
//
// The list is rendered by key: an alert's element is built once and kept (moved into place when
// the order changes), so a new alert never rebuilds the others. Only an alert that arrives live
// is highlighted, and never by fading it in from transparent: a page that is not painting (a
// background tab, a screenshot taken right after an update) must still show every alert the
// badge counts.

import { byId, h, humanize, placeChildren, setText, timeEl } from './dom.js';
import { requestAction, runControl, toast } from './notify.js';

export const PRIORITY_RANK = { high: 0, medium: 1, low: 2 };

export class AlertsView {
  constructor(manager, config) {
    this.config = config;
    this.alerts = new Map();
    this.nodes = new Map(); // id → {alert, node}: the element drawn for that version of the alert
    this.dismissed = new Set();
    this.timers = new Map();
    this.deadlines = new Map();
    this.list = byId('alerts');
    this.empty = byId('alerts-empty');
    this.count = byId('alerts-count');
    this.unsubscribe = [
      manager.addWebSocketHandler('snapshot', (s) => this.applySnapshot(s)),
      manager.addWebSocketHandler('system_alert', (e) => this.onAlert(e)),
    ];
    this.render();
  }

  destroy() {
    this.unsubscribe.forEach((off) => off());
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }

  applySnapshot(snap) {
    if (!Array.isArray(snap.alerts)) return;
    const next = new Map();
    for (const alert of snap.alerts) { // newest first: a repeated id keeps its newest version
      if (alert && alert.id && !this.dismissed.has(alert.id) && !next.has(alert.id)) {
        next.set(alert.id, alert);
      }
    }
    for (const [id, timer] of this.timers) {
      if (!next.has(id)) {
        clearTimeout(timer);
        this.timers.delete(id);
        this.deadlines.delete(id);
      }
    }
    this.alerts = next;
    for (const alert of next.values()) this.armAutoDismiss(alert);
    this.render();
  }

  onAlert(e) {
    const alert = e.alert;
    if (!alert || !alert.id || this.dismissed.has(alert.id)) return;
    const known = this.alerts.has(alert.id);
    this.alerts.set(alert.id, { ...alert, timestamp: alert.timestamp || e.timestamp });
    this.armAutoDismiss(alert);
    this.render(known ? null : alert.id);
    if (!known && alert.priority === 'high') toast(alert.title, alert.message || '', 'error');
  }

  armAutoDismiss(alert) {
    if (!alert.auto_dismiss || this.timers.has(alert.id)) return;
    this.deadlines.set(alert.id, Date.now() + this.config.alertAutoDismissMs);
    this.timers.set(alert.id, setTimeout(() => this.dismiss(alert.id), this.config.alertAutoDismissMs));
  }

  dismiss(id) {
    clearTimeout(this.timers.get(id));
    this.timers.delete(id);
    this.deadlines.delete(id);
    this.dismissed.add(id);
    this.alerts.delete(id);
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
    const ordered = [...this.alerts.values()].sort((a, b) =>
      (PRIORITY_RANK[a.priority] ?? 1) - (PRIORITY_RANK[b.priority] ?? 1)
      || (Date.parse(b.timestamp || '') || 0) - (Date.parse(a.timestamp || '') || 0));
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
