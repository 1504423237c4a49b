// Dataset upload: POST /api/files (multipart field `file`, optional `target_column`) with a
// progress bar fed by the browser's upload progress and the server's upload_progress events,
// then the file_validated result. Uploads from other dashboards show in "Recent files".

import { byId, fmtBytes, fmtDuration, fmtInt, h, isNum, replaceChildren, setText } from './dom.js';
import { icon } from './icons.js';

const MAX_FILES = 6;

function describe(v) {
  if (v.status === 'error') return v.error || 'Validation failed';
  const parts = [];
  if (isNum(v.rows)) parts.push(`${fmtInt(v.rows)} rows`);
  if (isNum(v.columns)) parts.push(`${fmtInt(v.columns)} columns`);
  if (v.file_size) parts.push(v.file_size);
  if (v.target_column) parts.push(`target ${v.target_column}`);
  return parts.join(' · ');
}

export class UploadView {
  constructor(manager, config) {
    this.config = config;
    this.files = new Map(); // filename → {upload, validation}
    this.current = null; // {name, xhr, started, clientPercent}
    const ids = ['upload-form', 'upload-file', 'upload-file-label', 'upload-target', 'upload-submit',
      'upload-progress', 'upload-name', 'upload-percent', 'upload-bar', 'upload-fill', 'upload-detail',
      'upload-result', 'files', 'dropzone'];
    this.el = Object.fromEntries(ids.map((id) => [id.replace(/-(\w)/g, (_, c) => c.toUpperCase()), byId(id)]));
    const el = this.el;
    el.uploadFile.addEventListener('change', () => this.fileChosen());
    el.uploadForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.upload();
    });
    for (const type of ['dragenter', 'dragover']) {
      el.dropzone.addEventListener(type, (ev) => {
        ev.preventDefault();
        el.dropzone.classList.add('dragging');
      });
    }
    for (const type of ['dragleave', 'drop']) el.dropzone.addEventListener(type, () => el.dropzone.classList.remove('dragging'));
    el.dropzone.addEventListener('drop', (ev) => {
      ev.preventDefault();
      if (ev.dataTransfer && ev.dataTransfer.files.length) {
        el.uploadFile.files = ev.dataTransfer.files;
        this.fileChosen();
      }
    });
    this.unsubscribe = [
      manager.addWebSocketHandler('snapshot', (s) => this.applySnapshot(s)),
      manager.addWebSocketHandler('upload_progress', (e) => this.onProgress(e)),
      manager.addWebSocketHandler('file_validated', (e) => this.onValidated(e)),
    ];
    this.renderFiles();
  }

  destroy() {
    this.unsubscribe.forEach((off) => off());
    if (this.current && this.current.xhr) this.current.xhr.abort();
  }

  fileChosen() {
    const file = this.el.uploadFile.files[0];
    setText(this.el.uploadFileLabel, file ? `${file.name} (${fmtBytes(file.size)})` : 'Drop a CSV file here or browse');
    this.el.uploadSubmit.disabled = !file || Boolean(this.current);
  }

  upload() {
    const file = this.el.uploadFile.files[0];
    if (!file || this.current) return;
    const form = new FormData();
    form.append('file', file, file.name);
    const target = this.el.uploadTarget.value.trim();
    if (target) form.append('target_column', target);
    const xhr = new XMLHttpRequest();
    this.current = { name: file.name, xhr, started: performance.now(), percent: 0 };
    this.el.uploadSubmit.disabled = true;
    this.el.uploadResult.hidden = true;
    this.el.uploadProgress.hidden = false;
    setText(this.el.uploadName, file.name);
    this.showProgress(0, file.size, 'Starting upload…');
    xhr.upload.addEventListener('progress', (ev) => {
      if (!ev.lengthComputable || !this.current) return;
      const seconds = (performance.now() - this.current.started) / 1000;
      const speed = seconds > 0 ? ev.loaded / seconds : 0;
      const eta = speed > 0 ? (ev.total - ev.loaded) / speed : null;
      this.showProgress((ev.loaded / ev.total) * 100, ev.total,
        `${fmtBytes(ev.loaded)} of ${fmtBytes(ev.total)} · ${fmtBytes(speed)}/s${eta !== null ? ` · ${fmtDuration(eta)} left` : ''}`);
    });
    xhr.upload.addEventListener('load', () => setText(this.el.uploadDetail, 'Uploaded · validating…'));
    xhr.addEventListener('load', () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (body && (body.status === 'success' || body.status === 'error') && body.filename) {
        this.finish(body);
      } else {
        const error = body && body.error ? body.error : `the server answered HTTP ${xhr.status}`;
        this.finish({ status: 'error', filename: file.name, error });
      }
    });
    xhr.addEventListener('error', () => this.finish({ status: 'error', filename: file.name, error: 'Network error: the upload did not reach the server' }));
    xhr.addEventListener('abort', () => this.finish(null));
    xhr.open('POST', '/api/files');
    if (this.config.token) xhr.setRequestHeader('Authorization', `Bearer ${this.config.token}`);
    xhr.send(form);
  }

  showProgress(percent, total, detail) {
    if (!this.current) return;
    const shown = Math.max(this.current.percent, Math.min(100, percent));
    this.current.percent = shown;
    this.el.uploadFill.style.width = `${shown}%`;
    this.el.uploadBar.setAttribute('aria-valuenow', String(Math.round(shown)));
    setText(this.el.uploadPercent, `${Math.round(shown)}%`);
    if (detail) setText(this.el.uploadDetail, detail);
  }

  finish(result) {
    this.current = null;
    this.fileChosen();
    if (!result) {
      this.el.uploadProgress.hidden = true;
      return;
    }
    this.el.uploadProgress.dataset.status = result.status;
    if (result.status === 'success') this.showProgress(100, 0, '');
    this.remember(result.filename, { validation: result });
    this.showResult(result);
  }

  showResult(v) {
    const ok = v.status === 'success';
    const box = this.el.uploadResult;
    box.dataset.status = v.status;
    const rows = [];
    if (ok) {
      if (v.summary) rows.push(h('p', { class: 'result-summary' }, v.summary));
      rows.push(h('p', { class: 'result-detail' }, describe(v)));
      if (isNum(v.validation_time)) rows.push(h('p', { class: 'result-meta' }, `Validated in ${v.validation_time.toFixed(2)} s`));
    } else {
      rows.push(h('p', { class: 'result-error' }, v.error || 'Validation failed'));
    }
    replaceChildren(box,
      h('strong', { class: 'result-head' }, icon(ok ? 'ok' : 'error'), ok ? `${v.filename} is valid` : `${v.filename} was rejected`),
      rows);
    box.hidden = false;
  }

  applySnapshot(snap) {
    if (!Array.isArray(snap.uploads)) return;
    this.files.clear();
    for (const u of snap.uploads) if (u && u.filename) this.files.set(u.filename, { upload: u.upload, validation: u.validation });
    this.renderFiles();
  }

  remember(filename, patch) {
    const entry = { ...(this.files.get(filename) || {}), ...patch };
    this.files.delete(filename);
    this.files.set(filename, entry); // most recent last
    while (this.files.size > MAX_FILES) this.files.delete(this.files.keys().next().value);
    this.renderFiles();
  }

  onProgress(e) {
    this.remember(e.filename, { upload: e, validation: null });
    if (this.current && this.current.name === e.filename && isNum(e.progress_percent)) {
      const eta = isNum(e.estimated_time_remaining) ? ` · ${fmtDuration(e.estimated_time_remaining)} left` : '';
      this.showProgress(e.progress_percent, e.total_bytes,
        `Server received ${fmtBytes(e.bytes_uploaded)}${isNum(e.total_bytes) ? ` of ${fmtBytes(e.total_bytes)}` : ''}${e.upload_speed ? ` · ${e.upload_speed}` : ''}${eta}`);
    }
  }

  onValidated(e) {
    const { type: _type, seq: _seq, ...validation } = e;
    this.remember(e.filename, { validation });
    if (!this.current && this.el.uploadResult.hidden === false && this.el.uploadResult.textContent.includes(e.filename)) {
      this.showResult(validation);
    }
  }

  renderFiles() {
    const entries = [...this.files.entries()].reverse();
    replaceChildren(this.el.files, entries.map(([name, { upload, validation }]) => {
      const state = validation ? validation.status : 'uploading';
      let detail = '';
      if (validation) detail = describe(validation);
      else if (upload) detail = `Uploading ${isNum(upload.progress_percent) ? `${Math.round(upload.progress_percent)}%` : fmtBytes(upload.bytes_uploaded)}${upload.upload_speed ? ` · ${upload.upload_speed}` : ''}`;
      return h('li', { class: 'file', dataset: { status: state } },
        h('span', { class: 'file-icon' }, icon({ success: 'ok', error: 'error' }[state] || 'pending')),
        h('span', { class: 'file-name' }, name),
        h('span', { class: 'file-detail' }, detail));
    }));
    this.el.files.previousElementSibling.hidden = entries.length === 0;
  }
}
