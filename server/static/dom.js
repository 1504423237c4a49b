// DOM helpers and formatting shared by every panel. Text always goes through textContent or
// text nodes: event data is never parsed as HTML, and bidirectional control characters are
// stripped from it (U+202E would show "file\u202Egnp.exe" as "fileexe.png").

const SVG_NS = 'http://www.w3.org/2000/svg';
// Embeddings, overrides and isolates (U+202A-202E, U+2066-2069) and the marks LRM, RLM, ALM.
const BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069\u200E\u200F\u061C]/g;

/** `value` as display text: a string without bidirectional control characters. */
export function plain(value) {
  return String(value).replace(BIDI_CONTROLS, '');
}

function applyProps(el, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.setAttribute('class', value);
    else if (key === 'text') el.textContent = plain(value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'style') Object.assign(el.style, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else el.setAttribute(key, value === true ? '' : plain(value));
  }
}

function appendChildren(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : plain(child));
  }
}

/** Create an HTML element: `h('p', {class: 'x'}, 'text', h('b', {}, 'bold'))`. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  applyProps(el, props);
  appendChildren(el, children);
  return el;
}

/** Create an SVG element. */
export function svg(tag, props = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  applyProps(el, props);
  appendChildren(el, children);
  return el;
}

/** Look up a required element by id (a missing one is a bug in index.html). */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`dashboard markup has no #${id}`);
  return el;
}

/** Set text only when it changed (keeps screen readers and layout calm). */
export function setText(el, value) {
  const text = value === null || value === undefined ? '' : plain(value);
  if (el.textContent !== text) el.textContent = text;
}

/** Replace the children of `el`. */
export function replaceChildren(el, ...children) {
  el.replaceChildren();
  appendChildren(el, children);
}

/**
 * Make `nodes` the children of `el`, in order, moving only the ones out of place: elements that
 * stay keep their state (running animations, focus) instead of being rebuilt.
 */
export function placeChildren(el, nodes) {
  nodes.forEach((node, i) => {
    const current = el.children[i];
    if (current !== node) el.insertBefore(node, current || null);
  });
  while (el.children.length > nodes.length) el.lastElementChild.remove();
}

export const reducedMotion = () =>
  window.matchMedia && window.matchMedia('(prefers-reduced-motion: reduce)').matches;

/** Restart a one-shot CSS animation class (scale, pulse, bump). */
export function replay(el, className) {
  el.classList.remove(className);
  void el.offsetWidth; // force a reflow so the animation starts again
  el.classList.add(className);
  el.addEventListener('animationend', () => el.classList.remove(className), { once: true });
}

const animations = new WeakMap();

/** Count from the displayed value to `to` with an ease-out over `ms`. */
export function animateNumber(el, to, format, ms = 700) {
  const previous = animations.get(el);
  if (previous) cancelAnimationFrame(previous.frame);
  const from = previous ? previous.current : Number(el.dataset.value ?? to);
  el.dataset.value = String(to);
  if (reducedMotion() || !Number.isFinite(from) || from === to) {
    animations.delete(el);
    setText(el, format(to));
    return;
  }
  const state = { current: from, frame: 0 };
  const start = performance.now();
  const step = (now) => {
    const t = Math.min(1, (now - start) / ms);
    const eased = 1 - (1 - t) ** 3;
    state.current = from + (to - from) * eased;
    setText(el, format(t === 1 ? to : state.current));
    if (t < 1) state.frame = requestAnimationFrame(step);
    else animations.delete(el);
  };
  state.frame = requestAnimationFrame(step);
  animations.set(el, state);
}

// --------------------------------------------------------------------------- formatting

const intFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const rateFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });

export const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

export const fmtInt = (v) => (isNum(v) ? intFormat.format(Math.round(v)) : '—');

export const fmtRate = (v) => (isNum(v) ? rateFormat.format(v) : '—');

const compactFormat = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 });

/** A rate for a small tile: as `fmtRate` below 10,000, then 29,404.8 → "29.4K", 1.2e6 → "1.2M". */
export const fmtCompact = (v) => (isNum(v) && Math.abs(v) >= 10000 ? compactFormat.format(v) : fmtRate(v));

/** A 0-1 fraction as a percentage with `digits` decimals: 0.942 → "94.2%". */
export const fmtFraction = (v, digits = 1) => (isNum(v) ? `${(v * 100).toFixed(digits)}%` : '—');

/** A 0-100 percentage: 45.2 → "45.2%". */
export const fmtPercent = (v, digits = 1) => (isNum(v) ? `${v.toFixed(digits)}%` : '—');

/** A loss value with sensible precision: 0.0234 → "0.0234", 1.5e-5 → "1.50e-5". */
export function fmtLoss(v) {
  if (!isNum(v)) return '—';
  const abs = Math.abs(v);
  if (abs !== 0 && (abs < 0.001 || abs >= 1e5)) return v.toExponential(2);
  return abs >= 100 ? v.toFixed(1) : v.toPrecision(3).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');
}

/** Seconds as "45s", "3m 05s", "1h 02m". */
export function fmtDuration(seconds) {
  if (!isNum(seconds) || seconds < 0) return '—';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function fmtBytes(n) {
  if (!isNum(n) || n < 0) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = n;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i += 1;
  }
  return i === 0 ? `${value} B` : `${value.toFixed(1)} ${units[i]}`;
}

// Server clock minus browser clock, from the snapshot's server_time, so "time ago" is right
// even when the two clocks disagree.
let clockSkewMs = 0;

export function setServerTime(iso) {
  const t = Date.parse(iso);
  if (Number.isFinite(t)) clockSkewMs = t - Date.now();
}

export const serverNow = () => Date.now() + clockSkewMs;

/** "just now", "12s ago", "5m ago", "3h ago", "2d ago"; "—" for a missing time. */
export function timeAgo(iso) {
  const t = typeof iso === 'number' ? iso : Date.parse(iso);
  if (!Number.isFinite(t)) return '—';
  const s = Math.max(0, Math.round((serverNow() - t) / 1000));
  if (s < 5) return 'just now';
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

/** Local date-time for tooltips. */
export function fmtDateTime(iso) {
  const t = typeof iso === 'number' ? iso : Date.parse(iso);
  return Number.isFinite(t) ? new Date(t).toLocaleString() : '';
}

export function fmtClock(date = new Date()) {
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** An element whose "time ago" text the ticker refreshes every second. */
export function timeEl(iso, props = {}) {
  const el = h('time', { ...props, class: `ago ${props.class || ''}`.trim() });
  setTime(el, iso);
  return el;
}

export function setTime(el, iso) {
  if (iso) {
    el.dataset.time = String(iso);
    el.setAttribute('datetime', typeof iso === 'number' ? new Date(iso).toISOString() : iso);
    el.title = fmtDateTime(iso);
  } else {
    delete el.dataset.time;
    el.removeAttribute('datetime');
    el.title = '';
  }
  setText(el, iso ? timeAgo(iso) : '—');
}

/** Refresh every `[data-time]` element once a second; returns the stop function. */
export function startTicker(root = document, extra = () => {}) {
  const tick = () => {
    for (const el of root.querySelectorAll('[data-time]')) setText(el, timeAgo(el.dataset.time));
    extra();
  };
  const id = setInterval(tick, 1000);
  return () => clearInterval(id);
}

/** Humanize a snake_case identifier: "resource_warning" → "Resource warning". */
export function humanize(value) {
  if (value === null || value === undefined || value === '') return '';
  const text = String(value).replace(/_/g, ' ');
  return text.charAt(0).toUpperCase() + text.slice(1);
}
