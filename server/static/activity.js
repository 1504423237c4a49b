// Activity feed, newest first: activity_update events and the snapshot's / REST activity list.

import { byId, fmtDuration, h, humanize, isNum, setText, timeEl } from './dom.js';
import { icon } from './icons.js';

const SEVERITY_ICON = { info: 'info', success: 'ok', warning: 'warning', error: 'error', critical: 'critical' };

export class ActivityView {
  constructor(manager, config) {
    this.max = config.maxActivity;
    this.items = new Map(); // id → {activity, node}
    this.list = byId('activity');
    this.empty = byId('activity-empty');
    this.count = byId('activity-count');
    this.unsubscribe = [
      manager.addWebSocketHandler('snapshot', (s) => this.applySnapshot(s)),
      manager.addWebSocketHandler('activity_update', (e) => this.onActivity(e)),
    ];
    this.update();
  }

  destroy() {
    this.unsubscribe.forEach((off) => off());
  }

  applySnapshot(snap) {
    if (!Array.isArray(snap.activity)) return;
    this.items.clear();
    const nodes = [];
    for (const activity of snap.activity.slice(0, this.max)) {
      if (!activity || !activity.id || this.items.has(activity.id)) continue;
      const node = this.node(activity);
      this.items.set(activity.id, { activity, node });
      nodes.push(node);
    }
    this.list.replaceChildren(...nodes);
    this.update();
  }

  onActivity(e) {
    const activity = e.activity;
    if (!activity || !activity.id) return;
    const merged = { ...activity, timestamp: activity.timestamp || e.timestamp };
    const known = this.items.get(activity.id);
    const node = this.node(merged);
    if (known) {
      known.node.replaceWith(node); // an update of an entry (e.g. in_progress → completed)
    } else {
      node.classList.add('entering');
      this.list.prepend(node);
    }
    this.items.set(activity.id, { activity: merged, node });
    while (this.items.size > this.max) {
      const last = this.list.lastElementChild;
      if (!last) break;
      this.items.delete(last.dataset.activityId);
      last.remove();
    }
    this.update();
  }

  update() {
    this.empty.hidden = this.items.size > 0;
    setText(this.count, String(this.items.size));
  }

  node(a) {
    const severity = a.severity_level || 'info';
    const meta = [
      a.user ? h('span', {}, a.user) : null,
      a.action_type ? h('span', {}, humanize(a.action_type)) : null,
      isNum(a.duration) ? h('span', {}, fmtDuration(a.duration)) : null,
    ].filter(Boolean);
    return h('li', { class: 'activity', dataset: { activityId: a.id, severity } },
      h('span', { class: 'activity-icon' }, icon(SEVERITY_ICON[severity] || 'info')),
      h('div', { class: 'activity-body' },
        h('div', { class: 'activity-head' },
          h('strong', { class: 'activity-title' }, a.title),
          a.status ? h('span', { class: 'badge', dataset: { status: a.status } }, humanize(a.status)) : null),
        a.description ? h('p', { class: 'activity-desc' }, a.description) : null,
        meta.length ? h('p', { class: 'activity-meta' }, meta) : null),
      timeEl(a.timestamp));
  }
}
