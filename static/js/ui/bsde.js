// A Deep BSDE run's watch view and its design form. The run's state is the same fold as an
// image run's (reducer.js: state.bsde holds u0 per step, the bsde_eval points and the newest
// bsde_snapshot); these cards draw it:
//   - u0 against the step, with the equation's reference value and the preset's band;
//   - the validation loss on a log axis, with the "z = 0" loss as a line: a network whose z
//     stays zero already gets u0 within ~0.2%, so only a loss clearly below that line says
//     z has been learned;
//   - mean |z_i| per time step, and the network's u(t, X_t) on a few validation paths (with
//     the closed form, dashed, where the equation has one).

import { h, clear, fmtInt, fmtNum, fmtPct } from "./dom.js";
import { COLORS, RUN_COLORS, logTicks, numTicks } from "./charts.js";
import { decimate } from "./series.js";

/** Sections of the page that only mean something for image runs (hidden for bsde runs). */
export const IMAGE_ONLY = ["t-lapse", "t-acc", "t-kern", "t-fmaps", "t-norms", "t-conf", "t-mis",
  "t-draw", "t-layers", "t-perclass"];

export const isBsde = (cfg) => !!cfg && cfg.task === "bsde";

const axis = (extra = {}) => ({ stroke: COLORS.axis, grid: { stroke: COLORS.grid, width: 1 },
  ticks: { stroke: COLORS.grid, width: 1 }, font: "12px system-ui, sans-serif", ...extra });

/** A small uPlot card: `series` after x, rebuilt when its width changes. */
class Plot {
  constructor(root, label, { height = 220, series, xLabel = "Step", log = false, xFmt = (v) => fmtInt(v), yFmt = (v) => fmtNum(v, 5) }) {
    this.root = root;
    this.height = height;
    this.readout = h("p", { class: "readout small", "aria-live": "off" }, "");
    this.plotEl = h("div", { class: "plot", role: "img", "aria-label": label });
    root.append(this.readout, this.plotEl);
    this.opts = { series, xLabel, log, xFmt, yFmt };
    this.width = 0;
  }
  build() {
    if (this.u) this.u.destroy();
    const { series, xLabel, log, xFmt, yFmt } = this.opts;
    this.width = Math.max(200, this.root.clientWidth);
    this.u = new uPlot({
      width: this.width, height: this.height,
      series: [{ label: xLabel, value: (u, v) => (v == null ? "–" : xFmt(v)) },
        ...series.map((s) => ({ spanGaps: true, width: 2, points: { show: false }, value: (u, v) => (v == null ? "–" : yFmt(v)), ...s }))],
      scales: { x: { time: false }, y: log ? { distr: 3 } : {} },
      axes: [axis({ size: 36, values: (u, vals) => vals.map((v) => (v == null ? "" : xFmt(v))) }),
        axis({ size: 64, values: log ? logTicks : numTicks })],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    }, [[], ...series.map(() => [])], this.plotEl);
  }
  set(data) {
    if (!this.u || Math.abs(Math.max(200, this.root.clientWidth) - this.width) > 4) this.build();
    this.u.setData(data);
  }
}

export class BsdePanel {
  /** @param root a `section` the panel fills (hidden unless a bsde run is watched) */
  constructor(root) {
    this.root = root;
    clear(root);
    const card = (id, title, note) => {
      const el = h("div", { class: "bsde-card", id });
      el.append(h("h3", {}, title), ...(note ? [h("p", { class: "note small" }, note)] : []));
      root.append(el);
      return el;
    };
    this.headline = h("p", { class: "bsde-headline", "aria-live": "polite" }, "");
    root.append(this.headline);
    this.u0 = new Plot(card("bsde-u0", "u0 = u(0, x0)", "What you see: the network's guess of the solution at the start. Healthy: it settles inside the band around the reference value."),
      "u0 chart", { series: [
        { label: "u0", stroke: COLORS.smooth },
        { label: "Reference", stroke: COLORS.test, dash: [6, 4] },
        { label: "Band low", stroke: "rgba(213, 94, 0, 0.45)", width: 1, dash: [2, 3] },
        { label: "Band high", stroke: "rgba(213, 94, 0, 0.45)", width: 1, dash: [2, 3] }], yFmt: (v) => fmtNum(v, 6) });
    this.loss = new Plot(card("bsde-loss", "Validation loss (log)", "What you see: the loss on fixed validation paths, and the lowest loss a network with z = 0 gets on them. Healthy: well below that line; near it, u0 may be right for the wrong reason."),
      "Validation loss chart", { log: true, series: [
        { label: "Validation loss", stroke: COLORS.test, points: { show: true, size: 5, fill: COLORS.test } },
        { label: "z = 0 loss", stroke: COLORS.axis, dash: [6, 4] }], yFmt: (v) => fmtNum(v, 4) });
    this.z = new Plot(card("bsde-z", "Mean |z| per time step", "What you see: the average size of the gradient term z_i = σᵀ∇u at each time step, over the validation paths. Healthy: away from zero and smooth in time."),
      "Mean |z| per time step chart", { height: 180, xLabel: "t", xFmt: (v) => fmtNum(v, 3), series: [
        { label: "mean |z|", stroke: COLORS.train, points: { show: true, size: 5, fill: COLORS.train } }] });
    this.paths = new Plot(card("bsde-paths", "u(t, X_t) on validation paths", "What you see: the network's solution along a few sample paths (dashed: the closed form, where the equation has one)."),
      "Sample paths chart", { height: 200, xLabel: "t", xFmt: (v) => fmtNum(v, 3), series: [0, 1, 2, 3].flatMap((i) => [
        { label: `Path ${i + 1}`, stroke: RUN_COLORS[i] },
        { label: `Exact ${i + 1}`, stroke: RUN_COLORS[i], width: 1, dash: [5, 4] }]) });
    this.key = "";
  }

  /** The preset's u0 band (fraction), from the run's preset record if it has one. */
  setPresets(presets) { this.presets = presets || []; }

  update(state, run) {
    if (!state || !isBsde(state.config)) return;
    const b = state.bsde, p = state.progress;
    const key = `${state.runId}|${p.n}|${b.evals.length}|${b.snapshot ? b.snapshot.step : -1}|${this.root.clientWidth}`;
    if (key === this.key) return;
    this.key = key;
    const ref = state.summary && state.summary.reference != null ? state.summary.reference
      : (b.evals.length ? b.evals[b.evals.length - 1].reference : null);
    const preset = run && run.preset ? (this.presets || []).find((x) => x.name === run.preset) : null;
    const band = preset && preset.target && preset.target.band ? preset.target.band : null;
    // u0 per step, decimated to the chart's width
    const n = Math.min(p.n, b.u0.n);
    const steps = p.step.buf.subarray(0, n), u0 = b.u0.buf.subarray(0, n);
    const idx = n ? decimate(u0, 0, n, Math.max(200, this.root.clientWidth)) : [];
    const xs = idx.map((i) => steps[i]);
    const refLine = xs.map(() => ref);
    this.u0.set([xs, idx.map((i) => u0[i]), refLine, xs.map(() => (ref != null && band ? ref * (1 - band) : null)),
      xs.map(() => (ref != null && band ? ref * (1 + band) : null))]);
    // validation loss at each evaluation against the z = 0 loss
    const ev = b.evals;
    this.loss.set([ev.map((e) => e.step), ev.map((e) => (e.validLoss > 0 ? e.validLoss : null)), ev.map((e) => e.z0Loss)]);
    const snap = b.snapshot;
    if (snap) {
      this.z.set([snap.times.slice(0, snap.zMeanAbs.length), snap.zMeanAbs]);
      const cols = [];
      for (let i = 0; i < 4; i++) {
        cols.push(snap.paths[i] || snap.times.map(() => null));
        cols.push(snap.exactPaths && snap.exactPaths[i] ? snap.exactPaths[i] : snap.times.map(() => null));
      }
      this.paths.set([snap.times, ...cols]);
      this.z.readout.textContent = `At step ${fmtInt(snap.step)}: mean |z| from ${fmtNum(Math.min(...snap.zMeanAbs), 3)} to ${fmtNum(Math.max(...snap.zMeanAbs), 3)} over ${snap.zMeanAbs.length} time steps.`;
      this.paths.readout.textContent = `${snap.paths.length} validation paths at step ${fmtInt(snap.step)}${snap.exactPaths ? ", with the closed form dashed" : " (this equation has no closed form along a path)"}.`;
    }
    const last = ev.length ? ev[ev.length - 1] : null;
    const cur = n ? u0[n - 1] : last ? last.u0 : null;
    this.u0.readout.textContent = cur == null ? "No step yet." : `u0 ${fmtNum(cur, 7)} at step ${fmtInt(n ? steps[n - 1] : last.step)}` +
      (ref != null ? ` · reference ${ref}${band ? ` (band ±${fmtPct(band, 1)})` : ""}` : " · no reference value for this equation");
    if (last) {
      const below = last.validLoss < last.z0Loss;
      this.loss.readout.textContent = `Validation loss ${fmtNum(last.validLoss, 4)} at step ${fmtInt(last.step)}; z = 0 gets ${fmtNum(last.z0Loss, 4)} (${below ? `${fmtNum(last.z0Loss / last.validLoss, 3)}× lower` : "not below it yet"}).`;
      const rel = last.relativeError != null ? `relative error ${fmtPct(last.relativeError, 3)}` : "no reference value";
      const verdict = below && last.validLoss < 0.7 * last.z0Loss ? "z is learned: the loss is clearly below the z = 0 line."
        : below ? "z is being learned: the loss is just below the z = 0 line." : "z is not learned yet: a network with z = 0 does as well.";
      this.headline.textContent = `u0 ${fmtNum(last.u0, 6)} (${rel}) · validation loss ${fmtNum(last.validLoss, 4)} · ${verdict}`;
    } else {
      this.headline.textContent = "Waiting for the first evaluation.";
    }
  }
}

/** The design form of a bsde preset: the equation's fields and training's, beside the layer
 *  editor (which edits the subnet). `cfg` is the bsde config being designed; `onChange` fires
 *  on every edit. */
export class BsdeForm {
  constructor(root, { onChange }) {
    this.root = root;
    this.onChange = onChange;
    this.inputs = {};
  }

  setConfig(cfg) {
    this.cfg = cfg;
    clear(this.root);
    const eq = cfg.equation, tr = (cfg.train ||= {});
    const num = (label, id, get, set, attrs = {}) => {
      const input = h("input", { id, type: "number", step: "any", value: get() ?? "", ...attrs,
        oninput: () => { set(input.value === "" ? null : +input.value); this.onChange(); } });
      const err = h("span", { class: "error field-error", id: `${id}-error`, hidden: true });
      this.inputs[id] = { input, err };
      return h("div", { class: "field" }, h("label", { for: id }, label), input, err);
    };
    const yr = (cfg.y_init_range ||= [0, 1]);
    this.root.append(
      h("p", { class: "small" }, `Equation ${eq.name}: the layer editor below holds the subnet of each of the N − 1 time steps (it must end in ${eq.dim} units).`),
      num("Dimension d", "bsde-dim", () => eq.dim, (v) => { eq.dim = v; }, { step: 1, min: 1 }),
      num("Total time T", "bsde-total_time", () => eq.total_time, (v) => { eq.total_time = v; }, { min: 0 }),
      num("Time steps N", "bsde-num_time_interval", () => eq.num_time_interval, (v) => { eq.num_time_interval = v; }, { step: 1, min: 1 }),
      num("u0 start low", "bsde-y_low", () => yr[0], (v) => { yr[0] = v; }),
      num("u0 start high", "bsde-y_high", () => yr[1], (v) => { yr[1] = v; }),
      num("Learning rate (Adam)", "bsde-lr", () => tr.lr, (v) => { tr.lr = v; }, { min: 0 }),
      num("Iterations", "bsde-iterations", () => tr.iterations, (v) => { tr.iterations = v; }, { step: 1, min: 1 }),
      num("Batch size (paths)", "bsde-batch_size", () => tr.batch_size ?? 64, (v) => { tr.batch_size = v; }, { step: 1, min: 2 }),
      num("Evaluate every", "bsde-eval_every", () => tr.eval_every ?? 100, (v) => { tr.eval_every = v; }, { step: 1, min: 1 }),
    );
  }

  /** Errors located the engine's way: ["equation", "dim"], ["train", "lr"], ["y_init_range"]. */
  showErrors(errors) {
    for (const { input, err } of Object.values(this.inputs)) { err.hidden = true; err.textContent = ""; input.removeAttribute("aria-invalid"); }
    for (const e of errors || []) {
      const loc = e.loc || [];
      const id = loc[0] === "equation" ? `bsde-${loc[1]}` : loc[0] === "train" ? `bsde-${loc[1]}` : loc[0] === "y_init_range" ? "bsde-y_low" : null;
      const f = id && this.inputs[id];
      if (!f) continue;
      f.err.hidden = false;
      f.err.textContent = e.msg;
      f.input.setAttribute("aria-invalid", "true");
    }
  }
}
