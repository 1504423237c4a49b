// The spec's auto-refresh fallback: while the WebSocket is down, the fallback endpoints of
// docs/protocol.md are fetched and merged into one partial snapshot (only the keys that
// arrived), which the panels apply exactly like the WebSocket's snapshot.

/** The REST fallback endpoints polled in offline mode. */
export const FALLBACK_ENDPOINTS = Object.freeze({
  models: '/api/models',
  system: '/api/monitoring/system',
  activity: '/api/activity',
});

async function fetchJson(path, token, signal) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, { headers, signal, cache: 'no-store', credentials: 'same-origin' });
  } catch (err) {
    throw new Error(err && err.name === 'AbortError' ? 'timed out' : 'server unreachable');
  }
  if (!response.ok) {
    const err = new Error(`GET ${path}: HTTP ${response.status}`);
    err.status = response.status; // 401: a subscriber token is required (reads need it too)
    throw err;
  }
  return response.json();
}

/**
 * Fetch the three endpoints in parallel.
 * @param {{token: string, maxActivity: number}} config
 * @param {AbortSignal} signal
 * @returns {Promise<{partial: object, errors: Error[]}>} `partial` is a `snapshot` message
 *   with `partial: true` holding what arrived; `errors` what failed.
 */
export async function fetchFallback(config, signal) {
  const [models, system, activity] = await Promise.allSettled([
    fetchJson(FALLBACK_ENDPOINTS.models, config.token, signal),
    fetchJson(FALLBACK_ENDPOINTS.system, config.token, signal),
    fetchJson(`${FALLBACK_ENDPOINTS.activity}?limit=${config.maxActivity}`, config.token, signal),
  ]);
  const partial = { type: 'snapshot', partial: true, source: 'rest' };
  const errors = [];
  if (models.status === 'fulfilled') {
    Object.assign(partial, { models: models.value.models, runs: models.value.runs });
  } else errors.push(models.reason);
  if (system.status === 'fulfilled') {
    const { system: metrics, health, alerts, connections } = system.value;
    Object.assign(partial, { system: metrics, health, alerts, connections });
  } else errors.push(system.reason);
  if (activity.status === 'fulfilled') partial.activity = activity.value.activity;
  else errors.push(activity.reason);
  return { partial, errors };
}
