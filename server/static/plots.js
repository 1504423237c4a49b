// Charts of the run history pages, drawn with the vendored uPlot (static/vendor/uplot/):
// one small line chart per series key (several runs overlaid on /compare) and a scatter of a
// parameter against a metric for a group. Each chart's container carries `data-key` and
// `data-points` (the number of points drawn, summed over its lines) for tests and tools.

import uPlot from './vendor/uplot/uPlot.esm.js';
import { fmtValue } from './runsdata.js';
import { plain } from './dom.js';

const PALETTE = ['#4f46e5', '#0891b2', '#16a34a', '#d97706', '#dc2626', '#9333ea', '#db2777',
  '#0d9488', '#65a30d', '#2563eb'];

/** The color of line `i`. */
export const colorOf = (i) => PALETTE[i % PALETTE.length];

// The theme's colors, read once (reading computed styles forces a style recalculation).
let theme = null;
function themeColors() {
  if (!theme) {
    const style = getComputedStyle(document.documentElement);
    const read = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
    theme = { muted: read('--muted', '#6b7280'), border: read('--border', '#e3e8ef') };
  }
  return theme;
}

function axes(xLabel) {
  const { muted: stroke, border } = themeColors();
  const grid = { stroke: border, width: 1 };
  return [
    { stroke, grid, ticks: grid, label: xLabel, labelSize: 18, size: 32 },
    { stroke, grid, ticks: grid, size: 56, values: (u, splits) => splits.map(fmtValue) },
  ];
}

const MIN_WIDTH = 240;
const widthOf = (px) => Math.max(MIN_WIDTH, Math.floor(px || 320));

/**
 * Follow the width of `el` (measured once now, then from ResizeObserver entries, so redrawing
 * never forces a layout): calls `onResize(width)` when it changes.
 */
function watchWidth(el, onResize) {
  const box = { width: widthOf(el.clientWidth) };
  box.observer = new ResizeObserver((entries) => {
    const width = widthOf(entries[entries.length - 1].contentRect.width);
    if (width !== box.width) {
      box.width = width;
      onResize(width);
    }
  });
  box.observer.observe(el);
  return box;
}

function countPoints(data) {
  let n = 0;
  for (let s = 1; s < data.length; s += 1) for (const v of data[s]) if (v !== null && v !== undefined) n += 1;
  return n;
}

/**
 * A line chart of one series key, with one line per label, in `container`.
 * `set(xs, ys[])` replaces the data (xs ascending; a `null` in a line is a gap).
 */
export class SeriesChart {
  constructor(container, key, labels, { height = 180, xLabel = 'step' } = {}) {
    this.container = container;
    this.key = key;
    container.dataset.key = plain(key);
    container.dataset.points = '0';
    this.data = [[], ...labels.map(() => [])];
    this._size = watchWidth(container, (width) => this.plot.setSize({ width, height }));
    this.plot = new uPlot({
      width: this._size.width,
      height,
      legend: { show: labels.length > 1 },
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: false } },
      axes: axes(xLabel),
      series: [
        { label: xLabel, value: (u, v) => fmtValue(v) },
        ...labels.map((label, i) => ({
          label: plain(label), stroke: colorOf(i), width: 2, spanGaps: true,
          value: (u, v) => fmtValue(v), points: { size: 4 },
        })),
      ],
    }, this.data, container);
  }

  /** Replace the data: `xs` ascending, `lines[i]` the values of label `i` (null: no point). */
  set(xs, lines) {
    this.data = [xs, ...lines];
    this.plot.setData(this.data);
    this.container.dataset.points = String(countPoints(this.data));
  }

  destroy() {
    this._size.observer.disconnect();
    this.plot.destroy();
  }
}

/**
 * One line's points kept sorted by step (the same step again replaces its value), for a chart
 * fed first by `GET /api/runs/{id}/metrics` and then by live events.
 */
export class Series {
  constructor(points = []) {
    this.xs = [];
    this.ys = [];
    for (const [x, y] of points) this.add(x, y);
  }

  add(x, y) {
    if (typeof x !== 'number' || !Number.isFinite(x)) return;
    const value = typeof y === 'number' && Number.isFinite(y) ? y : null;
    const n = this.xs.length;
    if (!n || x > this.xs[n - 1]) {
      this.xs.push(x);
      this.ys.push(value);
      return;
    }
    let i = n - 1;
    while (i > 0 && this.xs[i - 1] >= x) i -= 1;
    if (this.xs[i] === x) this.ys[i] = value;
    else {
      this.xs.splice(i, 0, x);
      this.ys.splice(i, 0, value);
    }
  }

  get length() {
    return this.xs.length;
  }
}

/** Several runs' series of one key on one x axis (the union of their steps, gaps as null). */
export function align(seriesList) {
  const steps = [...new Set(seriesList.flatMap((s) => (s ? s.xs : [])))].sort((a, b) => a - b);
  const index = new Map(steps.map((x, i) => [x, i]));
  const lines = seriesList.map((s) => {
    const line = new Array(steps.length).fill(null);
    if (s) s.xs.forEach((x, i) => { line[index.get(x)] = s.ys[i]; });
    return line;
  });
  return { xs: steps, lines };
}

/**
 * A scatter of points `{x, y, label}` (a parameter against a metric across a group's runs).
 * x may be categorical: `categories` then names the x values 0, 1, ...
 */
export class Scatter {
  constructor(container, { xLabel, yLabel, height = 260 }) {
    this.container = container;
    this.xLabel = xLabel;
    this.yLabel = yLabel;
    this.height = height;
    this.plot = null;
    this.drawn = '';
    this._size = watchWidth(container, (width) => {
      if (this.plot) this.plot.setSize({ width, height });
    });
  }

  /** Draw `points` ({x, y}); `categories`: names of the x values 0, 1, ... when categorical. */
  set(points, categories = null, labels = { x: this.xLabel, y: this.yLabel }) {
    const drawn = JSON.stringify([points, categories, labels]);
    if (drawn === this.drawn) return; // live updates that change nothing drawn cost nothing
    this.drawn = drawn;
    const sorted = [...points].sort((a, b) => a.x - b.x);
    const data = [sorted.map((p) => p.x), sorted.map((p) => p.y)];
    this.container.dataset.points = String(sorted.length);
    if (this.plot) this.plot.destroy();
    const xAxis = axes(plain(labels.x))[0];
    if (categories) {
      xAxis.values = (u, splits) => splits.map((v) => (Number.isInteger(v) ? plain(categories[v] ?? '') : ''));
      xAxis.splits = () => categories.map((_, i) => i);
    }
    const yAxis = axes('')[1];
    yAxis.label = plain(labels.y);
    yAxis.labelSize = 18;
    this.plot = new uPlot({
      width: this._size.width,
      height: this.height,
      legend: { show: false },
      scales: {
        x: categories ? { time: false, range: [-0.5, categories.length - 0.5] } : { time: false },
      },
      axes: [xAxis, yAxis],
      series: [
        { label: plain(labels.x) },
        { label: plain(labels.y), stroke: colorOf(0), fill: colorOf(0), paths: () => null,
          points: { show: true, space: 0, size: 9, fill: colorOf(0) } },
      ],
    }, data, this.container);
  }

  destroy() {
    this._size.observer.disconnect();
    if (this.plot) this.plot.destroy();
  }
}
