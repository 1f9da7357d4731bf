// Test-set images by index (GET /api/datasets/{name}/samples?indices=...), fetched in batches
// and cached, for probe thumbnails, the misclassified gallery and the probe chooser.

import { api } from "./api.js";
import { decodeArray } from "./codec.js";

export class SampleCache {
  constructor() {
    this.cache = new Map();     // "ds:split:index" -> Promise<{index, label, shape, pixels}>
    this.queue = new Map();     // "ds:split" -> Map(index -> resolver)
    this.flushScheduled = false;
  }

  get(ds, index, split = "test") {
    const key = `${ds}:${split}:${index}`;
    let p = this.cache.get(key);
    if (!p) {
      p = new Promise((resolve, reject) => {
        const k = `${ds}:${split}`;
        if (!this.queue.has(k)) this.queue.set(k, new Map());
        this.queue.get(k).set(index, { resolve, reject });
      });
      p.catch(() => this.cache.delete(key));
      this.cache.set(key, p);
      if (!this.flushScheduled) { this.flushScheduled = true; queueMicrotask(() => this.flush()); }
    }
    return p;
  }

  async flush() {
    this.flushScheduled = false;
    const q = this.queue; this.queue = new Map();
    for (const [k, waiters] of q) {
      const [ds, split] = k.split(":");
      const all = [...waiters.keys()];
      for (let i = 0; i < all.length; i += 256) {
        const chunk = all.slice(i, i + 256);
        try {
          const res = await api.samples(ds, { split, indices: chunk.join(",") });
          const got = new Map(res.items.map((it) => [it.index, it]));
          for (const idx of chunk) {
            const it = got.get(idx);
            const w = waiters.get(idx);
            if (it) w.resolve({ index: idx, label: it.label, shape: res.shape, pixels: decodeArray(it.pixels) });
            else w.reject(new Error(`no test image #${idx}`));
          }
        } catch (err) {
          for (const idx of chunk) waiters.get(idx).reject(err);
        }
      }
    }
  }

  /** Draw a sample into a canvas at native resolution (CSS scales it, pixelated). */
  async draw(ds, index, canvas, split = "test") {
    try {
      const s = await this.get(ds, index, split);
      drawImage(canvas, s.pixels);
      return s;
    } catch {
      canvas.title = "image unavailable";
      return null;
    }
  }
}

/** A decoded (H, W) or (H, W, C) image with values 0..255 (`scale` 255 for 0..1 values) ->
 *  canvas pixels: greyscale for one channel, colour for three (any other C: its first channel). */
export function drawImage(canvas, arr, scale = 1) {
  const [H, W] = arr.shape;
  const C = arr.shape.length > 2 ? arr.shape[2] : 1;
  canvas.width = W; canvas.height = H;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(W, H);
  const px = (j) => Math.max(0, Math.min(255, Math.round(arr.data[j] * scale)));
  for (let i = 0; i < H * W; i++) {
    const r = px(i * C), g = C === 3 ? px(i * C + 1) : r, b = C === 3 ? px(i * C + 2) : r;
    img.data[4 * i] = r; img.data[4 * i + 1] = g; img.data[4 * i + 2] = b; img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}
