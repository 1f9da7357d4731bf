// The sweep page's plots, on plain canvases: a parallel-coordinates plot (one line per trial,
// coloured by the objective, axes brushable), the objective against each parameter, and every
// trial's loss curve overlaid. Each is redrawn from the folded sweep state.

import { h, clear, fmtNum } from "../ui/dom.js";
import { objectiveOf, objectiveSpec, paramPaths, paramSpec, numericValues } from "./state.js";

/** Viridis-like ramp: 0 (worst) purple -> 1 (best) yellow. */
export function rampColor(t, alpha = 1) {
  const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const x = Math.max(0, Math.min(1, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x)), f = x - i;
  const c = stops[i].map((v, k) => Math.round(v + (stops[i + 1][k] - v) * f));
  return `rgba(${c[0]}, ${c[1]}, ${c[2]}, ${alpha})`;
}

function setupCanvas(canvas, cssW, cssH) {
  const dpr = window.devicePixelRatio || 1;
  canvas.style.width = `${cssW}px`; canvas.style.height = `${cssH}px`;
  if (canvas.width !== Math.round(cssW * dpr)) canvas.width = Math.round(cssW * dpr);
  if (canvas.height !== Math.round(cssH * dpr)) canvas.height = Math.round(cssH * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  ctx.font = "11px system-ui, sans-serif";
  return ctx;
}

/** Position of a value on an axis in [0, 1] (log where the parameter's range is log). */
function scaler(values, log) {
  const xs = values.filter((v) => v != null && Number.isFinite(v) && (!log || v > 0)).map((v) => (log ? Math.log10(v) : v));
  let lo = Math.min(...xs), hi = Math.max(...xs);
  if (!xs.length) { lo = 0; hi = 1; }
  if (hi === lo) { lo -= 0.5; hi += 0.5; }
  const f = (v) => (v == null || !Number.isFinite(v) || (log && v <= 0) ? null : ((log ? Math.log10(v) : v) - lo) / (hi - lo));
  f.inv = (p) => { const v = lo + p * (hi - lo); return log ? 10 ** v : v; };
  return f;
}

/** Objective -> colour position in [0, 1], best = 1 (direction-aware). */
export function objectiveScale(state, trials) {
  const vals = trials.map((t) => objectiveOf(state, t)).filter((v) => v != null);
  const lo = Math.min(...vals), hi = Math.max(...vals);
  const max = objectiveSpec(state).direction !== "minimize";
  return (v) => (v == null || !vals.length ? null : hi === lo ? 1 : (max ? (v - lo) / (hi - lo) : (hi - v) / (hi - lo)));
}

export class ParallelCoords {
  constructor(root, { onBrush }) {
    this.onBrush = onBrush;
    this.brushes = {};            // axis key -> [p0, p1] in axis units (0 bottom .. 1 top)
    this.canvas = h("canvas", { class: "pcoords", role: "img", "aria-label": "Parallel coordinates: one line per trial" });
    this.note = h("p", { class: "small muted" }, "Drag along an axis to keep only the trials in that range; click an axis to clear it.");
    clear(root).append(this.canvas, this.note);
    this.canvas.addEventListener("mousedown", (e) => this.down(e));
    window.addEventListener("mousemove", (e) => this.move(e));
    window.addEventListener("mouseup", (e) => this.up(e));
    this.drag = null;
  }

  layout() {
    const w = Math.max(320, this.canvas.parentElement.clientWidth - 4), hgt = 260;
    const axes = this.axes || [];
    const left = 60, right = 60, top = 28, bottom = 30;
    const xs = axes.map((_, i) => left + (axes.length === 1 ? 0 : i * (w - left - right) / (axes.length - 1)));
    return { w, h: hgt, top, bottom, xs, plotH: hgt - top - bottom };
  }

  toAxisUnits(e) {
    const r = this.canvas.getBoundingClientRect(), L = this.layout();
    const x = e.clientX - r.left, y = e.clientY - r.top;
    let best = -1, dist = 24;
    L.xs.forEach((ax, i) => { if (Math.abs(ax - x) < dist) { dist = Math.abs(ax - x); best = i; } });
    return { axis: best, p: 1 - (y - L.top) / L.plotH };
  }

  down(e) {
    const { axis, p } = this.toAxisUnits(e);
    if (axis < 0) return;
    this.drag = { axis, p0: Math.max(0, Math.min(1, p)), moved: false };
    e.preventDefault();
  }

  move(e) {
    if (!this.drag) return;
    const { p } = this.toAxisUnits(e);
    const key = this.axes[this.drag.axis].key;
    const p1 = Math.max(0, Math.min(1, p));
    if (Math.abs(p1 - this.drag.p0) > 0.01) this.drag.moved = true;
    if (this.drag.moved) { this.brushes[key] = [Math.min(this.drag.p0, p1), Math.max(this.drag.p0, p1)]; this.draw(); }
  }

  up() {
    if (!this.drag) return;
    const key = this.axes[this.drag.axis].key;
    if (!this.drag.moved) delete this.brushes[key];
    this.drag = null;
    this.draw();
    this.onBrush(this.selected());
  }

  /** The trial numbers inside every brush (all when nothing is brushed). */
  selected() {
    const out = new Set();
    for (const t of this.trials || []) {
      let ok = true;
      for (const [key, [a, b]] of Object.entries(this.brushes)) {
        const ax = this.axes.find((x) => x.key === key);
        const p = ax ? ax.pos(t) : null;
        if (p == null || p < a - 1e-9 || p > b + 1e-9) { ok = false; break; }
      }
      if (ok) out.add(t.number);
    }
    return out;
  }

  update(state) {
    const trials = [...state.trials.values()].filter((t) => Object.keys(t.params || {}).length);
    this.trials = trials;
    const axes = paramPaths(state).map((path) => {
      const spec = paramSpec(state, path);
      const raw = trials.map((t) => t.params[path]);
      const categorical = !raw.every((v) => v == null || typeof v === "number");
      const nums = categorical ? numericValues(raw) : raw;
      const f = scaler(nums, !!spec.log && !categorical);
      const byTrial = new Map(trials.map((t, i) => [t.number, f(nums[i])]));
      const labels = categorical ? [...new Set(raw.map((v) => JSON.stringify(v)))].sort() : null;
      return { key: path, label: path, pos: (t) => byTrial.get(t.number) ?? null, f, log: !!spec.log, labels };
    });
    const objs = trials.map((t) => objectiveOf(state, t));
    const fo = scaler(objs, false);
    axes.push({ key: "__objective", label: objectiveSpec(state).metric, pos: (t) => fo(objectiveOf(state, t)), f: fo });
    for (const k of Object.keys(this.brushes)) if (!axes.some((a) => a.key === k)) delete this.brushes[k];
    this.axes = axes;
    this.color = objectiveScale(state, trials);
    this.state = state;
    this.draw();
  }

  draw() {
    if (!this.axes) return;
    const L = this.layout();
    const ctx = setupCanvas(this.canvas, L.w, L.h);
    const sel = this.selected();
    const y = (p) => L.top + (1 - p) * L.plotH;
    // lines: outside the brushes first, faded
    const order = [...this.trials].sort((a, b) => (sel.has(a.number) ? 1 : 0) - (sel.has(b.number) ? 1 : 0));
    for (const t of order) {
      const c = this.color(objectiveOf(this.state, t));
      const on = sel.has(t.number);
      ctx.strokeStyle = on ? (c == null ? "rgba(120,120,120,0.8)" : rampColor(c, t.status === "pruned" ? 0.45 : 0.95)) : "rgba(160,160,160,0.18)";
      ctx.lineWidth = on ? 1.6 : 1;
      ctx.beginPath();
      let started = false;
      this.axes.forEach((ax, i) => {
        const p = ax.pos(t);
        if (p == null) { started = false; return; }
        if (!started) { ctx.moveTo(L.xs[i], y(p)); started = true; } else ctx.lineTo(L.xs[i], y(p));
      });
      ctx.stroke();
    }
    // axes, labels, brushes
    this.axes.forEach((ax, i) => {
      const x = L.xs[i];
      ctx.strokeStyle = "#4b5563"; ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(x, L.top); ctx.lineTo(x, L.top + L.plotH); ctx.stroke();
      ctx.fillStyle = "#111827"; ctx.textAlign = "center";
      ctx.fillText(ax.label + (ax.log ? " (log)" : ""), x, 14);
      ctx.fillStyle = "#4b5563";
      const fmt = (v) => (ax.labels ? "" : fmtNum(v, 3));
      ctx.fillText(fmt(ax.f.inv(1)), x, L.top - 4 + 0);
      ctx.fillText(fmt(ax.f.inv(0)), x, L.top + L.plotH + 14);
      const b = this.brushes[ax.key];
      if (b) {
        ctx.fillStyle = "rgba(124, 58, 237, 0.18)"; ctx.strokeStyle = "#7c3aed";
        ctx.fillRect(x - 8, y(b[1]), 16, y(b[0]) - y(b[1]));
        ctx.strokeRect(x - 8, y(b[1]), 16, y(b[0]) - y(b[1]));
      }
    });
    this.canvas.dataset.axes = JSON.stringify(L.xs.map((x, i) => ({ key: this.axes[i].key, x, top: L.top, height: L.plotH })));
  }
}

/** The objective against one parameter, a dot per finished (or running) trial. */
export function drawScatter(canvas, state, path, width) {
  const trials = [...state.trials.values()].filter((t) => t.params && path in t.params && objectiveOf(state, t) != null);
  const W = width, H = 170, L = 52, R = 10, T = 18, B = 30;
  const ctx = setupCanvas(canvas, W, H);
  const spec = paramSpec(state, path);
  const raw = trials.map((t) => t.params[path]);
  const categorical = !raw.every((v) => typeof v === "number");
  const xs = categorical ? numericValues(raw) : raw;
  const fx = scaler(xs, !!spec.log && !categorical), fy = scaler(trials.map((t) => objectiveOf(state, t)), false);
  const color = objectiveScale(state, trials);
  ctx.strokeStyle = "#d1d5db"; ctx.strokeRect(L, T, W - L - R, H - T - B);
  ctx.fillStyle = "#111827"; ctx.textAlign = "left";
  ctx.fillText(`${objectiveSpec(state).metric} vs ${path}${spec.log ? " (log x)" : ""}`, L, 12);
  trials.forEach((t, i) => {
    const px = fx(xs[i]), py = fy(objectiveOf(state, t));
    if (px == null || py == null) return;
    ctx.fillStyle = rampColor(color(objectiveOf(state, t)), t.status === "pruned" ? 0.4 : 0.95);
    ctx.beginPath(); ctx.arc(L + px * (W - L - R), T + (1 - py) * (H - T - B), 4, 0, 2 * Math.PI); ctx.fill();
  });
  ctx.fillStyle = "#4b5563"; ctx.textAlign = "center";
  if (trials.length && !categorical) {
    ctx.fillText(fmtNum(fx.inv(0), 3), L, H - 12); ctx.fillText(fmtNum(fx.inv(1), 3), W - R, H - 12);
  }
  ctx.textAlign = "right";
  if (trials.length) { ctx.fillText(fmtNum(fy.inv(1), 4), L - 4, T + 8); ctx.fillText(fmtNum(fy.inv(0), 4), L - 4, H - B); }
  canvas.setAttribute("aria-label", `${objectiveSpec(state).metric} against ${path}: ${trials.length} trials`);
}

/** Every trial's loss curve (its progress, about once a second), best ``topK`` or all. */
export function drawCurves(canvas, state, width, topK, keep = null) {
  let trials = [...state.trials.values()].filter((t) => t.curve.length && (!keep || keep.has(t.number)));
  const max = objectiveSpec(state).direction !== "minimize";
  if (topK) {
    trials = trials.filter((t) => objectiveOf(state, t) != null)
      .sort((a, b) => (max ? objectiveOf(state, b) - objectiveOf(state, a) : objectiveOf(state, a) - objectiveOf(state, b))).slice(0, topK);
  }
  const W = width, H = 240, L = 52, R = 10, T = 10, B = 26;
  const ctx = setupCanvas(canvas, W, H);
  const steps = trials.flatMap((t) => t.curve.map((p) => p[0]));
  const losses = trials.flatMap((t) => t.curve.map((p) => p[1])).filter((v) => Number.isFinite(v) && v > 0);
  const fx = scaler(steps.length ? [0, ...steps] : [0, 1], false), fy = scaler(losses.length ? losses : [0.1, 1], true);
  const color = objectiveScale(state, trials);
  ctx.strokeStyle = "#d1d5db"; ctx.strokeRect(L, T, W - L - R, H - T - B);
  const order = trials.slice().sort((a, b) => (color(objectiveOf(state, a)) ?? -1) - (color(objectiveOf(state, b)) ?? -1));
  for (const t of order) {
    const c = color(objectiveOf(state, t));
    ctx.strokeStyle = c == null ? "rgba(120,120,120,0.5)" : rampColor(c, t.status === "pruned" ? 0.3 : 0.9);
    ctx.lineWidth = t.status === "pruned" ? 1 : 1.6;
    ctx.beginPath();
    t.curve.forEach(([s, v], i) => {
      const py = fy(v);
      if (py == null) return;
      const X = L + fx(s) * (W - L - R), Y = T + (1 - py) * (H - T - B);
      if (i === 0) ctx.moveTo(X, Y); else ctx.lineTo(X, Y);
    });
    ctx.stroke();
  }
  ctx.fillStyle = "#4b5563"; ctx.textAlign = "right";
  ctx.fillText(fmtNum(fy.inv(1), 3), L - 4, T + 8); ctx.fillText(fmtNum(fy.inv(0), 3), L - 4, H - B);
  ctx.textAlign = "center"; ctx.fillText("step", (L + W - R) / 2, H - 6);
  ctx.textAlign = "left"; ctx.fillText("0", L, H - 12);
  ctx.textAlign = "right"; ctx.fillText(fmtNum(fx.inv(1), 3), W - R, H - 12);
  canvas.setAttribute("aria-label", `Loss curves of ${trials.length} trials (log scale)`);
  return trials.length;
}
