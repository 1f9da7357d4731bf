// Series maths for the charts, kept apart from drawing so it can be tested and reasoned about:
// TensorBoard's debiased exponential smoothing (computed incrementally as points arrive) and
// min/max decimation (the drawn points are real points: each bucket keeps its lowest and highest
// raw value, so spikes survive and hover values are true values).

import { Column } from "../reducer.js";

/** TensorBoard's smoothing: an EMA debiased by 1 - w^k so the first points are not pulled to 0. */
export class Smoother {
  constructor() { this.reset(0); }
  reset(weight) { this.weight = weight; this.last = 0; this.k = 0; this.out = new Column(Float64Array); }
  /** Extend to cover values[0..n). Recomputes from scratch when the weight changed. */
  extend(values, n, weight) {
    if (weight !== this.weight || n < this.out.n) this.reset(weight);
    const w = this.weight;
    for (let i = this.out.n; i < n; i++) {
      const v = values[i];
      if (!Number.isFinite(v)) { this.out.push(v); continue; }
      this.last = this.last * w + (1 - w) * v;
      this.k++;
      const debias = w === 1 ? 1 : 1 - Math.pow(w, this.k);
      this.out.push(this.last / debias);
    }
    return this.out.buf;
  }
}

/**
 * Indices of the points to draw from [i0, i1): all of them when there are at most `maxPts`,
 * otherwise each of ~maxPts/2 buckets contributes its argmin and argmax of `y` (in order).
 * `extra` (sorted indices, e.g. evaluation steps) are merged in.
 */
export function decimate(y, i0, i1, maxPts, extra = []) {
  const n = i1 - i0;
  let idx;
  if (n <= maxPts) {
    idx = new Array(n);
    for (let i = 0; i < n; i++) idx[i] = i0 + i;
  } else {
    const buckets = Math.max(1, Math.floor(maxPts / 2));
    const size = n / buckets;
    idx = [];
    for (let b = 0; b < buckets; b++) {
      const s = i0 + Math.floor(b * size), e = Math.min(i1, i0 + Math.floor((b + 1) * size));
      if (e <= s) continue;
      let mn = s, mx = s;
      for (let i = s + 1; i < e; i++) {
        const v = y[i];
        if (v < y[mn] || !(y[mn] === y[mn])) mn = i;
        if (v > y[mx] || !(y[mx] === y[mx])) mx = i;
      }
      if (mn === mx) idx.push(mn);
      else if (mn < mx) idx.push(mn, mx);
      else idx.push(mx, mn);
    }
    // keep the newest point so the line always reaches the latest step
    if (idx[idx.length - 1] !== i1 - 1) idx.push(i1 - 1);
  }
  if (extra.length) {
    const merged = [];
    let a = 0, b = 0;
    while (a < idx.length || b < extra.length) {
      const next = b >= extra.length || (a < idx.length && idx[a] <= extra[b]) ? idx[a++] : extra[b++];
      if (merged.length === 0 || merged[merged.length - 1] !== next) merged.push(next);
    }
    idx = merged;
  }
  return idx;
}

/** First index in sorted `arr[0..n)` with arr[i] >= v. */
export function lowerBound(arr, n, v) {
  let lo = 0, hi = n;
  while (lo < hi) { const m = (lo + hi) >> 1; if (arr[m] < v) lo = m + 1; else hi = m; }
  return lo;
}

// ---------------------------------------------------------------- x axes
// The charts plot against a run's step, epoch (fractional: step / steps per epoch), images seen
// or training wall time. Each is increasing in the step, so a zoom range in x units maps to a
// contiguous range of points (lower()).

export const X_AXES = [["step", "Step"], ["epoch", "Epoch"], ["images", "Images seen"], ["time", "Wall time"]];

/** Images the run has trained on after `step` steps (the engine's sampling: full epochs of
 *  `trainSize` images, a short last batch unless drop_last; `batch` per step otherwise). */
export function imagesAt(step, { stepsPerEpoch: spe, trainSize: n, batch: b, perStep }) {
  if (perStep || !spe || !n) return step * b;
  const full = Math.floor(step / spe);
  return full * n + Math.min((step - full * spe) * b, n);
}

/**
 * How one run's points map to an x axis: `{mode, label, at(i), atStep(s), lower(x)}` where
 * at(i) is point i's x, atStep(s) a step's x (null when unknown), lower(x) / upper(x) the first
 * point index with x >= x / x > x. Falls back to the step when the run lacks what the axis needs.
 */
export function xScale(state, mode) {
  const p = state.progress, n = p.n, steps = p.step.buf;
  const t = (state.config && state.config.train) || {};
  const spe = state.stepsPerEpoch;
  let ofStep = null;
  if (mode === "epoch" && spe) ofStep = (s) => s / spe;
  else if (mode === "images" && t.batch_size) {
    const o = { stepsPerEpoch: spe, trainSize: state.trainSize, batch: t.batch_size, perStep: t.drop_last || t.sampling === "replacement" };
    ofStep = (s) => imagesAt(s, o);
  } else if (mode !== "time") { mode = "step"; ofStep = (s) => s; }
  const time = p.time ? p.time.buf : null;
  if (!ofStep && !time) { mode = "step"; ofStep = (s) => s; }
  const at = ofStep ? (i) => ofStep(steps[i]) : (i) => time[i];
  const atStep = ofStep || ((s) => (n ? time[Math.min(n - 1, lowerBound(steps, n, s))] : null));
  const search = (x, strict) => { let lo = 0, hi = n; while (lo < hi) { const m = (lo + hi) >> 1; if (at(m) < x || (strict && at(m) === x)) lo = m + 1; else hi = m; } return lo; };
  return { mode, label: X_AXES.find(([k]) => k === mode)[1], at, atStep, fromStep: !!ofStep,
    lower: (x) => search(x, false), upper: (x) => search(x, true) };
}

/** The [lo, hi] of the p-th and (1-p)-th quantiles of the finite values in `cols` (null when
 *  there are none), for "Ignore outliers". */
export function quantileRange(cols, p = 0.01) {
  const vals = [];
  for (const c of cols) for (const v of c) if (v != null && Number.isFinite(v)) vals.push(v);
  if (!vals.length) return null;
  vals.sort((a, b) => a - b);
  const q = (f) => vals[Math.min(vals.length - 1, Math.max(0, Math.round(f * (vals.length - 1))))];
  return [q(p), q(1 - p)];
}
