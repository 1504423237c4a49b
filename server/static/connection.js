// The connection manager of spec/websocket-api.md: one WebSocket to the server's `/ws`, the
// connection events (connected, disconnected, reconnecting, error, max_reconnect_attempts),
// ping/pong latency → quality, exponential backoff with jitter, `?since=<last seq>` on every
// reconnect (events are deduplicated by seq), and offline mode: REST polling of the fallback
// endpoints once the reconnect attempts are used up.
//
// Handlers: `manager.addWebSocketHandler(type, fn)` returns an unsubscribe function; the type
// `'*'` receives every message. `manager.emit(type, data)` runs the handlers locally, for
// simulating events from the browser console.

import { fetchFallback } from './fallback.js';

/** Quality thresholds of the spec: < 50 excellent, 50-150 good, 150-300 fair, > 300 poor. */
export function qualityFor(latencyMs) {
  if (latencyMs < 50) return 'excellent';
  if (latencyMs <= 150) return 'good';
  if (latencyMs <= 300) return 'fair';
  return 'poor';
}

/** Backoff with "equal jitter": half the exponential delay plus a random half. */
export function backoffDelay(attempt, baseMs, maxMs, random = Math.random) {
  const exponential = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exponential / 2 + (random() * exponential) / 2);
}

const SLOW_CONSUMER = 4008;
const PONG_TIMEOUT = 4000; // our own close code when the server stops answering pings

export class WebSocketManager {
  /**
   * @param {object} config settings from config.js
   * @param {{location?: Location}} [options]
   */
  constructor(config, options = {}) {
    this.config = config;
    this.location = options.location || window.location;
    this.handlers = new Map();
    this.socket = null;
    this.state = 'idle';
    this.stateDetail = {};
    this.lastSeq = null;
    this.attempts = 0;
    this.offline = false;
    this.latencyMs = null;
    this.quality = null;
    this.duplicatesDropped = 0;
    this.lastRefreshAt = null;
    this._timers = { reconnect: 0, connect: 0, ping: 0, poll: 0 };
    this._pingId = 0;
    this._pendingPings = new Map();
    this._opened = false;
    this._probe = false;
    this._lastSlowClose = 0;
    this._polling = null;
    this._destroyed = false;
    this._onOnline = () => {
      if (this.state !== 'connected' && this.state !== 'connecting') this.retry();
    };
  }

  // ------------------------------------------------------------------ public API

  /** Register `handler(data)` for an event or connection type; returns the unsubscribe. */
  addWebSocketHandler(type, handler) {
    if (typeof type !== 'string' || !type) throw new TypeError('handler type must be a string');
    if (typeof handler !== 'function') throw new TypeError(`handler for "${type}" is not a function`);
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(handler);
    return () => this.removeWebSocketHandler(type, handler);
  }

  removeWebSocketHandler(type, handler) {
    const set = this.handlers.get(type);
    if (set) {
      set.delete(handler);
      if (!set.size) this.handlers.delete(type);
    }
  }

  /** Run the handlers of `type` locally with `data` (console simulation, as in the spec). */
  emit(type, data = {}) {
    if (typeof type !== 'string' || !type) throw new TypeError('emit(type, data): type must be a string');
    if (data === null || typeof data !== 'object' || Array.isArray(data)) {
      throw new TypeError(`emit("${type}", data): data must be an object`);
    }
    return this._dispatch({ ...data, type });
  }

  /** Open the connection and listen for the browser coming back online. */
  start() {
    window.addEventListener('online', this._onOnline);
    this._open();
    return this;
  }

  /** Manual retry: a fresh round of attempts, starting now (offline polling goes on meanwhile). */
  retry() {
    if (this._destroyed || this.state === 'connected') return;
    this._clearTimer('reconnect');
    this.attempts = 0;
    this._probe = false;
    this._setState('reconnecting', { attempt: 1, max: this.config.maxReconnectAttempts, delayMs: 0, manual: true });
    this._open();
  }

  /** Close the socket, stop every timer and request, and drop all handlers and listeners. */
  destroy() {
    if (this._destroyed) return;
    this._destroyed = true;
    window.removeEventListener('online', this._onOnline);
    for (const name of Object.keys(this._timers)) this._clearTimer(name);
    if (this._polling) this._polling.abort();
    this._detach(this.socket, 1000, 'page unload');
    this.socket = null;
    this.handlers.clear();
  }

  /** The WebSocket URL, with `since` once a seq is known. */
  url() {
    const proto = this.location.protocol === 'https:' ? 'wss:' : 'ws:';
    const base = `${proto}//${this.location.host}`;
    let url = new URL(this.config.wsPath, base);
    if (url.host !== this.location.host) url = new URL('/ws', base); // never another server
    if (this.lastSeq !== null) url.searchParams.set('since', String(this.lastSeq));
    if (this.config.types) url.searchParams.set('types', this.config.types);
    if (this.config.token) url.searchParams.set('token', this.config.token);
    return url.toString();
  }

  // ------------------------------------------------------------------ socket lifecycle

  _open() {
    if (this._destroyed) return;
    this._clearTimer('reconnect');
    this._detach(this.socket, 1000, 'replaced');
    if (this.state !== 'reconnecting') this._setState('connecting');
    let socket;
    try {
      socket = new WebSocket(this.url());
    } catch (err) {
      this.socket = null;
      this._setState('error', { error: String(err && err.message ? err.message : err) });
      this._afterClose(1006, '');
      return;
    }
    this.socket = socket;
    this._opened = false;
    socket.onopen = () => socket === this.socket && this._handleOpen();
    socket.onmessage = (ev) => socket === this.socket && this._handleMessage(ev.data);
    socket.onerror = () => socket === this.socket && this._setState('error', { error: 'WebSocket error' });
    socket.onclose = (ev) => {
      if (socket !== this.socket) return;
      this.socket = null;
      this._afterClose(ev.code, ev.reason);
    };
    this._timers.connect = setTimeout(() => {
      if (socket === this.socket && socket.readyState === WebSocket.CONNECTING) {
        this._drop(socket, 1006, 'connect timeout');
      }
    }, this.config.connectTimeoutMs);
  }

  _handleOpen() {
    this._clearTimer('connect');
    this._opened = true;
    this.attempts = 0;
    this._probe = false;
    this._leaveOffline();
    this._setState('connected', { since: this.lastSeq });
    this._startPing();
  }

  _afterClose(code, reason) {
    this._clearTimer('connect');
    this._stopPing();
    if (this._destroyed) return;
    const wasOpen = this._opened;
    this._opened = false;
    if (wasOpen) this._setState('disconnected', { code, reason });
    if (code === SLOW_CONSUMER && Date.now() - this._lastSlowClose > 5000) {
      // The server dropped us for falling behind: catch up at once with ?since=.
      this._lastSlowClose = Date.now();
      this._setState('reconnecting', { attempt: 0, max: this.config.maxReconnectAttempts, delayMs: 0, reason });
      this._timers.reconnect = setTimeout(() => this._open(), 0);
      return;
    }
    if (this._probe) {
      // HTTP works but the WebSocket does not: refused (token, Origin) or blocked on the way.
      this._probe = false;
      this._setState('max_reconnect_attempts', { attempts: this.config.maxReconnectAttempts, refused: true });
      return;
    }
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    const max = this.config.maxReconnectAttempts;
    this.attempts += 1;
    if (this.attempts > max) {
      this._setState('max_reconnect_attempts', { attempts: max });
      this._enterOffline();
      return;
    }
    const delayMs = backoffDelay(this.attempts, this.config.reconnectBaseMs, this.config.reconnectMaxMs);
    this._setState('reconnecting', { attempt: this.attempts, max, delayMs, at: Date.now() + delayMs });
    this._timers.reconnect = setTimeout(() => this._open(), delayMs);
  }

  /** Detach our handlers from `socket` and close it (no events reach us afterwards). */
  _detach(socket, code, reason) {
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onerror = socket.onclose = null;
    try {
      if (socket.readyState <= WebSocket.OPEN) socket.close(code, reason);
    } catch {
      // closing an already failing socket is best effort
    }
  }

  /** Give up on a socket that is stuck (no handshake, no pong) and go through the close path. */
  _drop(socket, code, reason) {
    this._detach(socket, code === 1006 ? 1000 : code, reason);
    if (socket === this.socket) {
      this.socket = null;
      this._afterClose(code, reason);
    }
  }

  // ------------------------------------------------------------------ messages

  _handleMessage(raw) {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      console.warn('mlops-hooks dashboard: ignoring a message that is not JSON:', String(raw).slice(0, 200));
      return;
    }
    if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') {
      console.warn('mlops-hooks dashboard: ignoring a message without a type');
      return;
    }
    switch (msg.type) {
      case 'pong':
        this._handlePong(msg);
        return;
      case 'snapshot':
        if (typeof msg.seq === 'number') this.lastSeq = msg.seq;
        this._dispatch(msg);
        return;
      case 'replay':
        this._dispatch(msg);
        return;
      case 'error':
        console.warn(`mlops-hooks dashboard: server says: ${msg.error}`);
        this._dispatch({ ...msg, type: 'server_error' });
        return;
      default:
        if (typeof msg.seq === 'number') {
          if (this.lastSeq !== null && msg.seq <= this.lastSeq) {
            this.duplicatesDropped += 1;
            return;
          }
          this.lastSeq = msg.seq;
        }
        this._dispatch(msg);
    }
  }

  _dispatch(msg) {
    let called = 0;
    for (const key of [msg.type, '*']) {
      const set = this.handlers.get(key);
      if (!set) continue;
      for (const handler of [...set]) {
        called += 1;
        try {
          handler(msg);
        } catch (err) {
          console.error(`mlops-hooks dashboard: the "${msg.type}" handler failed:`, err);
        }
      }
    }
    return called;
  }

  _setState(state, detail = {}) {
    this.state = state;
    this.stateDetail = detail;
    this._dispatch({ ...detail, type: state });
    this._dispatch({ ...detail, type: 'connection_state', state, offline: this.offline });
  }

  // ------------------------------------------------------------------ ping / pong

  _startPing() {
    this._stopPing();
    // The first ping waits until the snapshot is rendered, so it measures the network, not us.
    this._timers.ping = setTimeout(() => {
      this._sendPing();
      this._timers.ping = setInterval(() => this._sendPing(), this.config.pingIntervalMs);
    }, Math.min(1000, this.config.pingIntervalMs));
  }

  _stopPing() {
    this._clearTimer('ping');
    this._pendingPings.clear();
  }

  _sendPing() {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    const now = performance.now();
    for (const sentAt of this._pendingPings.values()) {
      if (now - sentAt > this.config.pongTimeoutMs) {
        console.warn('mlops-hooks dashboard: no pong from the server; reconnecting');
        this._drop(socket, PONG_TIMEOUT, 'pong timeout');
        return;
      }
      break; // the oldest pending ping decides
    }
    this._pingId += 1;
    this._pendingPings.set(this._pingId, now);
    socket.send(JSON.stringify({ type: 'ping', id: this._pingId }));
  }

  _handlePong(msg) {
    const sentAt = this._pendingPings.get(msg.id);
    if (sentAt === undefined) return;
    for (const id of [...this._pendingPings.keys()]) {
      if (id <= msg.id) this._pendingPings.delete(id);
    }
    this.latencyMs = Math.max(0, Math.round(performance.now() - sentAt));
    this.quality = qualityFor(this.latencyMs);
    this._dispatch({
      type: 'connection_quality', latency_ms: this.latencyMs, quality: this.quality,
      server_time: msg.server_time,
    });
  }

  // ------------------------------------------------------------------ offline mode

  _enterOffline() {
    if (this.offline) return;
    this.offline = true;
    this._dispatch({ type: 'offline_mode', active: true, interval_ms: this.config.offlinePollMs });
    this._poll();
    this._timers.poll = setInterval(() => this._poll(), this.config.offlinePollMs);
  }

  _leaveOffline() {
    if (!this.offline) return;
    this.offline = false;
    this._clearTimer('poll');
    if (this._polling) this._polling.abort();
    this._dispatch({ type: 'offline_mode', active: false });
  }

  /** One round of REST polling; the results arrive as a partial snapshot. */
  async _poll() {
    if (this._polling || this._destroyed) return;
    const controller = new AbortController();
    this._polling = controller;
    const timeout = setTimeout(() => controller.abort(), this.config.fetchTimeoutMs);
    try {
      const { partial, errors } = await fetchFallback(this.config, controller.signal);
      if (this._destroyed || !this.offline) return; // live again: the socket's data is newer
      if (errors.length < 3) {
        this.lastRefreshAt = Date.now();
        this._dispatch(partial);
        this._dispatch({ type: 'offline_refresh', at: this.lastRefreshAt, failed: errors.length });
      } else {
        this._dispatch({ type: 'offline_refresh_failed', error: String(errors[0] && errors[0].message) });
      }
      if (errors.some((e) => e && e.status === 401) && !this.socket) {
        // The server answers but refuses us: with a subscriber token, REST reads need it too.
        this._setState('max_reconnect_attempts', { attempts: this.config.maxReconnectAttempts, refused: true });
      }
      if (!errors.length && this.state === 'max_reconnect_attempts' && !this.socket) {
        // The server answers again: try the live connection (it replays what we missed).
        this._probe = true;
        this._setState('reconnecting', { attempt: 1, max: this.config.maxReconnectAttempts, delayMs: 0, probe: true });
        this._open();
      }
    } finally {
      clearTimeout(timeout);
      if (this._polling === controller) this._polling = null;
    }
  }

  _clearTimer(name) {
    if (!this._timers[name]) return;
    clearTimeout(this._timers[name]);
    clearInterval(this._timers[name]);
    this._timers[name] = 0;
  }
}
