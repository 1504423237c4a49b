// Status icons: the spec's emoji (✅ ⚠️ 🚨 ...) where the system has a color emoji font, else
// small inline SVG drawings of the same meaning, so no machine shows empty boxes.

import { h, svg } from './dom.js';

export const EMOJI = {
  ok: '✅', warning: '⚠️', critical: '🚨', info: 'ℹ️', error: '❌', milestone: '🎉', pending: '⏳',
};

const DRAWINGS = {
  ok: ['M7 12.5l3.2 3.2L17 9', 'circle'],
  warning: ['M12 3.5L2.5 20.5h19L12 3.5z', 'M12 10v4.5', 'M12 17.4v.1'],
  critical: ['M8 2.5h8l5.5 5.5v8L16 21.5H8L2.5 16V8z', 'M12 7.5v5.5', 'M12 16.4v.1'],
  info: ['circle', 'M12 11v5.5', 'M12 7.6v.1'],
  error: ['circle', 'M9 9l6 6', 'M15 9l-6 6'],
  milestone: ['M12 2.8l2.8 5.8 6.4.9-4.6 4.5 1.1 6.3L12 17.3l-5.7 3 1.1-6.3-4.6-4.5 6.4-.9z'],
  pending: ['circle', 'M12 7v5l3.2 2'],
};

let emojiSupport = null;

/** Whether color emoji render here (a drawn ✅ has colored pixels; a missing glyph does not). */
export function hasColorEmoji() {
  if (emojiSupport !== null) return emojiSupport;
  emojiSupport = false;
  try {
    const canvas = document.createElement('canvas');
    canvas.width = 24;
    canvas.height = 24;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.textBaseline = 'top';
    ctx.font = '18px "Apple Color Emoji", "Segoe UI Emoji", "Noto Color Emoji", sans-serif';
    ctx.fillText(EMOJI.ok, 0, 0);
    const data = ctx.getImageData(0, 0, 24, 24).data;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] > 0 && (Math.abs(data[i] - data[i + 1]) > 30 || Math.abs(data[i + 1] - data[i + 2]) > 30)) {
        emojiSupport = true;
        break;
      }
    }
  } catch {
    emojiSupport = false;
  }
  document.documentElement.dataset.emoji = emojiSupport ? 'color' : 'none';
  return emojiSupport;
}

/** A decorative icon (`aria-hidden`); the text next to it carries the meaning. */
export function icon(name) {
  const emoji = EMOJI[name] || EMOJI.info;
  if (hasColorEmoji()) {
    return h('span', { class: `icon icon-emoji icon-${name}`, 'aria-hidden': 'true', dataset: { emoji } }, emoji);
  }
  const parts = (DRAWINGS[name] || DRAWINGS.info).map((d) =>
    (d === 'circle' ? svg('circle', { cx: 12, cy: 12, r: 9.5 }) : svg('path', { d })));
  return h('span', { class: `icon icon-svg icon-${name}`, 'aria-hidden': 'true', dataset: { emoji } },
    svg('svg', { viewBox: '0 0 24 24', focusable: 'false' }, parts));
}
