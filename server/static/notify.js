// Notifications (toasts) and the dashboard's controls, which publish events to the server:
// Deploy → `model_deployed`, Activate/Deactivate → `model_status_change`, Retry/Retrain and
// alert actions → an `activity_update` request that server-side plugins can act on.

import { byId, h } from './dom.js';
import { icon } from './icons.js';

const ICONS = { success: 'ok', info: 'info', warning: 'warning', error: 'critical', milestone: 'milestone' };
const MAX_TOASTS = 4;

let toastMs = 6000;

export function configureToasts(ms) {
  toastMs = ms;
}

/** Show a notification; `kind` is success, info, warning, error or milestone. */
export function toast(title, message = '', kind = 'info', ms = toastMs) {
  const region = byId('toasts');
  const close = h('button', { class: 'toast-close', type: 'button', 'aria-label': `Dismiss notification: ${title}` }, '×');
  const el = h(
    'div',
    { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : null },
    h('span', { class: 'toast-icon' }, icon(ICONS[kind] || 'info')),
    h('div', { class: 'toast-body' }, h('strong', {}, title), message ? h('p', {}, message) : null),
    close,
  );
  let timer = 0;
  const remove = () => {
    clearTimeout(timer);
    el.classList.add('leaving');
    setTimeout(() => el.remove(), 200);
  };
  close.addEventListener('click', remove);
  region.prepend(el);
  while (region.children.length > MAX_TOASTS) region.lastElementChild.remove();
  if (ms > 0) timer = setTimeout(remove, ms);
  return el;
}

let publishToken = '';

export function configurePublishing(token) {
  publishToken = token || '';
}

/** POST events to `/api/events`; resolves to the server's reply or rejects with its error. */
export async function publish(events) {
  const headers = { 'Content-Type': 'application/json', Accept: 'application/json' };
  if (publishToken) headers.Authorization = `Bearer ${publishToken}`;
  const response = await fetch('/api/events', {
    method: 'POST', headers, body: JSON.stringify(events), credentials: 'same-origin',
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const detail = body && body.error ? body.error : `HTTP ${response.status}`;
    throw new Error(response.status === 401 ? `${detail} (the server needs a token: open the dashboard with ?token=…)` : detail);
  }
  return body;
}

const uid = (prefix) => `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;

/** Publish an `activity_update` describing a request made from the dashboard. */
export function requestAction(actionType, title, description, metadata = {}) {
  const id = uid('ui');
  return publish({
    type: 'activity_update',
    event_id: id,
    activity: {
      id, title, description, user: 'dashboard', action_type: actionType, status: 'requested',
      timestamp: new Date().toISOString(), severity_level: 'info', duration: null, metadata,
    },
  });
}

/**
 * Run a control: disable the button while the request is in flight, then confirm or explain.
 * The caller re-renders afterwards (which decides whether the button stays enabled).
 * @param {HTMLButtonElement} button
 * @param {() => Promise<unknown>} action
 * @param {string} done success notification title
 */
export async function runControl(button, action, done) {
  const label = button.textContent;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    await action();
    toast(done, '', 'success');
  } catch (err) {
    toast('Request failed', err instanceof Error ? err.message : String(err), 'error');
  } finally {
    button.removeAttribute('aria-busy');
    button.textContent = label;
    button.disabled = false;
  }
}

export { uid };
