// Dashboard entry point: settings, the connection manager (global `window.wsManager`, as in the
// spec's console examples), the panels, the one-second ticker, and cleanup on page unload.

import { ActivityView } from './activity.js';
import { AlertsView } from './alerts.js';
import { loadConfig } from './config.js';
import { WebSocketManager } from './connection.js';
import { setServerTime, startTicker } from './dom.js';
import { ModelView } from './model.js';
import { configurePublishing, configureToasts } from './notify.js';
import { StatusView } from './status.js';
import { SystemView } from './system.js';
import { TrainingView } from './training.js';
import { UploadView } from './upload.js';

const config = loadConfig();
configureToasts(config.toastMs);
configurePublishing(config.token);

const manager = new WebSocketManager(config);
// The run history pages read with the same subscriber token: the link carries it.
if (config.token) {
  document.getElementById('runs-link').search = new URLSearchParams({ token: config.token }).toString();
}
window.wsManager = manager;

// First handler: align "time ago" with the server's clock before any panel renders.
manager.addWebSocketHandler('snapshot', (snap) => {
  if (snap.server_time) setServerTime(snap.server_time);
});

const models = new ModelView(manager);
const training = new TrainingView(manager, config, (modelId) => {
  const model = models.models.get(modelId);
  return Boolean(model && model.deployment_timestamp);
});
manager.addWebSocketHandler('model_deployed', () => training.refreshDeployState());
manager.addWebSocketHandler('snapshot', () => training.refreshDeployState());

const status = new StatusView(manager);
const views = [
  models,
  training,
  new SystemView(manager),
  new AlertsView(manager, config),
  new ActivityView(manager, config),
  new UploadView(manager, config),
  status,
];
const stopTicker = startTicker(document, () => status.tick());

let cleanedUp = false;

/** Close the socket, stop timers and requests, and unsubscribe every panel. */
function cleanup() {
  if (cleanedUp) return;
  cleanedUp = true;
  stopTicker();
  manager.destroy();
  for (const view of views) view.destroy();
  window.removeEventListener('pagehide', cleanup);
  window.removeEventListener('beforeunload', cleanup);
}

window.addEventListener('pagehide', cleanup);
window.addEventListener('beforeunload', cleanup);
// Restored from the back/forward cache after cleanup: start afresh.
window.addEventListener('pageshow', (event) => {
  if (event.persisted && cleanedUp) window.location.reload();
});

window.mlopsDashboard = { config, manager, views, cleanup };
document.body.dataset.ready = 'true';
manager.start();
