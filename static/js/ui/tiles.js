// Draw many small images (kernels, feature maps, digits) into one canvas as a grid of tiles.
// Each tile is written at its native resolution into an ImageData, then scaled up without
// smoothing, so a 5x5 kernel stays 25 crisp squares.

import { fitCanvas } from "./dom.js";

let scratchCanvas = null; // shared: drawing is synchronous

/**
 * @param {HTMLCanvasElement} canvas
 * @param {object} o
 *   count, th, tw          number of tiles and their size in source pixels
 *   value(k, y, x)         the value of tile k at (y, x)
 *   range(k) -> [lo, hi]   the value range mapped to the colour table for tile k
 *   lut                    256*3 colour table
 *   rgb(k, y, x)           optional: [r, g, b] 0..255 of tile k at (y, x), instead of value/lut
 *   maxWidth               CSS pixels available
 *   scale                  preferred CSS pixels per source pixel (shrunk to fit maxWidth)
 *   gap                    CSS pixels between tiles
 * @returns {{cols, rows, cell, gap}} the layout (for hit testing)
 */
export function drawTiles(canvas, o) {
  const gap = o.gap ?? 2;
  const { count, th, tw } = o;
  if (!count) {
    const ctx = fitCanvas(canvas, 1, 1); ctx.clearRect(0, 0, 1, 1);
    return { cols: 0, rows: 0, cell: 0, gap };
  }
  let scale = o.scale ?? 4;
  let cols = o.cols ?? Math.max(1, Math.min(count, Math.floor((o.maxWidth + gap) / (tw * scale + gap))));
  if (!o.cols && cols < Math.min(count, o.minCols ?? 1)) cols = Math.min(count, o.minCols);
  // shrink the scale (not below 1) until the grid fits the width
  while (scale > 1 && cols * (tw * scale + gap) - gap > o.maxWidth) scale -= 0.5;
  const rows = Math.ceil(count / cols);
  const cw = tw * scale, ch = th * scale;
  const W = cols * (cw + gap) - gap, H = rows * (ch + gap) - gap;
  const ctx = fitCanvas(canvas, W, H);
  ctx.clearRect(0, 0, W, H);
  // one ImageData holding every tile at native size, then one scaled blit per tile
  const src = scratchCanvas || (scratchCanvas = document.createElement("canvas"));
  const sw = cols * tw, sh = rows * th;
  if (src.width !== sw || src.height !== sh) { src.width = sw; src.height = sh; }
  const sctx = src.getContext("2d");
  const img = sctx.createImageData(sw, sh);
  const px = img.data, lut = o.lut;
  for (let k = 0; k < count; k++) {
    if (o.rgb) {
      const ox = (k % cols) * tw, oy = Math.floor(k / cols) * th;
      for (let y = 0; y < th; y++) for (let x = 0; x < tw; x++) {
        const [r, g, b] = o.rgb(k, y, x), p = 4 * ((oy + y) * sw + ox + x);
        px[p] = r; px[p + 1] = g; px[p + 2] = b; px[p + 3] = 255;
      }
      continue;
    }
    const [lo, hi] = o.range(k);
    const span = hi - lo || 1;
    const ox = (k % cols) * tw, oy = Math.floor(k / cols) * th;
    for (let y = 0; y < th; y++) {
      for (let x = 0; x < tw; x++) {
        let q = Math.round(((o.value(k, y, x) - lo) / span) * 255);
        q = q < 0 ? 0 : q > 255 ? 255 : q;
        const p = 4 * ((oy + y) * sw + ox + x);
        px[p] = lut[3 * q]; px[p + 1] = lut[3 * q + 1]; px[p + 2] = lut[3 * q + 2]; px[p + 3] = 255;
      }
    }
  }
  sctx.putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  for (let k = 0; k < count; k++) {
    const c = k % cols, r = Math.floor(k / cols);
    ctx.drawImage(src, c * tw, r * th, tw, th, c * (cw + gap), r * (ch + gap), cw, ch);
  }
  return { cols, rows, cellW: cw, cellH: ch, gap, width: W, height: H };
}
