// A small hand-drawn SVG line chart for one training run: loss (left axis), validation loss
// when the run reports it, and accuracy (right axis). Redrawn at the container's real pixel
// size (ResizeObserver), at most once per animation frame.

import { fmtFraction, fmtLoss, h, isNum, svg } from './dom.js';

const HEIGHT = 170;
const PAD = { left: 48, right: 46, top: 12, bottom: 24 };

function accuracyOf(point) {
  if (isNum(point.accuracy)) return point.accuracy;
  const m = point.metrics || {};
  for (const key of ['val_accuracy', 'val_acc', 'accuracy', 'acc']) {
    if (isNum(m[key]) && m[key] >= 0 && m[key] <= 1) return m[key];
  }
  return null;
}

function valLossOf(point) {
  const m = point.metrics || {};
  return isNum(m.val_loss) ? m.val_loss : null;
}

/** A "nice" step (1, 2, 2.5 or 5 times a power of ten) that cuts `span` into about `count` parts. */
export function niceStep(span, count = 4) {
  const raw = span / count;
  if (!(raw > 0) || !Number.isFinite(raw)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / magnitude;
  const factor = norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10;
  return factor * magnitude;
}

/** Pick the x value: progress when every point has it, else epoch, else the index. */
function xAxis(points) {
  if (points.every((p) => isNum(p.progress))) {
    return { value: (p) => p.progress, min: 0, max: 100, label: (v) => `${Math.round(v)}%` };
  }
  if (points.every((p) => isNum(p.epoch))) {
    const max = Math.max(1, ...points.map((p) => p.epoch));
    return { value: (p) => p.epoch, min: 0, max, label: (v) => `ep ${Math.round(v)}` };
  }
  const indexOf = new Map(points.map((p, i) => [p, i]));
  return {
    value: (p) => indexOf.get(p), min: 0, max: Math.max(1, points.length - 1),
    label: (v) => `#${Math.round(v) + 1}`,
  };
}

export class RunChart {
  /** @param {HTMLElement} container  @param {string} label accessible name */
  constructor(container, label) {
    this.container = container;
    this.label = label;
    this.points = [];
    this.frame = 0;
    this.svg = svg('svg', { class: 'chart-svg', role: 'img', 'aria-label': label, height: HEIGHT });
    this.empty = h('p', { class: 'chart-empty' }, 'Waiting for loss and accuracy values…');
    this.legend = h('div', { class: 'chart-legend', 'aria-hidden': 'true' });
    container.append(this.svg, this.empty, this.legend);
    this.observer = new ResizeObserver(() => this.schedule());
    this.observer.observe(container);
  }

  emptyText(text) {
    if (this.empty.textContent !== text) this.empty.textContent = text;
  }

  setPoints(points) {
    this.points = points;
    this.schedule();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  destroy() {
    this.observer.disconnect();
    if (this.frame) cancelAnimationFrame(this.frame);
  }

  draw() {
    const width = Math.floor(this.container.clientWidth);
    if (width < 80) return;
    const points = this.points.filter((p) => isNum(p.loss) || accuracyOf(p) !== null || valLossOf(p) !== null);
    this.svg.setAttribute('width', String(width));
    this.svg.setAttribute('viewBox', `0 0 ${width} ${HEIGHT}`);
    this.svg.replaceChildren();
    this.empty.hidden = points.length > 0;
    this.svg.classList.toggle('is-empty', points.length === 0);
    if (!points.length) {
      this.legend.replaceChildren();
      this.svg.setAttribute('aria-label', `${this.label}: no values yet`);
      return;
    }
    const plotW = width - PAD.left - PAD.right;
    const plotH = HEIGHT - PAD.top - PAD.bottom;
    const x = xAxis(points);
    const sx = (v) => PAD.left + ((v - x.min) / (x.max - x.min || 1)) * plotW;

    const losses = points.flatMap((p) => [p.loss, valLossOf(p)]).filter(isNum);
    const rawMin = losses.length ? Math.min(0, ...losses) : 0;
    const rawMax = losses.length ? Math.max(...losses) : 1;
    const lossStep = niceStep(rawMax - rawMin || 1);
    const lossMin = Math.floor(rawMin / lossStep) * lossStep;
    const lossMax = Math.max(lossMin + lossStep, Math.ceil(rawMax / lossStep - 1e-9) * lossStep);
    const sy = (v) => PAD.top + plotH - ((v - lossMin) / (lossMax - lossMin || 1)) * plotH;

    const accs = points.map(accuracyOf).filter(isNum);
    const accStep = accs.length ? niceStep(1 - Math.min(...accs) || 0.1, 4) : 0.25;
    const accMin = accs.length ? Math.max(0, Math.floor(Math.min(...accs) / accStep) * accStep) : 0;
    const sa = (v) => PAD.top + plotH - ((v - accMin) / (1 - accMin || 1)) * plotH;

    const grid = svg('g', { class: 'chart-grid' });
    for (let v = lossMin; v <= lossMax + lossStep / 2; v += lossStep) {
      const y = sy(v);
      grid.append(svg('line', { x1: PAD.left, x2: PAD.left + plotW, y1: y, y2: y }));
      grid.append(svg('text', { x: PAD.left - 6, y: y + 4, class: 'tick tick-left' }, fmtLoss(Math.abs(v) < 1e-12 ? 0 : v)));
    }
    if (accs.length) {
      for (let v = accMin; v <= 1 + accStep / 2; v += accStep) {
        const y = sa(Math.min(1, v));
        grid.append(svg('line', { x1: PAD.left + plotW, x2: PAD.left + plotW + 4, y1: y, y2: y, class: 'tick-mark' }));
        grid.append(svg('text', { x: PAD.left + plotW + 7, y: y + 4, class: 'tick tick-right' }, fmtFraction(Math.min(1, v), 0)));
      }
    }
    for (let i = 0; i <= 4; i += 1) {
      const v = x.min + ((x.max - x.min) * i) / 4;
      grid.append(svg('text', { x: sx(v), y: HEIGHT - 6, class: 'tick tick-x' }, x.label(v)));
    }
    this.svg.append(grid);

    const line = (values, scale, cls) => {
      const pts = points.map((p) => [x.value(p), values(p)]).filter(([, v]) => isNum(v));
      if (!pts.length) return null;
      const d = pts.map(([vx, vy], i) => `${i ? 'L' : 'M'}${sx(vx).toFixed(1)},${scale(vy).toFixed(1)}`).join('');
      const [lx, ly] = pts[pts.length - 1];
      this.svg.append(
        svg('path', { d, class: `chart-line ${cls}` }),
        svg('circle', { cx: sx(lx).toFixed(1), cy: scale(ly).toFixed(1), r: 3.5, class: `chart-dot ${cls}` }),
      );
      return ly;
    };
    const lastLoss = line((p) => p.loss, sy, 'series-loss');
    const lastVal = line(valLossOf, sy, 'series-val-loss');
    const lastAcc = line(accuracyOf, sa, 'series-acc');

    const items = [];
    if (lastLoss !== null) items.push(['series-loss', 'Loss', fmtLoss(lastLoss)]);
    if (lastVal !== null) items.push(['series-val-loss', 'Val loss', fmtLoss(lastVal)]);
    if (lastAcc !== null) items.push(['series-acc', 'Accuracy', fmtFraction(lastAcc)]);
    this.legend.replaceChildren(
      ...items.map(([cls, name, value]) =>
        h('span', { class: 'legend-item' }, h('i', { class: `swatch ${cls}` }), `${name} `, h('b', {}, value)),
      ),
    );
    this.svg.setAttribute(
      'aria-label',
      `${this.label}: ${items.map(([, name, value]) => `${name} ${value}`).join(', ')} after ${points.length} points`,
    );
  }
}
