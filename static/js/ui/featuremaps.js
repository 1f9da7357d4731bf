// Feature maps of the first weighted layer (after its activation) for one probe image.
// Conv: (P, OH, OW, F) -> F small greyscale maps sharing one scale (a dead map stays dark).
// Dense: (P, units) -> one cell per unit.

import { h, clear } from "./dom.js";
import { drawTiles } from "./tiles.js";
import { GREY } from "./colormap.js";
import { snapshotArrays } from "../reducer.js";

/** Draw maps[p] into canvas. `maps` is a decoded array {shape, data}. Returns a caption. */
export function drawFeatureMaps(canvas, maps, p, maxWidth) {
  if (!maps) { drawTiles(canvas, { count: 0 }); return ""; }
  const s = maps.shape, d = maps.data;
  if (s.length === 4) {
    const [, OH, OW, F] = s;
    const base = p * OH * OW * F;
    let lo = Infinity, hi = -Infinity;
    for (let j = base; j < base + OH * OW * F; j++) { if (d[j] < lo) lo = d[j]; if (d[j] > hi) hi = d[j]; }
    lo = Math.min(0, lo);
    drawTiles(canvas, {
      count: F, th: OH, tw: OW, lut: GREY, maxWidth, gap: 3,
      scale: Math.max(1, Math.min(4, Math.floor(96 / OH))), minCols: Math.min(F, 4),
      range: () => [lo, hi], value: (f, y, x) => d[base + (y * OW + x) * F + f],
    });
    return `${F} maps ${OH}x${OW}, black = ${lo.toPrecision(2)}, white = ${hi.toPrecision(2)}`;
  }
  if (s.length === 2) {
    const U = s[1], base = p * U;
    let lo = Infinity, hi = -Infinity;
    for (let j = base; j < base + U; j++) { if (d[j] < lo) lo = d[j]; if (d[j] > hi) hi = d[j]; }
    lo = Math.min(0, lo);
    const cols = Math.max(1, Math.min(Math.ceil(Math.sqrt(U)), Math.floor(maxWidth / 12)));
    drawTiles(canvas, {
      count: U, th: 1, tw: 1, lut: GREY, maxWidth, gap: 2, cols,
      scale: Math.max(8, Math.min(36, Math.floor((Math.min(maxWidth, 340) - 2 * (cols - 1)) / cols))),
      range: () => [lo, hi], value: (u) => d[base + u],
    });
    return `${U} unit activations, black = ${lo.toPrecision(2)}, white = ${hi.toPrecision(2)}`;
  }
  drawTiles(canvas, { count: 0 });
  return "";
}

/** A 1-probe view of a single (H', W', F) array, as predict returns it. */
export function asOneProbe(maps) {
  if (!maps) return null;
  return { ...maps, shape: [1, ...maps.shape] };
}

export class FeatureMaps {
  /** @param samples  SampleCache, to show the probe images themselves */
  constructor(root, samples) {
    this.root = root;
    this.samples = samples;
    this.selected = 0;
    this.picker = h("div", { class: "probe-picker", role: "group", "aria-label": "Probe image" });
    this.caption = h("p", { class: "muted small" }, "No run selected.");
    this.canvas = h("canvas", { role: "img", "aria-label": "Feature maps", class: "tiles" });
    clear(root).append(this.picker, this.caption, h("div", { class: "canvas-wrap" }, this.canvas));
    this.key = "";
  }

  reset() { this.key = ""; clear(this.picker); this.caption.textContent = "No run selected."; drawTiles(this.canvas, { count: 0 }); }

  select(i) { this.selected = i; this.key = ""; this.onSelect && this.onSelect(); }

  update(state) {
    const width = this.root.clientWidth;
    if (!state || !state.snapshot) {
      if (this.key !== "none") { this.reset(); this.key = "none"; this.caption.textContent = state ? "Waiting for the first snapshot…" : "No run selected."; }
      return;
    }
    const snap = state.snapshot;
    const key = `${state.runId}:${state.snapshots}:${this.selected}:${width}`;
    if (key === this.key) return;
    const probesKey = `${state.runId}:${snap.probeIndices.join(",")}`;
    if (probesKey !== this.probesKey) { this.probesKey = probesKey; this.buildPicker(state); }
    this.key = key;
    if (!snap.probeIndices.length) {
      this.caption.textContent = "This run has no probe images (train.probe_indices is empty).";
      drawTiles(this.canvas, { count: 0 });
      return;
    }
    if (this.selected >= snap.probeIndices.length) this.selected = 0;
    for (const [i, b] of this.buttons.entries()) b.setAttribute("aria-pressed", String(i === this.selected));
    const maps = snapshotArrays(snap).featureMaps;
    const what = drawFeatureMaps(this.canvas, maps, this.selected, Math.max(120, width - 4));
    const idx = snap.probeIndices[this.selected], label = snap.probeLabels[this.selected];
    const name = state.classNames ? state.classNames[label] : label;
    this.caption.textContent = `Test image #${idx} (label ${name}): ${what} · step ${snap.step.toLocaleString("en-US")}`;
    this.canvas.setAttribute("aria-label", `Feature maps of test image ${idx} at step ${snap.step}`);
  }

  buildPicker(state) {
    clear(this.picker);
    const snap = state.snapshot;
    const ds = state.config ? state.config.dataset.name : "mnist";
    this.buttons = snap.probeIndices.map((idx, i) => {
      const c = h("canvas", { class: "thumb", width: 28, height: 28 });
      const label = state.classNames ? state.classNames[snap.probeLabels[i]] : snap.probeLabels[i];
      const b = h("button", {
        type: "button", class: "probe", "aria-pressed": String(i === this.selected),
        "aria-label": `Probe: test image #${idx}, label ${label}`, onclick: () => this.select(i),
      }, c, h("span", {}, `#${idx}`));
      this.samples.draw(ds, idx, c);
      return b;
    });
    this.picker.append(h("span", { class: "small muted" }, "Probe:"), ...this.buttons);
  }
}
