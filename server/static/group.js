// The group view of `/runs?group=NAME` (a sweep or study): how many of its runs are done,
// running and failed out of the runs it plans ("3 done · 1 running · 0 failed of 20 planned":
// the `group_size` of its newest run that sent one; without "of N planned" when none did),
// live as the stream's events change the runs' records; the best run so far by a chosen metric (final accuracy by default;
// losses and errors count lower as better), and a scatter of a chosen parameter against that
// metric, one point per run, drawn with uPlot.

import { byId, isNum, replaceChildren, h, setText } from './dom.js';
import { Scatter } from './plots.js';
import { fmtValue, lowerIsBetter, pageUrl, runName } from './runsdata.js';

const DONE = new Set(['completed', 'finished']);
const RUNNING = new Set(['running', 'stalled']);

function metricOf(run, key) {
  return key === 'final_accuracy' ? run.final_accuracy : (run.last_metrics || {})[key];
}

/**
 * Fill `select` with `values`, keeping the user's choice when still offered, else `fallback`
 * (which follows the data until the user picks something).
 */
function setOptions(select, values, fallback) {
  const current = select.dataset.chosen === 'true' ? select.value : fallback;
  const same = select.options.length === values.length
    && values.every((v, i) => select.options[i].value === v);
  if (!same) {
    select.replaceChildren(...values.map((v) => new Option(v === 'final_accuracy' ? 'final accuracy' : v, v)));
  }
  select.value = values.includes(current) ? current : (values.includes(fallback) ? fallback : values[0] || '');
}

export class GroupView {
  constructor(config, name) {
    this.config = config;
    this.runs = [];
    byId('group-view').hidden = false;
    setText(byId('group-name'), name);
    document.title = `mlops-hooks · ${name}`;
    this.metric = byId('group-metric');
    this.param = byId('group-param');
    this.scatter = new Scatter(byId('group-scatter'), { xLabel: '', yLabel: '' });
    for (const select of [this.metric, this.param]) {
      select.addEventListener('change', () => {
        select.dataset.chosen = 'true';
        this.update(this.runs);
      });
    }
  }

  /** Redraw from the group's runs (records of `GET /api/runs`). */
  update(runs) {
    this.runs = runs;
    let done = 0;
    let running = 0;
    let failed = 0;
    for (const run of runs) {
      if (DONE.has(run.status)) done += 1;
      else if (RUNNING.has(run.status)) running += 1;
      else failed += 1;
    }
    // runs are newest first: the newest plan wins (a study re-planned with more trials)
    const planned = runs.map((run) => run.group_size).find((n) => Number.isInteger(n) && n > 0) ?? null;
    setText(byId('group-done'), done);
    setText(byId('group-running'), running);
    setText(byId('group-failed'), failed);
    setText(byId('group-planned'), planned === null ? '—' : planned);
    const summary = byId('group-summary');
    setText(summary, `${done} done · ${running} running · ${failed} failed`
      + (planned === null ? '' : ` of ${planned} planned`));
    summary.dataset.planned = planned === null ? '' : String(planned);

    const metrics = new Set(['final_accuracy']);
    const params = new Set();
    for (const run of runs) {
      for (const key of Object.keys(run.last_metrics || {})) metrics.add(key);
      for (const key of Object.keys(run.params || {})) params.add(key);
    }
    // By default final accuracy when a run has one, else the runs' accuracy, else any metric.
    const preferred = runs.some((run) => isNum(run.final_accuracy)) ? 'final_accuracy'
      : ['accuracy', 'val_accuracy', 'val_acc', 'acc'].find((key) => metrics.has(key))
        || [...metrics].find((key) => key !== 'final_accuracy') || 'final_accuracy';
    setOptions(this.metric, [...metrics], preferred);
    // By default the first parameter that varies across the group (what a sweep searches).
    const varies = [...params].sort().find((key) => new Set(runs.map((run) => JSON.stringify((run.params || {})[key] ?? null))).size > 1);
    setOptions(this.param, [...params].sort(), varies);
    this._best(runs, this.metric.value);
    this._scatter(runs, this.param.value, this.metric.value);
  }

  _best(runs, key) {
    const lower = lowerIsBetter(key);
    let best = null;
    for (const run of runs) {
      const value = metricOf(run, key);
      if (!isNum(value)) continue;
      if (!best || (lower ? value < best.value : value > best.value)) best = { run, value };
    }
    const cell = byId('group-best');
    if (!best) {
      replaceChildren(cell, '—');
      return;
    }
    const link = h('a', { href: pageUrl(this.config, `/runs/${encodeURIComponent(best.run.run_id)}`),
      text: runName(best.run) });
    replaceChildren(cell, link, h('span', { class: 'muted', text: ` ${fmtValue(best.value)}` }));
    cell.dataset.runId = best.run.run_id;
  }

  _scatter(runs, param, metric) {
    const pairs = runs
      .filter((run) => param && param in (run.params || {}) && isNum(metricOf(run, metric)))
      .map((run) => ({ x: run.params[param], y: metricOf(run, metric) }));
    const categorical = pairs.some((p) => !isNum(p.x));
    let categories = null;
    let points = pairs;
    if (categorical) {
      categories = [...new Set(pairs.map((p) => fmtValue(p.x)))].sort();
      points = pairs.map((p) => ({ x: categories.indexOf(fmtValue(p.x)), y: p.y }));
    }
    byId('group-scatter-empty').hidden = points.length > 0;
    this.scatter.set(points, categories, { x: param, y: metric === 'final_accuracy' ? 'final accuracy' : metric });
  }
}
