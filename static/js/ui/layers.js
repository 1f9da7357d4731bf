// Every layer, not only the first: pick an image (a probe or your drawing) and a layer, and see
// that layer's output (conv and pool: one map per channel; dense: a heat strip of its units),
// its kernels when it has weights (conv: every filter; dense: each unit's weights as a 28x28
// tile when its input is the image, else as a strip), and the saliency of the predicted class
// drawn over the image. One POST /api/runs/{id}/inspect per image and saved weights.

import { api } from "../api.js";
import { decodeArray } from "../codec.js";
import { h, clear, fmtNum, shapeStr } from "./dom.js";
import { drawTiles } from "./tiles.js";
import { DIVERGING, GREY } from "./colormap.js";
import { drawFeatureMaps, asOneProbe } from "./featuremaps.js";
import { tileShape } from "./kernels.js";
import { fitCanvas } from "./dom.js";

/** "Layer 3 (conv2d)": 1-based, as the rest of the page names layers. */
export const layerTitle = (l) => `Layer ${l.index + 1} (${l.type})`;

export class LayerView {
  constructor(root) {
    this.root = root;
    this.source = h("select", { id: "layers-source", "aria-label": "Image to inspect", onchange: () => { this.key = ""; this.fetchKey = ""; } });
    this.layer = h("select", { id: "layers-layer", "aria-label": "Layer to show", onchange: () => { this.chosen = +this.layer.value; this.drawKey = ""; this.draw(); } });
    this.status = h("p", { class: "small muted", id: "layers-status", "aria-live": "polite" }, "No run selected.");
    this.outCaption = h("p", { class: "small", id: "layers-out-caption" });
    this.outCanvas = h("canvas", { class: "tiles", id: "layers-out", role: "img", "aria-label": "The layer's output" });
    this.wCaption = h("p", { class: "small", id: "layers-w-caption" });
    this.wCanvas = h("canvas", { class: "tiles", id: "layers-weights", role: "img", "aria-label": "The layer's kernels" });
    this.salCaption = h("p", { class: "small", id: "layers-sal-caption" });
    this.salCanvas = h("canvas", { class: "saliency", id: "layers-saliency", role: "img", "aria-label": "Saliency over the image" });
    clear(root).append(
      h("div", { class: "layers-controls" },
        h("label", { class: "field compact" }, h("span", { class: "small" }, "Image"), this.source),
        h("label", { class: "field compact" }, h("span", { class: "small" }, "Layer"), this.layer)),
      this.status,
      h("div", { class: "layers-grid" },
        h("div", { class: "layers-sal" }, this.salCaption, h("div", { class: "canvas-wrap" }, this.salCanvas)),
        h("div", { class: "layers-out" }, this.outCaption, h("div", { class: "canvas-wrap" }, this.outCanvas),
          this.wCaption, h("div", { class: "canvas-wrap" }, this.wCanvas))));
    this.drawing = null;      // the drawn digit's pixels (H*W), or null
    this.result = null;
    this.chosen = null;
    this.key = ""; this.fetchKey = ""; this.drawKey = "";
    this.seq = 0;
  }

  reset() {
    this.result = null; this.chosen = null; this.key = ""; this.fetchKey = ""; this.drawKey = "";
    clear(this.source); clear(this.layer);
    this.status.textContent = "No run selected.";
    for (const c of [this.outCaption, this.wCaption, this.salCaption]) c.textContent = "";
    for (const c of [this.outCanvas, this.wCanvas]) drawTiles(c, { count: 0 });
    fitCanvas(this.salCanvas, 1, 1);
  }

  /** The drawn digit as rows (DrawPad), or null when cleared. */
  setDrawing(rows) {
    this.drawing = rows ? rows.flat() : null;
    this.key = "";
    if (rows) this.wantDrawing = true;
  }

  /** @param run the Run row (its weights_step tells when new weights are saved) */
  update(state, run) {
    if (!state) { if (this.runId != null) { this.reset(); this.runId = null; } return; }
    if (state.runId !== this.runId) { this.reset(); this.runId = state.runId; }
    const snap = state.snapshot;
    const probes = snap ? snap.probeIndices : [];
    const key = `${probes.join(",")}|${!!this.drawing}|${state.classNames ? 1 : 0}`;
    if (key !== this.key) {
      this.key = key;
      const keep = this.wantDrawing && this.drawing ? "draw" : this.source.value;
      this.wantDrawing = false;
      const opts = probes.map((idx, i) => {
        const lab = state.classNames ? state.classNames[snap.probeLabels[i]] : snap.probeLabels[i];
        return h("option", { value: `probe:${idx}` }, `Test image #${idx} (label ${lab})`);
      });
      if (this.drawing) opts.push(h("option", { value: "draw" }, "Your drawing"));
      clear(this.source).append(...opts);
      if (opts.some((o) => o.value === keep)) this.source.value = keep;
      this.fetchKey = "";
    }
    if (!this.source.value) {
      this.status.textContent = snap ? "This run has no probe images; draw a digit to look inside." : "Waiting for the first snapshot…";
      return;
    }
    const wstep = run ? run.weights_step : null;
    if (wstep == null) {       // nothing saved yet: inspect would answer 409
      this.status.textContent = "Waiting for the run's first saved weights…";
      return;
    }
    const fk = `${state.runId}|${this.source.value}|${wstep}|${this.source.value === "draw" ? this.drawing.join() : ""}`;
    if (fk !== this.fetchKey && !this.busy) { this.fetchKey = fk; this.fetch(state); }
  }

  async fetch(state) {
    const id = state.runId, seq = ++this.seq;
    const v = this.source.value;
    const body = v === "draw" ? { pixels: this.drawing } : { image: +v.split(":")[1] };
    body.what = ["outputs", "weights", "saliency"];
    this.busy = true;
    this.status.textContent = "Looking inside…";
    try {
      const res = await api.inspect(id, body);
      if (seq !== this.seq || id !== this.runId) return;
      this.result = res; this.classNames = state.classNames;
      this.fillLayers(res);
      const name = (c) => (this.classNames ? this.classNames[c] : c);
      this.status.textContent = `${v === "draw" ? "Your drawing" : `Test image #${body.image} (label ${name(res.label)})`}: predicted ${name(res.predicted)}; weights of step ${res.step ?? "(imported)"}.`;
      this.drawKey = "";
      this.draw();
    } catch (err) {
      if (seq === this.seq) this.status.textContent = "Could not look inside: " + err.message;
    } finally {
      this.busy = false;
    }
  }

  fillLayers(res) {
    const layers = res.layers || [];
    const names = layers.map((l) => `${l.index}`).join();
    if (names !== this.layerNames) {
      this.layerNames = names;
      clear(this.layer).append(...layers.map((l) => h("option", { value: String(l.index) }, `${layerTitle(l)} ${shapeStr(l.shape)}`)));
      if (this.chosen == null || !layers.some((l) => l.index === this.chosen)) this.chosen = layers.length ? layers[0].index : null;
    }
    if (this.chosen != null) this.layer.value = String(this.chosen);
  }

  draw() {
    const res = this.result;
    if (!res) return;
    const width = Math.max(160, this.outCanvas.parentElement.clientWidth - 4);
    const key = `${this.chosen}|${width}|${this.seq}`;
    if (key === this.drawKey) return;
    this.drawKey = key;
    const l = (res.layers || []).find((x) => x.index === this.chosen);
    if (l) {
      const out = decodeArray(l.output);
      if (l.shape.length === 3 || l.shape.length === 1) {
        const what = drawFeatureMaps(this.outCanvas, asOneProbe(out), 0, width);
        this.outCaption.textContent = `${layerTitle(l)} output ${shapeStr(l.shape)}: ${what}`;
      } else {
        drawTiles(this.outCanvas, { count: 0 });
        this.outCaption.textContent = `${layerTitle(l)} output ${shapeStr(l.shape)}`;
      }
      this.outCanvas.setAttribute("aria-label", `${layerTitle(l)} output ${shapeStr(l.shape)}`);
    }
    const w = (res.weights || []).find((x) => x.index === this.chosen);
    if (w) this.drawWeights(w, width);
    else { drawTiles(this.wCanvas, { count: 0 }); this.wCaption.textContent = l ? `${layerTitle(l)} has no weights.` : ""; }
    this.drawSaliency(res);
  }

  drawWeights(w, width) {
    const k = decodeArray(w.kernels);
    const { count, th, tw, C } = tileShape(k.shape);
    const d = k.data, per = th * tw * C;
    const ranges = [];
    for (let i = 0; i < count; i++) {
      let m = 0;
      for (let j = i * per; j < (i + 1) * per; j++) { const a = Math.abs(d[j]); if (a > m) m = a; }
      ranges.push([-m || -1, m || 1]);
    }
    const cols = th === 1 ? 1 : Math.max(1, Math.min(count, Math.ceil(Math.sqrt(count))));
    const tile = Math.min(64, (width - (cols - 1) * 3) / cols);
    drawTiles(this.wCanvas, { count, th, tw, lut: DIVERGING, maxWidth: width, gap: 3, cols,
      scale: Math.max(1, tile / Math.max(th, tw)), range: (i) => ranges[i], value: (i, y, x) => d[i * per + (y * tw + x) * C] });
    const of = w.shown < w.total ? `${w.shown} of ${w.total}` : `${w.total}`;
    const unit = w.type === "conv2d" ? `kernels ${th}x${tw}${C > 1 ? ` (input channel 1 of ${C})` : ""}`
      : th > 1 ? `units' input weights as ${th}x${tw} images` : `units' input weights (${tw} each)`;
    this.wCaption.textContent = `${layerTitle(w)} weights ${shapeStr(w.shape)}: ${of} ${unit}; orange negative, blue positive.`;
    this.wCanvas.setAttribute("aria-label", `${layerTitle(w)} weights ${shapeStr(w.shape)}`);
  }

  /** The image in grey with the saliency over it: blue where more ink raises the predicted
   *  class's score, orange where it lowers it, opacity by |gradient|. */
  drawSaliency(res) {
    const img = decodeArray(res.image), sal = res.saliency && decodeArray(res.saliency.gradient);
    if (!img) return;
    const [H, W] = img.shape, C = img.shape[2] || 1;
    const scale = Math.max(2, Math.floor(168 / Math.max(H, W)));
    const ctx = fitCanvas(this.salCanvas, W * scale, H * scale);
    const m = res.saliency ? res.saliency.abs_max || 1 : 1;
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
      const g = Math.round(255 * img.data[(y * W + x) * C]);
      ctx.fillStyle = `rgb(${g},${g},${g})`;
      ctx.fillRect(x * scale, y * scale, scale, scale);
      if (!sal) continue;
      const v = sal.data[(y * W + x) * C] / m;      // -1..1
      const a = Math.min(1, Math.abs(v)) * 0.85;
      if (a < 0.03) continue;
      ctx.fillStyle = v > 0 ? `rgba(8,106,178,${a})` : `rgba(232,119,9,${a})`;
      ctx.fillRect(x * scale, y * scale, scale, scale);
    }
    const name = (c) => (this.classNames ? this.classNames[c] : c);
    this.salCaption.textContent = res.saliency
      ? `Saliency of “${name(res.saliency.cls)}” (score ${fmtNum(res.saliency.score, 3)}): blue pixels raise it, orange lower it; the largest |∂score/∂pixel| is ${fmtNum(m, 2)}.`
      : "";
    this.salCanvas.setAttribute("aria-label", `Saliency of class ${name(res.saliency ? res.saliency.cls : "")} drawn over the image`);
  }
}
