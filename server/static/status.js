// Connection status in the header: state (connected, reconnecting n/5, offline mode, ...),
// latency quality, last update ("Live" / "Refreshed (offline mode)"), retry control, seq.

import { byId, fmtClock, fmtInt, setText } from './dom.js';
import { toast } from './notify.js';

const LABEL = {
  idle: 'Starting…',
  connecting: 'Connecting…',
  connected: 'Connected',
  disconnected: 'Disconnected',
  reconnecting: 'Reconnecting…',
  error: 'Connection error',
  max_reconnect_attempts: 'Offline Mode',
};

export class StatusView {
  constructor(manager) {
    this.manager = manager;
    this.lastLiveAt = null;
    this.el = {
      pill: byId('conn-pill'), text: byId('conn-text'), quality: byId('conn-quality'),
      updated: byId('last-update'), retry: byId('retry-button'), banner: byId('offline-banner'),
      bannerRetry: byId('banner-retry'), bannerDetail: byId('offline-detail'), seq: byId('seq'),
    };
    const retry = () => manager.retry();
    this.el.retry.addEventListener('click', retry);
    this.el.bannerRetry.addEventListener('click', retry);
    this.unsubscribe = [
      manager.addWebSocketHandler('connection_state', () => this.render()),
      manager.addWebSocketHandler('connection_quality', () => this.renderQuality()),
      manager.addWebSocketHandler('offline_mode', (e) => {
        if (e.active) toast('Offline Mode', 'The live connection is down: refreshing from the REST API.', 'warning');
        this.render();
      }),
      manager.addWebSocketHandler('offline_refresh', () => this.renderUpdated()),
      manager.addWebSocketHandler('offline_refresh_failed', (e) => {
        setText(this.el.bannerDetail, `Last refresh failed (${e.error}); retrying every ${this.interval()}.`);
      }),
      manager.addWebSocketHandler('replay', (e) => {
        if (e.count > 0) toast('Back online', `Caught up on ${fmtInt(e.count)} missed event${e.count === 1 ? '' : 's'}.`, 'success');
      }),
      manager.addWebSocketHandler('*', (e) => {
        if (e.type !== 'connection_state' && e.type !== 'connection_quality' && manager.state === 'connected'
          && !e.partial && typeof e.seq === 'number') {
          this.lastLiveAt = Date.now();
          this.renderUpdated();
        }
      }),
    ];
    this.render();
  }

  destroy() {
    this.unsubscribe.forEach((off) => off());
  }

  interval() {
    const s = this.manager.config.offlinePollMs / 1000;
    return s >= 1 ? `${Math.round(s)} s` : `${s.toFixed(1)} s`;
  }

  render() {
    const m = this.manager;
    const state = m.state;
    const d = m.stateDetail || {};
    let label = LABEL[state] || state;
    if (state === 'reconnecting') {
      label = d.probe ? 'Reconnecting…' : `Reconnecting (${Math.max(1, d.attempt || 1)}/${d.max || m.config.maxReconnectAttempts})`;
      if (d.at && d.at > Date.now() + 900) label += ` in ${Math.ceil((d.at - Date.now()) / 1000)}s`;
    }
    if (m.offline && state !== 'connected') label = state === 'reconnecting' ? `Offline Mode · ${label}` : 'Offline Mode';
    const el = this.el;
    el.pill.dataset.state = state;
    el.pill.dataset.offline = m.offline ? 'true' : 'false';
    setText(el.text, label);
    el.retry.hidden = !(state === 'max_reconnect_attempts' || (m.offline && state !== 'connected'));
    el.banner.hidden = !m.offline;
    document.body.classList.toggle('offline', m.offline);
    document.body.dataset.connection = state;
    if (m.offline) {
      let detail = `Showing data from the REST API, refreshed every ${this.interval()}.`;
      if (d.refused) {
        detail += ' The server answers, but refuses the live connection'
          + (m.config.token ? '.' : ': if it requires a subscriber token, open this page with ?token=…');
      }
      setText(el.bannerDetail, detail);
    }
    this.renderQuality();
    this.renderUpdated();
  }

  renderQuality() {
    const m = this.manager;
    const el = this.el.quality;
    if (m.state !== 'connected' || m.quality === null) {
      el.hidden = true;
      return;
    }
    el.hidden = false;
    el.dataset.quality = m.quality;
    setText(el, `${m.quality} · ${m.latencyMs} ms`);
    el.title = `Ping round trip ${m.latencyMs} ms`;
  }

  renderUpdated() {
    const m = this.manager;
    const el = this.el.updated;
    if (m.offline) {
      if (m.lastRefreshAt) setText(el, `Refreshed (offline mode) · ${fmtClock(new Date(m.lastRefreshAt))}`);
      else if (this.lastLiveAt) setText(el, `Offline mode · last update ${fmtClock(new Date(this.lastLiveAt))}`);
      else setText(el, 'Offline mode · refreshing…');
    } else if (m.state === 'connected') {
      setText(el, this.lastLiveAt ? `Live · updated ${fmtClock(new Date(this.lastLiveAt))}` : 'Live');
    } else if (this.lastLiveAt) {
      setText(el, `Last update ${fmtClock(new Date(this.lastLiveAt))}`);
    }
    setText(this.el.seq, m.lastSeq === null ? '' : `seq ${fmtInt(m.lastSeq)}`);
  }

  /** Called every second: keeps the reconnect countdown current. */
  tick() {
    if (this.manager.state === 'reconnecting') this.render();
  }
}
