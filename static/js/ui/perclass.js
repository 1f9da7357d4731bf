// Per-class test accuracy over time: one line per class, from each eval's confusion matrix
// (reducer.js perClassAccuracy: the diagonal over the row sum). A class that lags the others,
// or one that falls while the total rises, shows at once.

import { h, clear, fmtInt, fmtPct } from "./dom.js";
import { COLORS, RUN_COLORS } from "./charts.js";
import { perClassAccuracy } from "../reducer.js";

// ten distinguishable colours: Okabe-Ito plus two
const CLASS_COLORS = [...RUN_COLORS, "#7c3aed", "#8c564b"];
const STEP_INCRS = [];
for (let e = 1; e <= 1e8; e *= 10) STEP_INCRS.push(e, 2 * e, 5 * e);

export class PerClassChart {
  constructor(root, { height = 240 } = {}) {
    this.root = root;
    this.height = height;
    this.readout = h("p", { class: "readout small" }, "No evaluation yet.");
    this.plotEl = h("div", { class: "plot", role: "img", "aria-label": "Per-class test accuracy chart" });
    clear(root).append(this.readout, this.plotEl);
    this.nClasses = -1;
    this.key = "";
    this.ro = new ResizeObserver(() => { this.key = ""; });
    this.ro.observe(root);
  }

  build(names) {
    if (this.u) this.u.destroy();
    const series = [{ label: "Step", value: (u, v) => (v == null ? "–" : fmtInt(v)) }];
    names.forEach((n, i) => series.push({ label: String(n), stroke: CLASS_COLORS[i % CLASS_COLORS.length], width: 1.5,
      spanGaps: true, points: { show: true, size: 4 }, value: (u, v) => fmtPct(v, 1) }));
    this.u = new uPlot({
      width: this.width(), height: this.height, series,
      scales: { x: { time: false }, y: { range: (u, lo, hi) => [Math.max(0, Math.min(lo ?? 0, (hi ?? 1) - 0.05)), 1] } },
      // steps are integers: ticks at 1, 2, 5 x 10^k only (else a short run reads "4 4 5 5")
      axes: [{ stroke: COLORS.axis, grid: { stroke: COLORS.grid }, incrs: STEP_INCRS, values: (u, vals) => vals.map((v) => fmtInt(v)) },
        { stroke: COLORS.axis, grid: { stroke: COLORS.grid }, size: 50, values: (u, vals) => vals.map((v) => (v == null ? "" : Math.round(v * 100) + "%")) }],
      legend: { live: true },
      cursor: { sync: { key: "run" } },
    }, series.map(() => []), this.plotEl);
    this.nClasses = names.length;
  }

  width() { return Math.max(200, this.root.clientWidth); }

  reset() { this.key = ""; if (this.u) this.u.setData(this.u.series.map(() => [])); this.readout.textContent = "No evaluation yet."; }

  /** The number of class series drawn (for tests and the caption). */
  get series() { return this.u ? this.u.series.length - 1 : 0; }

  update(state) {
    if (!state || !state.evals.n) { if (this.key !== "none") { this.reset(); this.key = "none"; } return; }
    const key = `${state.runId}|${state.evals.n}|${this.width()}`;
    if (key === this.key) return;
    this.key = key;
    const pc = perClassAccuracy(state);
    const names = state.classNames || pc.classes.map((_, i) => String(i));
    if (names.length !== this.nClasses) this.build(names);
    if (this.u.width !== this.width()) this.u.setSize({ width: this.width(), height: this.height });
    this.u.setData([pc.step, ...names.map((_, i) => pc.classes[i] || pc.step.map(() => null))]);
    const last = pc.step.length - 1;
    if (last < 0) { this.readout.textContent = "No confusion matrix yet."; return; }
    let worst = -1;
    names.forEach((_, i) => { const v = pc.classes[i] && pc.classes[i][last]; if (v != null && (worst < 0 || v < pc.classes[worst][last])) worst = i; });
    this.readout.textContent = `${names.length} classes, ${pc.step.length} evaluations; at step ${fmtInt(pc.step[last])} the weakest class is ${names[worst]} (${fmtPct(pc.classes[worst][last], 1)}).`;
    this.plotEl.setAttribute("aria-label", `Per-class test accuracy, ${names.length} lines, ${pc.step.length} evaluations`);
  }
}
