// Live charts on uPlot (vendored, window.uPlot). One RunChart per metric (loss, accuracy,
// learning rate) of the watched run; a CompareChart overlays several runs.
// The chart never draws more than ~2 points per pixel column: series.js decimates (min/max per
// bucket) over the visible range, so 20,000 or 200,000 steps cost the same to draw. Drag to
// zoom in on a range of steps (it is re-decimated at full detail), double-click to zoom out.

import { h, clear, fmtNum, fmtPct, fmtInt, fmtDuration } from "./dom.js";
import { Smoother, decimate, lowerBound, xScale, quantileRange } from "./series.js";

export const COLORS = {
  raw: "rgba(0, 114, 178, 0.28)", smooth: "#0072B2", train: "#009E73", test: "#D55E00",
  marker: "#7c3aed", mark: "#111827", diverged: "#b91c1c", grid: "rgba(0,0,0,0.07)", axis: "#4b5563",
  parent: "rgba(75, 85, 99, 0.45)",
};
// Okabe-Ito, readable for colour-blind people, for overlaid runs.
export const RUN_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"];

const KINDS = {
  loss: {
    title: "Loss", raw: "loss", rawLabel: "Batch loss", smoothLabel: "Smoothed",
    evals: [["trainLoss", "Train (eval)", COLORS.train], ["testLoss", "Test (eval)", COLORS.test]],
    fmt: (v) => fmtNum(v, 4), logToggle: true,
  },
  accuracy: {
    title: "Accuracy", raw: "accuracy", rawLabel: "Batch accuracy", smoothLabel: "Smoothed",
    evals: [["trainAccuracy", "Train (eval)", COLORS.train], ["testAccuracy", "Test (eval)", COLORS.test]],
    fmt: (v) => fmtPct(v, 2), pct: true,
  },
  lr: { title: "Learning rate", raw: "lr", rawLabel: "Learning rate", fmt: (v) => fmtNum(v, 3), solid: true, logToggle: true },
};

// Steps are integers: tick at 1, 2, 5 x 10^k only, and never show a range narrower than 10 steps.
const STEP_INCRS = [];
for (let e = 1; e <= 1e8; e *= 10) STEP_INCRS.push(e, 2 * e, 5 * e);
const stepRange = (u, lo, hi) => (lo == null ? [0, 10] : hi - lo < 10 ? [Math.max(0, Math.floor(lo)), Math.max(0, Math.floor(lo)) + 10] : [lo, hi]);
const stepAxis = () => axisStyle({ size: 36, incrs: STEP_INCRS, values: (u, vals) => vals.map((v) => fmtInt(v)) });

/** A wall time in seconds as people read it: "12.5 s", "3:05", "1:02:03". */
export function fmtSeconds(v) { return v == null || !Number.isFinite(v) ? "–" : v < 60 ? `${+v.toFixed(1)} s` : fmtDuration(v); }
const fmtCompact = (v) => { const a = Math.abs(v); return a >= 1e6 ? `${+(v / 1e6).toFixed(2)}M` : a >= 1e4 ? `${+(v / 1e3).toFixed(1)}k` : fmtInt(v); };

/** The x axis of a mode ("step" | "epoch" | "images" | "time"): {axis, range, fmt, label}. */
export function xAxisOf(mode) {
  if (mode === "epoch") return { label: "Epoch", fmt: (v) => (v == null ? "–" : (+v).toFixed(2)), range: anyRange(0.01),
    axis: axisStyle({ size: 36, values: numTicks }) };
  if (mode === "images") return { label: "Images seen", fmt: (v) => fmtInt(v), range: anyRange(10),
    axis: axisStyle({ size: 36, incrs: STEP_INCRS, values: (u, vals) => vals.map((v) => (v == null ? "" : fmtCompact(v))) }) };
  if (mode === "time") return { label: "Wall time", fmt: fmtSeconds, range: anyRange(1),
    axis: axisStyle({ size: 36, values: (u, vals) => vals.map((v) => (v == null ? "" : v < 60 ? `${+v.toFixed(2)}s` : fmtDuration(v))) }) };
  return { label: "Step", fmt: (v) => (v == null ? "–" : fmtInt(v)), range: stepRange, axis: stepAxis() };
}
const anyRange = (minWidth) => (u, lo, hi) => (lo == null ? [0, minWidth] : hi - lo < minWidth ? [Math.max(0, lo), Math.max(0, lo) + minWidth] : [lo, hi]);

/** The y range: the data's (or, with `clip`, the clipped quantiles') padded to round values;
 *  `pct` keeps it inside 0..1 (accuracy follows the data, it is not pinned to 0..1). */
function yRangeOf(lo, hi, { clip = null, pct = false, log = false } = {}) {
  if (clip) [lo, hi] = clip;
  if (lo == null || hi == null || !Number.isFinite(lo) || !Number.isFinite(hi)) return pct ? [0, 1] : log ? [0.1, 10] : [0, 1];
  if (log) { lo = Math.max(lo, 1e-300); return clip ? [lo / 1.2, hi * 1.2] : uPlot.rangeLog(lo, hi, 10, true); }
  let [a, b] = uPlot.rangeNum(lo, hi, 0.05, true);
  if (pct) {
    a = Math.max(0, a); b = Math.min(1, b);
    if (b - a < 0.01) { a = Math.max(0, Math.min(a, b - 0.01)); b = Math.min(1, a + 0.01); }
  }
  return [a, b];
}

/** Tick labels with as many decimals as the tick spacing needs ("1e+5", "0.25", "2.5e-4"). */
export function numTicks(u, vals, axis, space, incr) {
  const d = incr > 0 ? Math.max(0, -Math.floor(Math.log10(incr))) : 2;
  const big = Math.max(0, ...vals.map((v) => Math.abs(v || 0)));
  const sci = big >= 1e5 || (big > 0 && big < 1e-3);
  return vals.map((v) => {
    if (v == null) return "";
    if (sci) return v === 0 ? "0" : v.toExponential(2).replace(/\.?0+e/, "e");
    return v.toFixed(Math.min(d, 6));
  });
}
/** Log axes: each tick at its own magnitude ("10", "1", "0.1", "1e-4"). */
export function logTicks(u, vals) {
  return vals.map((v) => {
    if (v == null || !(v > 0)) return "";
    if (v >= 1e5 || v < 1e-3) return v.toExponential(0);
    return v >= 1 ? String(Math.round(v)) : String(+v.toPrecision(1));
  });
}

function pctTicks(u, vals, axis, space, incr) {
  const d = incr > 0 ? Math.max(0, -Math.floor(Math.log10(incr * 100))) : 0;
  return vals.map((v) => (v == null ? "" : (v * 100).toFixed(Math.min(d, 3)) + "%"));
}

function axisStyle(extra = {}) {
  return { stroke: COLORS.axis, grid: { stroke: COLORS.grid, width: 1 }, ticks: { stroke: COLORS.grid, width: 1 },
    font: "12px system-ui, sans-serif", ...extra };
}

/** Draws vertical markers (hyperparameter changes, divergence) behind the series. Labels of
 *  `row: 1` markers (a fall in accuracy) go on a second line, so an lr marker's label does not
 *  hide them. */
function markerPlugin(getMarkers) {
  return {
    hooks: {
      drawAxes: [(u) => {
        const marks = getMarkers();
        if (!marks.length) return;
        const { ctx } = u;
        const { top, height, left, width } = u.bbox;
        const dpr = devicePixelRatio || 1;
        ctx.save();
        ctx.font = `${11 * dpr}px system-ui, sans-serif`;
        ctx.textBaseline = "top";
        const lastLabelX = [-Infinity, -Infinity];
        for (const m of marks) {
          if (m.x == null) continue;
          const x = Math.round(u.valToPos(m.x, "x", true));
          if (x < left || x > left + width) continue;
          ctx.strokeStyle = m.color; ctx.lineWidth = dpr * 1.5;
          ctx.setLineDash([4 * dpr, 3 * dpr]);
          ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
          const row = m.row || 0;
          if (x - lastLabelX[row] > 80 * dpr) {
            ctx.fillStyle = m.color;
            const tw = ctx.measureText(m.label).width;
            const tx = x + 4 * dpr + tw > left + width ? x - 4 * dpr - tw : x + 4 * dpr;
            ctx.fillText(m.label, tx, top + (2 + 14 * row) * dpr);
            lastLabelX[row] = x;
          }
        }
        ctx.restore();
      }],
    },
  };
}

export function markerList(state) {
  const out = [];
  for (const m of state.markers) {
    const parts = Object.entries(m.changes).map(([k, v]) => `${k === "weight_decay" ? "wd" : k} ${fmtNum(v, 3)}`);
    out.push({ step: m.step, label: parts.join(", "), color: COLORS.marker });
  }
  if (state.diverged) out.push({ step: state.diverged.step, label: "diverged", color: COLORS.diverged });
  for (const c of state.continuations || []) out.push({ step: c.step, label: "continued", color: COLORS.marker });
  if (state.startStep) out.push({ step: state.startStep, label: "forked here", color: COLORS.marker });
  // a live change after which accuracy fell sharply (reducer.js: wrecks), at the eval that showed it
  for (const w of state.wrecks || []) {
    out.push({ step: w.step, label: `test ${fmtPct(w.before.acc, 1)} → ${fmtPct(w.after.acc, 1)}${w.undone != null ? " (undone)" : ""}`, color: COLORS.diverged, row: 1 });
  }
  return out;
}

class ZoomableChart {
  buildBase(root, title, extraControls = []) {
    this.root = root;
    this.zoom = null;
    this.readout = h("p", { class: "readout small", "aria-live": "off" }, "");
    this.resetZoomBtn = h("button", { type: "button", class: "link small", hidden: true, onclick: () => this.setZoom(null) }, "Reset zoom");
    this.plotEl = h("div", { class: "plot", role: "img", "aria-label": title + " chart" });
    clear(root).append(h("div", { class: "chart-head" }, this.readout, ...extraControls, this.resetZoomBtn), this.plotEl);
    this.plotEl.addEventListener("dblclick", () => this.setZoom(null));
    this.ro = new ResizeObserver(() => { this.key = ""; this.onResize && this.onResize(); });
    this.ro.observe(root);
  }
  /** Zoom to [x0, x1] (x-axis units) or back out (null); with `onZoom` the owner decides
   *  (the run charts zoom together) and calls showZoom on each. */
  setZoom(z) {
    if (this.onZoom) { this.onZoom(z); return; }
    this.showZoom(z);
  }
  showZoom(z) {
    if (z === this.zoom) return;
    this.zoom = z;
    this.resetZoomBtn.hidden = !z;
    this.key = "";
    this.onResize && this.onResize();
  }
  selectHook() {
    return (u) => {
      const s = u.select;
      if (s.width > 8) {
        const a = u.posToVal(s.left, "x"), b = u.posToVal(s.left + s.width, "x");
        u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
        this.setZoom([Math.min(a, b), Math.max(a, b)]);
      }
    };
  }
  size() {
    const w = Math.max(200, this.root.clientWidth);
    return { width: w, height: this.height };
  }
}

export class RunChart extends ZoomableChart {
  /** @param kind "loss" | "accuracy" | "lr"; @param requestDraw called when the chart needs a frame */
  constructor(root, kind, { height = 220, syncKey = "run", requestDraw = () => {}, onPick = null, onZoom = null, onLog = null } = {}) {
    super();
    this.onPick = onPick;
    this.onZoom = onZoom;
    this.onLog = onLog;
    this.xMode = "step";
    this.yClip = null;
    this.drawnSteps = [];
    this.kind = KINDS[kind];
    this.kindName = kind;
    this.height = height;
    this.syncKey = syncKey;
    this.requestDraw = requestDraw;
    this.smoother = new Smoother();
    this.markers = [];
    this.log = false;
    const controls = [];
    if (this.kind.logToggle) {
      const id = `log-${kind}`;
      this.logBox = h("input", { type: "checkbox", id, onchange: () => { this.setLog(this.logBox.checked); this.onLog && this.onLog(this.log); } });
      // named after its chart: two checkboxes never share the name "Log scale"
      controls.push(h("label", { class: "small check", for: id }, this.logBox, ` Log scale (${this.kind.title.toLowerCase()})`));
    }
    this.buildBase(root, this.kind.title, controls);
    this.onResize = () => this.requestDraw();
    if (onPick) {
      // a click (not the end of a zoom drag) picks the step under the cursor: "Fork from here"
      let down = null;
      this.plotEl.addEventListener("mousedown", (e) => { down = [e.clientX, e.clientY]; });
      this.plotEl.addEventListener("click", (e) => {
        if (down && Math.hypot(e.clientX - down[0], e.clientY - down[1]) > 4) return;
        const i = this.u.cursor.idx;
        const step = i == null ? null : this.drawnSteps[i];
        if (step != null) this.onPick(step);
      });
      this.plotEl.title = "Click a point to fork a new run from the checkpoint nearest to it";
    }
    this.rebuild();
  }

  setLog(on) {
    if (this.logBox) this.logBox.checked = !!on;
    if (!!on === this.log) return;
    this.log = !!on;
    this.rebuild();
    this.requestDraw();
  }

  rebuild() {
    if (this.u) this.u.destroy();
    const k = this.kind;
    const xa = xAxisOf(this.xMode);
    const series = [{ label: xa.label, value: (u, v) => xa.fmt(v) }];
    series.push({ label: k.rawLabel, stroke: k.solid ? COLORS.smooth : COLORS.raw, width: k.solid ? 2 : 1,
      points: { show: false }, value: (u, v) => k.fmt(v), spanGaps: true });
    if (!k.solid) series.push({ label: k.smoothLabel, stroke: COLORS.smooth, width: 2, value: (u, v) => k.fmt(v), spanGaps: true });
    for (const [, label, color] of k.evals || []) {
      series.push({ label, stroke: color, width: 2, spanGaps: true, value: (u, v) => k.fmt(v),
        points: { show: true, size: 6, fill: color, stroke: color } });
    }
    // a fork's ancestors up to where it started, faded (view.lineage; empty for other runs)
    if (this.withPrefix) {
      series.push({ label: "Before the fork", stroke: COLORS.parent, width: 1.5, spanGaps: true,
        points: { show: false }, value: (u, v) => k.fmt(v) });
    }
    this.nSeries = series.length;
    const range = (u, lo, hi) => yRangeOf(lo, hi, { clip: this.yClip, pct: k.pct && !this.log, log: this.log });
    const y = this.log ? { distr: 3, range } : { range };
    const yAxis = axisStyle({ size: 60 });
    yAxis.values = this.log ? logTicks : k.pct ? pctTicks : numTicks;
    this.u = new uPlot({
      ...this.size(),
      series,
      scales: { x: { time: false, range: xa.range }, y },
      axes: [xa.axis, yAxis],
      legend: { live: true },
      cursor: { sync: { key: this.syncKey }, drag: { x: true, y: false, setScale: false }, focus: { prox: 16 } },
      focus: { alpha: 0.35 },
      plugins: [markerPlugin(() => this.markers)],
      hooks: { setSelect: [this.selectHook()] },
    }, series.map(() => []), this.plotEl);
    this.key = "";
  }

  reset() {
    this.smoother.reset(0);
    this.runId = null;
    this.key = "";
    this.markers = [];
    this.drawnSteps = [];
    this.u.setData(Array.from({ length: this.nSeries }, () => []));
    this.readout.textContent = "No run selected: start one, or pick one in the run list.";
  }

  update(state, view) {
    if (!state) { if (this.runId !== null || !this.readout.textContent) this.reset(); return; }
    if (state.runId !== this.runId) { this.reset(); this.runId = state.runId; }
    if ((view.zoom || null) !== this.zoom) this.showZoom(view.zoom || null);
    const p = state.progress, ev = state.evals;
    const smoothing = this.kind.solid ? 0 : view.smoothing;
    const { width } = this.size();
    const xs = xScale(state, view.xAxis || "step");
    let pre = view.lineage ? view.lineage(this.kind.raw) : { step: [], value: [] };
    if (!xs.fromStep) pre = { step: [], value: [] };        // ancestors' wall times are another clock
    if ((pre.step.length > 0) !== !!this.withPrefix || xs.mode !== this.xMode) {   // the faded series only for a fork
      this.withPrefix = pre.step.length > 0;
      this.xMode = xs.mode;
      this.rebuild();
    }
    const clipOn = !!view.ignoreOutliers && !this.kind.solid;
    const key = `${p.n}|${ev.n}|${state.markers.length}|${!!state.diverged}|${(state.wrecks || []).map((w) => `w${w.undone}`).join()}|${smoothing}|${this.log}|${this.zoom}|${width}|${pre.step.length}|${(state.continuations || []).length}|${view.mark ?? ""}|${xs.mode}|${clipOn}`;
    if (key === this.key) return;
    this.key = key;
    if (this.u.width !== width) this.u.setSize(this.size());
    const n = p.n, steps = p.step.buf, raw = p[this.kind.raw].buf;
    const smooth = this.kind.solid ? null : this.smoother.extend(raw, n, smoothing);
    // visible range (the zoom is in x-axis units; every axis grows with the step)
    let i0 = 0, i1 = n;
    if (this.zoom) { i0 = xs.lower(this.zoom[0]); i1 = Math.max(i0, xs.upper(this.zoom[1])); }
    // evaluation points, placed on the progress point of their step
    const evalIdx = [], evalPos = [];
    for (let j = 0; j < ev.n; j++) {
      const i = lowerBound(steps, n, ev.step[j]);
      if (i < i0 || i >= i1) continue;
      evalIdx.push(i); evalPos.push(j);
    }
    const plotW = Math.max(100, this.u.bbox.width / (devicePixelRatio || 1));
    const idx = decimate(raw, i0, i1, Math.min(4000, Math.round(plotW * 2)), evalIdx);
    const m = idx.length;
    const data = [new Array(m), new Array(m)];
    const drawn = new Array(m);
    if (smooth) data.push(new Array(m));
    const evalCols = (this.kind.evals || []).map(() => new Array(m).fill(null));
    const positive = (v) => (this.log && !(v > 0) ? null : (Number.isFinite(v) ? v : null));
    for (let a = 0; a < m; a++) {
      const i = idx[a];
      data[0][a] = xs.at(i);
      drawn[a] = steps[i];
      data[1][a] = positive(raw[i]);
      if (smooth) data[2][a] = positive(smooth[i]);
    }
    if (evalCols.length) {
      // map each eval to its position in idx (both sorted)
      let a = 0;
      for (let e = 0; e < evalIdx.length; e++) {
        while (a < m && idx[a] < evalIdx[e]) a++;
        if (a >= m) break;
        const j = evalPos[e];
        this.kind.evals.forEach(([field], c) => { evalCols[c][a] = positive(ev[field][j]); });
      }
    }
    data.push(...evalCols);
    // the prefix: ancestors' points in the visible range, before this run's first step
    const preX = pre.step.map((st) => xs.atStep(st));
    const keep = preX.map((x) => !this.zoom || (x >= this.zoom[0] && x <= this.zoom[1]));
    const preStep = pre.step.filter((_, j) => keep[j]);
    const preXs = preX.filter((_, j) => keep[j]);
    const preVal = pre.value.filter((_, j) => keep[j]).map((v) => (this.log && !(v > 0) ? null : (Number.isFinite(v) ? v : null)));
    const nulls = preStep.map(() => null);
    const full = [preXs.concat(data[0])];
    for (let c = 1; c < data.length; c++) full.push(nulls.concat(data[c]));
    if (this.withPrefix) full.push(preVal.concat(new Array(m).fill(null)));
    this.drawnSteps = preStep.concat(drawn);
    this.markers = markerList(state);
    // the time-lapse's step (timelapse.js), while it is held
    if (view.mark != null) this.markers.push({ step: view.mark, label: `step ${fmtInt(view.mark)}`, color: COLORS.mark, mark: true });
    for (const mk of this.markers) mk.x = xs.atStep(mk.step);
    // "Ignore outliers": the y range spans the 1st..99th percentile of the points drawn (batch
    // values, evaluations, a fork's prefix; not the smoothed line, which a spike drags along)
    this.yClip = clipOn ? quantileRange(full.filter((_, c) => c > 0 && !(smooth && c === 2)), 0.01) : null;
    this.u.setData(full);
    // readout: the newest values in words
    if (n) {
      const last = n - 1;
      let txt = `step ${fmtInt(steps[last])}: ${this.kind.rawLabel.toLowerCase()} ${this.kind.fmt(raw[last])}`;
      if (smooth) txt += `, smoothed ${this.kind.fmt(smooth[last])}`;
      if (this.kind.evals && ev.n) {
        const [tr, te] = this.kind.evals;
        txt += ` · eval at ${fmtInt(ev.step[ev.n - 1])}: train ${this.kind.fmt(ev[tr[0]][ev.n - 1])}, test ${this.kind.fmt(ev[te[0]][ev.n - 1])}`;
      }
      const w = this.kindName === "accuracy" && state.wrecks && state.wrecks[state.wrecks.length - 1];
      if (w) txt += ` · test fell ${fmtPct(w.before.acc, 1)} → ${fmtPct(w.after.acc, 1)} after the change at step ${fmtInt(w.changeStep)}${w.undone != null ? " (undone)" : ""}`;
      this.readout.textContent = txt;
    } else {
      this.readout.textContent = "No points yet.";
    }
  }
}

/** Several runs on one chart: smoothed training loss, or test accuracy at each evaluation. */
export class CompareChart extends ZoomableChart {
  constructor(root, metric, { height = 240, requestDraw = () => {}, onZoom = null } = {}) {
    super();
    this.metric = metric; // "loss" | "testAccuracy" | "u0" (a Deep BSDE run's, every step)
    this.height = height;
    this.requestDraw = requestDraw;
    this.onZoom = onZoom;
    this.smoothers = new Map();
    this.xMode = "step";
    this.yClip = null;
    this.buildBase(root, { loss: "Compare loss", u0: "Compare u0" }[metric] || "Compare test accuracy");
    this.onResize = () => this.requestDraw();
    this.sig = "";
  }

  build(runs) {
    if (this.u) this.u.destroy();
    const pct = this.metric === "testAccuracy";
    const fmt = pct ? (v) => fmtPct(v, 2) : (v) => fmtNum(v, 4);
    const xa = xAxisOf(this.xMode);
    const series = [{ label: xa.label, value: (u, v) => xa.fmt(v) }];
    runs.forEach((r, i) => series.push({
      label: r.label, stroke: RUN_COLORS[i % RUN_COLORS.length], width: 2, spanGaps: true,
      value: (u, v) => fmt(v), points: { show: pct, size: 5, fill: RUN_COLORS[i % RUN_COLORS.length] },
    }));
    const yAxis = axisStyle({ size: 60, values: pct ? pctTicks : numTicks });
    this.u = new uPlot({
      ...this.size(), series, scales: { x: { time: false, range: xa.range }, y: { range: (u, lo, hi) => yRangeOf(lo, hi, { clip: this.yClip, pct }) } },
      axes: [xa.axis, yAxis],
      legend: { live: true }, cursor: { drag: { x: true, y: false, setScale: false } },
      hooks: { setSelect: [this.selectHook()] },
    }, series.map(() => []), this.plotEl);
  }

  /** @param runs [{state, label}]; view: {smoothing, xAxis, ignoreOutliers, compareZoom} */
  update(runs, view) {
    const mode = view.xAxis || "step";
    const sig = runs.map((r) => r.state.runId + ":" + r.label).join("|") + "|" + mode;
    if (sig !== this.sig || !this.u) { this.sig = sig; this.xMode = mode; this.build(runs); this.key = ""; }
    if (this.onZoom && (view.compareZoom || null) !== this.zoom) this.showZoom(view.compareZoom || null);
    const { width } = this.size();
    const clipOn = !!view.ignoreOutliers;
    const key = runs.map((r) => `${r.state.progress.n}/${r.state.evals.n}/${r.state.stepsPerEpoch}`).join("|") + `|${view.smoothing}|${this.zoom}|${width}|${clipOn}`;
    if (key === this.key) return;
    this.key = key;
    if (this.u.width !== width) this.u.setSize(this.size());
    const plotW = Math.max(100, this.u.bbox.width / (devicePixelRatio || 1));
    const cols = [];
    for (const { state } of runs) {
      const xs = xScale(state, mode);
      if (this.metric === "loss" || this.metric === "u0") {
        const p = state.progress, u = state.bsde.u0;
        const n = this.metric === "u0" ? Math.min(u.n, p.n) : p.n;
        let y = u.buf;
        if (this.metric === "loss") {
          let sm = this.smoothers.get(state.runId);
          if (!sm) { sm = new Smoother(); this.smoothers.set(state.runId, sm); }
          y = sm.extend(p.loss.buf, n, view.smoothing);
        }
        let i0 = 0, i1 = n;
        if (this.zoom) { i0 = xs.lower(this.zoom[0]); i1 = Math.max(i0, xs.upper(this.zoom[1])); }
        const idx = decimate(y, i0, i1, Math.min(2000, Math.round(plotW)));
        cols.push([idx.map((i) => xs.at(i)), idx.map((i) => (Number.isFinite(y[i]) ? y[i] : null))]);
      } else {
        const e = state.evals;
        const xv = [], ys = [];
        for (let j = 0; j < e.n; j++) {
          const x = xs.atStep(e.step[j]);
          if (x == null || (this.zoom && (x < this.zoom[0] || x > this.zoom[1]))) continue;
          if (xv.length && xv[xv.length - 1] >= x) continue;
          xv.push(x); ys.push(e.testAccuracy[j]);
        }
        cols.push([xv, ys]);
      }
    }
    const data = cols.length ? uPlot.join(cols) : [[]];
    this.yClip = clipOn ? quantileRange(data.slice(1), 0.01) : null;
    this.u.setData(data);
    this.readout.textContent = this.metric === "loss"
      ? `Smoothed training loss (smoothing ${view.smoothing}) against ${xAxisOf(mode).label.toLowerCase()}`
      : this.metric === "u0" ? `u0 at each step, against ${xAxisOf(mode).label.toLowerCase()}`
      : "Test accuracy at each evaluation";
  }
}
