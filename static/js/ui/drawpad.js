// Draw a digit; for a 28x28 dataset it is preprocessed like MNIST (the bounding box scaled to fit
// 20x20 keeping its aspect ratio, then placed in 28x28 with its centre of mass at the centre), for
// 8x8 also reduced as digits8 is (crop 2 px, 3x3 mean); any other H x W gets the whole pad
// averaged down (where it is drawn counts). Sent to POST /api/runs/{id}/predict as H rows of W
// greyscale values (the server repeats them over the dataset's channels).

import { h, clear, fmtPct } from "./dom.js";

const PAD = 224, BRUSH = 18;

/** RGBA pixels of a PAD x PAD canvas -> 28x28 Float32Array in 0..1, or null when blank. */
export function toMnist(rgba, size = PAD) {
  let x0 = size, y0 = size, x1 = -1, y1 = -1;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      if (rgba[4 * (y * size + x)] > 16) {
        if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
      }
    }
  }
  if (x1 < 0) return null;
  const bw = x1 - x0 + 1, bh = y1 - y0 + 1;
  const s = 20 / Math.max(bw, bh);
  const tw = Math.max(1, Math.round(bw * s)), th = Math.max(1, Math.round(bh * s));
  // area average of the source pixels falling in each target pixel
  const sum = new Float32Array(tw * th), cnt = new Float32Array(tw * th);
  for (let y = y0; y <= y1; y++) {
    const ty = Math.min(th - 1, Math.floor((y - y0) * s));
    for (let x = x0; x <= x1; x++) {
      const tx = Math.min(tw - 1, Math.floor((x - x0) * s));
      sum[ty * tw + tx] += rgba[4 * (y * size + x)] / 255;
      cnt[ty * tw + tx] += 1;
    }
  }
  let mass = 0, cy = 0, cx = 0;
  const box = new Float32Array(tw * th);
  for (let i = 0; i < tw * th; i++) {
    const v = cnt[i] ? sum[i] / cnt[i] : 0;
    box[i] = v;
    mass += v; cy += v * Math.floor(i / tw); cx += v * (i % tw);
  }
  cy /= mass || 1; cx /= mass || 1;
  let oy = Math.round(13.5 - cy), ox = Math.round(13.5 - cx);
  oy = Math.max(0, Math.min(28 - th, oy)); ox = Math.max(0, Math.min(28 - tw, ox));
  const out = new Float32Array(28 * 28);
  for (let y = 0; y < th; y++) for (let x = 0; x < tw; x++) out[(y + oy) * 28 + x + ox] = Math.min(1, box[y * tw + x]);
  return out;
}

/** 28x28 -> 8x8 as engine/datasets.py makes digits8: crop 2 px each side, 3x3 mean. */
export function toDigits8(img28) {
  const out = new Float32Array(64);
  for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) {
    let s = 0;
    for (let dy = 0; dy < 3; dy++) for (let dx = 0; dx < 3; dx++) s += img28[(2 + 3 * y + dy) * 28 + 2 + 3 * x + dx];
    out[y * 8 + x] = s / 9;
  }
  return out;
}

/** RGBA pixels of a PAD x PAD canvas -> H x W Float32Array in 0..1 (box average), or null when blank. */
export function toSize(rgba, H, W, size = PAD) {
  const sum = new Float32Array(H * W), cnt = new Float32Array(H * W);
  let ink = false;
  for (let y = 0; y < size; y++) {
    const ty = Math.min(H - 1, Math.floor((y * H) / size));
    for (let x = 0; x < size; x++) {
      const v = rgba[4 * (y * size + x)];
      if (v > 16) ink = true;
      const i = ty * W + Math.min(W - 1, Math.floor((x * W) / size));
      sum[i] += v / 255; cnt[i] += 1;
    }
  }
  if (!ink) return null;
  for (let i = 0; i < H * W; i++) sum[i] = cnt[i] ? sum[i] / cnt[i] : 0;
  return sum;
}

export class DrawPad {
  /** @param onImage (rows: number[][] | null, size: [H, W]) => void, called after each stroke */
  constructor(root, { onImage }) {
    this.onImage = onImage;
    this.inputShape = [28, 28];
    this.canvas = h("canvas", { class: "drawpad", width: PAD, height: PAD, "aria-label": "Drawing area: draw a digit with the mouse, pen or finger", role: "img" });
    this.preview = h("canvas", { class: "thumb big", width: 28, height: 28, "aria-label": "What the network sees", role: "img" });
    this.clearBtn = h("button", { type: "button", onclick: () => this.clear() }, "Clear drawing");
    root.append(h("div", { class: "drawpad-row" }, this.canvas,
      h("div", { class: "drawpad-side" }, h("p", { class: "small muted" }, "What the network sees:"), this.preview, this.clearBtn)));
    this.ctx = this.canvas.getContext("2d", { willReadFrequently: true });
    this.clear(false);
    let last = null;
    const pos = (e) => { const r = this.canvas.getBoundingClientRect(); return [(e.clientX - r.left) * (PAD / r.width), (e.clientY - r.top) * (PAD / r.height)]; };
    this.canvas.addEventListener("pointerdown", (e) => {
      this.canvas.setPointerCapture(e.pointerId);
      last = pos(e);
      this.dot(last);
    });
    this.canvas.addEventListener("pointermove", (e) => {
      if (!last) return;
      const p = pos(e);
      this.line(last, p);
      last = p;
    });
    const end = () => { if (last) { last = null; this.emit(); } };
    this.canvas.addEventListener("pointerup", end);
    this.canvas.addEventListener("pointercancel", end);
  }

  dot([x, y]) { const c = this.ctx; c.fillStyle = "#fff"; c.beginPath(); c.arc(x, y, BRUSH / 2, 0, 2 * Math.PI); c.fill(); }
  line(a, b) {
    const c = this.ctx;
    c.strokeStyle = "#fff"; c.lineWidth = BRUSH; c.lineCap = "round"; c.lineJoin = "round";
    c.beginPath(); c.moveTo(a[0], a[1]); c.lineTo(b[0], b[1]); c.stroke();
  }
  /** Draw a polyline in pad coordinates (used by tests and the "example" button). */
  stroke(points) {
    this.dot(points[0]);
    for (let i = 1; i < points.length; i++) this.line(points[i - 1], points[i]);
    this.emit();
  }
  clear(notify = true) {
    this.ctx.fillStyle = "#000"; this.ctx.fillRect(0, 0, PAD, PAD);
    const p = this.preview.getContext("2d"); p.fillStyle = "#000"; p.fillRect(0, 0, this.preview.width, this.preview.height);
    if (notify) this.onImage(null, this.inputShape);
  }
  setInputShape(shape) { this.inputShape = shape; }

  image() {
    const rgba = this.ctx.getImageData(0, 0, PAD, PAD).data;
    const [H, W] = this.inputShape;
    const mnist = (H === 28 && W === 28) || (H === 8 && W === 8);
    const img28 = mnist ? toMnist(rgba) : null;
    const img = !mnist ? toSize(rgba, H, W) : img28 && (H === 8 ? toDigits8(img28) : img28);
    if (!img) return null;
    // preview
    this.preview.width = W; this.preview.height = H;
    const p = this.preview.getContext("2d"), id = p.createImageData(W, H);
    for (let i = 0; i < H * W; i++) { const v = Math.round(img[i] * 255); id.data.set([v, v, v, 255], 4 * i); }
    p.putImageData(id, 0, 0);
    const rows = [];
    for (let y = 0; y < H; y++) rows.push(Array.from(img.subarray(y * W, (y + 1) * W), (v) => Math.round(v * 1000) / 1000));
    return rows;
  }

  emit() { this.onImage(this.image(), this.inputShape); }
}

export class ProbabilityBars {
  constructor(root) {
    this.list = h("ol", { class: "probs", "aria-label": "Class probabilities" });
    this.caption = h("p", { class: "small muted", "aria-live": "polite" }, "Draw a digit to see what the selected run predicts.");
    root.append(this.caption, this.list);
  }
  clear(msg) { clear(this.list); this.caption.textContent = msg || this.defaultCaption || "Draw a digit to see what the selected run predicts."; }
  show(res, names) {
    clear(this.list);
    const best = res.predicted;
    res.probabilities.forEach((p, i) => {
      const name = names ? names[i] : String(i);
      this.list.append(h("li", { class: i === best ? "best" : "" },
        h("span", { class: "lbl" }, name),
        h("span", { class: "bar" }, h("span", { style: { width: `${(p * 100).toFixed(1)}%` } })),
        h("span", { class: "num" }, fmtPct(p, 1))));
    });
    const name = names ? names[best] : best;
    this.caption.textContent = `Predicted ${name} (${fmtPct(res.probabilities[best], 1)}) with ` +
      (res.step == null ? "the imported weights." : `the weights saved at step ${res.step.toLocaleString("en-US")}.`);
  }
}
