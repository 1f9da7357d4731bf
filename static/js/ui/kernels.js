// First-layer kernels as a grid of small images, redrawn at every snapshot.
// Conv2D: (F, kh, kw, C); Dense: each unit's weights in the input's shape (units, H, W, C), or
// (units, D) when the input was flat. Each tile is scaled to its own largest |weight| on the
// diverging map (orange negative, blue positive), so structure shows even in small kernels.

import { h, clear, shapeStr } from "./dom.js";
import { drawTiles } from "./tiles.js";
import { DIVERGING } from "./colormap.js";
import { snapshotArrays } from "../reducer.js";

export function tileShape(shape) {
  // -> {count, th, tw, C}
  if (shape.length === 4) return { count: shape[0], th: shape[1], tw: shape[2], C: shape[3] };
  if (shape.length === 3) return { count: shape[0], th: shape[1], tw: shape[2], C: 1 };
  if (shape.length === 2) {
    const d = shape[1], s = Math.round(Math.sqrt(d));
    if (s * s === d) return { count: shape[0], th: s, tw: s, C: 1 };
    return { count: shape[0], th: 1, tw: d, C: 1 };
  }
  return { count: 0, th: 0, tw: 0, C: 1 };
}

export class KernelGrid {
  constructor(root) {
    this.root = root;
    this.caption = h("p", { class: "muted small" }, "No run selected.");
    this.canvas = h("canvas", { role: "img", "aria-label": "First-layer kernels", class: "tiles" });
    this.legend = h("p", { class: "legend small" },
      h("span", { class: "swatch neg" }), "negative ", h("span", { class: "swatch zero" }), "0 ",
      h("span", { class: "swatch pos" }), "positive weight (each tile scaled to its own largest |w|)");
    clear(root).append(this.caption, h("div", { class: "canvas-wrap" }, this.canvas), this.legend);
    this.drawn = -1;
    this.width = 0;
    this.opts = {};
  }

  reset() { this.drawn = -1; this.caption.textContent = "No run selected."; drawTiles(this.canvas, { count: 0 }); }

  update(state) {
    const width = this.root.clientWidth;
    if (!state || !state.snapshot) {
      if (this.drawn !== -2) { this.reset(); this.drawn = -2; this.caption.textContent = state ? "Waiting for the first snapshot…" : "No run selected."; }
      return;
    }
    if (state.snapshots === this.drawn && width === this.width && state.runId === this.runId) return;
    this.drawn = state.snapshots; this.width = width; this.runId = state.runId;
    const snap = state.snapshot;
    const k = snapshotArrays(snap).kernels;
    if (!k) return;
    const { count, th, tw, C } = tileShape(k.shape);
    const d = k.data, per = th * tw * C;
    const ranges = new Array(count);
    for (let i = 0; i < count; i++) {
      let m = 0;
      for (let j = i * per; j < (i + 1) * per; j++) { const a = Math.abs(d[j]); if (a > m) m = a; }
      ranges[i] = [-m || -1, m || 1];
    }
    const layer = state.summary && state.summary.layers ? state.summary.layers.find((l) => l.index === snap.layer) : null;
    const type = layer ? layer.type : (state.config ? state.config.model[snap.layer]?.type : "");
    const total = layer && layer.output_shape ? layer.output_shape[layer.output_shape.length - 1] : count;
    // three input channels are drawn as colour: each channel's weight -m..m as 0..255, grey = 0
    const rgb = C === 3;
    const chans = rgb ? " in colour (red, green, blue input channels; grey = 0)" : C > 1 ? ` (channel 1 of ${C})` : "";
    const what = type === "dense" ? `${count}${total > count ? " of " + total : ""} units' input weights as ${th}x${tw} images${chans}`
      : `${count}${total > count ? " of " + total : ""} kernels ${th}x${tw}${chans}`;
    this.caption.textContent = `Layer ${snap.layer + 1} (${type}): ${what} · step ${snap.step.toLocaleString("en-US")}`;
    this.canvas.setAttribute("aria-label", `First-layer kernels, ${what}, at step ${snap.step}`);
    // a square-ish grid (8 kernels: 3x3, 16: 4x4, 64 units: 8x8), each tile as large as fits,
    // at most 96 CSS pixels
    const maxWidth = Math.max(120, width - 4);
    const cols = Math.max(1, Math.min(count, Math.ceil(Math.sqrt(count))));
    const gap = th * tw > 100 ? 3 : 4;
    const tile = Math.min(96, (maxWidth - (cols - 1) * gap) / cols);
    drawTiles(this.canvas, {
      count, th, tw, lut: DIVERGING, maxWidth, gap, cols,
      scale: Math.max(1, tile / Math.max(th, tw)),
      range: (i) => ranges[i],
      value: (i, y, x) => d[i * per + (y * tw + x) * C],
      rgb: rgb ? (i, y, x) => {
        const j = i * per + (y * tw + x) * 3, m = ranges[i][1];
        return [0, 1, 2].map((c) => Math.max(0, Math.min(255, Math.round(127.5 + 127.5 * d[j + c] / m))));
      } : undefined,
    });
  }
}
