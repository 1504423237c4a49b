// What the run history pages share around their content: settings, the connection manager
// (global `window.wsManager`, as on the dashboard) with its state in the header pill, links
// that keep the page's `?token=`, and cleanup on page unload.

import { loadConfig } from './config.js';
import { WebSocketManager } from './connection.js';
import { humanize, setServerTime, setText } from './dom.js';
import { pageUrl } from './runsdata.js';

const STATE_TEXT = {
  connected: 'Live', connecting: 'Connecting…', reconnecting: 'Reconnecting…',
  disconnected: 'Disconnected', error: 'Connection error', max_reconnect_attempts: 'Offline',
};

/**
 * Start a page: settings from the URL, the connection (not opened until `manager.start()`),
 * the header pill and the navigation links (`a[data-path]` get the page's token).
 * @returns {{config: object, manager: WebSocketManager, onCleanup: (fn: () => void) => void}}
 */
export function startPage() {
  const config = loadConfig();
  const manager = new WebSocketManager(config);
  window.wsManager = manager;
  for (const link of document.querySelectorAll('a[data-path]')) {
    link.href = pageUrl(config, link.dataset.path);
  }
  const pill = document.getElementById('conn-pill');
  const text = document.getElementById('conn-text');
  manager.addWebSocketHandler('connection_state', ({ state }) => {
    if (!pill || !text) return;
    pill.dataset.state = state;
    setText(text, STATE_TEXT[state] || humanize(state));
  });
  manager.addWebSocketHandler('snapshot', (snap) => {
    if (snap.server_time) setServerTime(snap.server_time);
  });
  const cleanups = [() => manager.destroy()];
  let done = false;
  const cleanup = () => {
    if (done) return;
    done = true;
    for (const fn of cleanups) fn();
  };
  window.addEventListener('pagehide', cleanup);
  window.addEventListener('beforeunload', cleanup);
  window.addEventListener('pageshow', (event) => {
    if (event.persisted && done) window.location.reload();
  });
  return { config, manager, onCleanup: (fn) => cleanups.push(fn) };
}

/**
 * Load the page's data when the live stream starts (and again after a fresh snapshot, which
 * means events were missed), holding live events meanwhile and applying them afterwards: the
 * REST reads happen after the subscription, so no event falls between them.
 * @param {WebSocketManager} manager
 * @param {string[]} types the live event types the page applies
 * @param {() => Promise<void>} load reads REST and renders
 * @param {(event: object) => void} apply applies one live event
 */
export function snapshotThenLive(manager, types, load, apply) {
  let held = null; // events arriving while `load` runs
  let loaded = false;
  const run = async () => {
    if (held) return; // a load is under way; its held events cover the rest
    held = [];
    try {
      await load();
      loaded = true;
    } catch (err) {
      console.warn(`mlops-hooks: ${err.message}`);
      const box = document.getElementById('page-error');
      if (box) {
        box.hidden = false;
        setText(box, err.status === 401
          ? 'The server needs a subscriber token: open this page with ?token=…'
          : `Could not load: ${err.message}`);
      }
    } finally {
      const events = held;
      held = null;
      for (const event of events) apply(event);
      if (document.body.dataset.ready !== 'true') performance.mark('mlops-ready'); // benchmarks
      document.body.dataset.ready = 'true';
    }
  };
  manager.addWebSocketHandler('snapshot', (snap) => {
    if (!snap.partial) run();
  });
  manager.addWebSocketHandler('max_reconnect_attempts', () => {
    if (!loaded) run();
  });
  for (const type of types) {
    manager.addWebSocketHandler(type, (event) => {
      if (held) held.push(event);
      else if (loaded) apply(event);
    });
  }
}

/**
 * Call `onGap(event)` for a `training_progress` event that follows a gap in `seq`: the server
 * coalesces a run's progress events for a subscriber that is behind (docs/protocol.md,
 * delivery), so points of that run may have been skipped and its series should be read again.
 */
export function onProgressGap(manager, onGap) {
  let seen = null; // the seq of the last message: '*' handlers run after the type's handlers
  manager.addWebSocketHandler('*', (msg) => {
    if (typeof msg.seq === 'number') seen = msg.seq;
  });
  manager.addWebSocketHandler('training_progress', (event) => {
    if (seen !== null && typeof event.seq === 'number' && event.seq > seen + 1) onGap(event);
  });
}
