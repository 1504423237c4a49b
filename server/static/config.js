// Dashboard settings: defaults, overridden by `window.MLOPS_CONFIG` (set before the scripts
// load) and then by query parameters of the page URL, e.g. `/?offlinePollMs=500&token=T`.
// Unknown keys and invalid values are reported with console.warn and ignored.

export const DEFAULTS = Object.freeze({
  wsPath: '/ws',              // subscribe endpoint (docs/protocol.md)
  types: '',                  // optional `?types=a,b` filter for the subscription
  token: '',                  // subscriber token (`?token=`), also sent as Bearer on REST calls
  pingIntervalMs: 10000,      // app-level ping for the latency-based connection quality
  pongTimeoutMs: 20000,       // no pong for this long: the socket is considered dead
  connectTimeoutMs: 5000,     // a handshake that takes longer is abandoned
  reconnectBaseMs: 1000,      // backoff: base * 2^(attempt-1), with jitter
  reconnectMaxMs: 16000,      // backoff ceiling
  maxReconnectAttempts: 5,    // then manual retry + offline mode
  offlinePollMs: 30000,       // REST polling interval in offline mode
  fetchTimeoutMs: 8000,       // per REST request
  alertAutoDismissMs: 10000,  // how long an auto_dismiss alert stays
  celebrationMs: 4000,        // completion celebration before the panel settles to "Ready"
  toastMs: 6000,              // notification lifetime
  maxActivity: 50,            // activity feed length
  finishedRunsShown: 4,       // finished runs visible before "show older"
});

const NUMERIC = new Set(Object.keys(DEFAULTS).filter((k) => typeof DEFAULTS[k] === 'number'));

/**
 * Whether `value` is a path on this page's own origin (`/ws`, `/prefix/ws`): no scheme, no
 * host, no `//` or `/\` (which browsers read as another host). The page hands its token to
 * whatever it connects to, so it connects to nothing else.
 */
export function isSameOriginPath(value) {
  return typeof value === 'string' && /^\/(?![\/\\])/.test(value) && !/[\s\\]/.test(value);
}

function coerce(key, value) {
  if (!(key in DEFAULTS)) {
    throw new Error(`unknown setting "${key}"`);
  }
  if (NUMERIC.has(key)) {
    const num = typeof value === 'number' ? value : Number(String(value).trim());
    if (!Number.isFinite(num) || num < 0 || String(value).trim() === '') {
      throw new Error(`setting "${key}" must be a number >= 0, got ${JSON.stringify(value)}`);
    }
    return num;
  }
  if (typeof value !== 'string') {
    throw new Error(`setting "${key}" must be a string, got ${JSON.stringify(value)}`);
  }
  if (key === 'wsPath' && !isSameOriginPath(value)) {
    throw new Error(`setting "wsPath" must be a path on this server such as /ws, got ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * Merge defaults, `window.MLOPS_CONFIG` and the query string into one frozen settings object.
 * @param {object} [globalConfig] usually `window.MLOPS_CONFIG`
 * @param {string} [search] usually `window.location.search`
 */
export function loadConfig(globalConfig = window.MLOPS_CONFIG, search = window.location.search) {
  const config = { ...DEFAULTS };
  const apply = (source, key, value) => {
    try {
      config[key] = coerce(key, value);
    } catch (err) {
      console.warn(`mlops-hooks dashboard: ignoring ${source} ${err.message}`);
    }
  };
  if (globalConfig && typeof globalConfig === 'object') {
    for (const [key, value] of Object.entries(globalConfig)) apply('MLOPS_CONFIG', key, value);
  }
  const params = new URLSearchParams(search || '');
  for (const [key, value] of params) {
    if (key in DEFAULTS) apply('query parameter', key, value);
  }
  return Object.freeze(config);
}
