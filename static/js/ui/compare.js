// Compare runs: overlaid curves (CompareChart), the config fields that differ, and results.

import { h, clear, fmtPct, fmtNum, fmtInt, fmtDuration } from "./dom.js";
import { CompareChart, RUN_COLORS } from "./charts.js";

export function flattenConfig(cfg) {
  const out = {};
  if (!cfg) return out;
  if (cfg.task === "bsde") {
    out["subnet"] = Array.isArray(cfg.subnet) ? cfg.subnet.map(layerText).join(" → ") : cfg.subnet;
    out["y_init_range"] = JSON.stringify(cfg.y_init_range);
  } else out["model"] = (cfg.model || []).map(layerText).join(" → ");
  const walk = (obj, prefix) => {
    for (const [k, v] of Object.entries(obj || {})) {
      const key = prefix + k;
      if (v && typeof v === "object" && !Array.isArray(v)) walk(v, key + ".");
      else out[key] = Array.isArray(v) ? JSON.stringify(v) : v;
    }
  };
  walk(cfg.equation, "equation.");
  walk(cfg.train, "train.");
  walk(cfg.dataset, "dataset.");
  return out;
}

export function layerText(l) {
  const p = { dense: (x) => `dense ${x.units}`, conv2d: (x) => `conv ${x.filters}@${x.kernel_size}x${x.kernel_size}${x.stride > 1 ? "/" + x.stride : ""}${x.padding ? " pad " + x.padding : ""}`,
    maxpool2d: (x) => `maxpool ${x.pool_size}`, avgpool2d: (x) => `avgpool ${x.pool_size}`, dropout: (x) => `dropout ${x.rate}`, leaky_relu: (x) => `leaky_relu ${x.alpha}` };
  return (p[l.type] || ((x) => x.type))(l);
}

const LOSS_TITLES = { cross_entropy: "cross-entropy", mse: "quadratic (MSE)" };
export const lossTitle = (l) => LOSS_TITLES[l] || l;

/** A run's training loss function (the engine's default when its config does not say). */
export function lossOf(state, run) {
  const cfg = state.config || (run && run.config);
  return (cfg && cfg.train && cfg.train.loss) || "cross_entropy";
}

/** "" when the runs share one loss; otherwise a warning naming each loss and its runs. */
export function lossWarning(runs) {
  const by = new Map();
  for (const { state, run } of runs) {
    const l = lossOf(state, run);
    if (!by.has(l)) by.set(l, []);
    by.get(l).push(run ? run.name : state.name);
  }
  if (by.size < 2) return "";
  const parts = [...by].map(([l, names]) => `${lossTitle(l)}: ${names.join(", ")}`);
  return `⚠ These runs use different losses (${parts.join("; ")}): their loss curves are on different scales and cannot be compared; compare their test accuracy instead.`;
}

/** A schedule in words: "constant lr", "step schedule: x0.95 every 1 epoch", ... */
export function scheduleText(sched) {
  const s = sched == null ? { type: "constant" } : typeof sched === "string" ? { type: sched } : sched;
  const every = s.every_epochs ?? 1;
  switch (s.type) {
    case "constant": return "constant lr";
    case "step": return `step schedule: x${s.gamma ?? 0.95} every ${every} epoch${every === 1 ? "" : "s"}`;
    case "exponential": return `exponential schedule: x${s.gamma ?? 0.95} per epoch`;
    case "cosine": return `cosine schedule to ${s.min_lr ?? 0}`;
    case "loss": return "loss-driven schedule";
    default: return `${s.type} schedule`;
  }
}

const isBsde = ({ state, run }) => ((state.config || (run && run.config)) || {}).task === "bsde";
/** A Deep BSDE run's last result: run_finished's, else its newest evaluation's. */
const bsdeLast = ({ state }) => {
  const r = state.finished && state.finished.result, e = state.bsde.evals[state.bsde.evals.length - 1];
  return { u0: r ? r.u0 : e ? e.u0 : null, relativeError: r ? r.relative_error : e ? e.relativeError : null,
           validLoss: r ? r.valid_loss : e ? e.validLoss : null, z0Loss: r ? r.z0_loss : e ? e.z0Loss : null };
};

export class ComparePanel {
  constructor(root, { requestDraw, onZoom = null }) {
    this.root = root;
    this.hint = h("p", { class: "muted small" }, "Tick “Compare” on two or more runs in the list to overlay them.");
    const lossEl = h("div", { class: "chart" }), accEl = h("div", { class: "chart" }), u0El = h("div", { class: "chart" });
    this.lossWarn = h("p", { class: "warn-note", role: "status", hidden: true });
    this.body = h("div", { class: "compare-body", hidden: true }, this.lossWarn,
      h("div", { class: "compare-charts" },
        h("figure", {}, h("figcaption", {}, "Training loss (smoothed)"), lossEl),
        this.accFig = h("figure", {}, h("figcaption", {}, "Test accuracy"), accEl),
        // Deep BSDE runs have no accuracy: their solution guess u0 instead
        this.u0Fig = h("figure", { hidden: true }, h("figcaption", {}, "u0 = u(0, x0)"), u0El)),
      h("h3", {}, "Results"), this.results = h("div", { class: "table-wrap" }),
      h("h3", {}, "Configuration differences"), this.diff = h("div", { class: "table-wrap" }));
    clear(root).append(this.hint, this.body);
    this.loss = new CompareChart(lossEl, "loss", { requestDraw, onZoom });
    this.acc = new CompareChart(accEl, "testAccuracy", { requestDraw, onZoom });
    this.u0 = new CompareChart(u0El, "u0", { requestDraw, onZoom });
    this.tableKey = "";
  }

  /** @param runs [{state, run}] in selection order */
  update(runs, view) {
    const show = runs.length >= 1;
    this.body.hidden = !show;
    this.hint.textContent = runs.length >= 2 ? "" : "Tick “Compare” on two or more runs in the list to overlay them.";
    this.hint.hidden = runs.length >= 2;
    if (!show) return;
    const labelled = runs.map(({ state, run }) => ({ state, label: `${run ? run.name : state.name} (${state.runId})` }));
    const warn = lossWarning(runs);
    if (this.lossWarn.textContent !== warn) this.lossWarn.textContent = warn;
    this.lossWarn.hidden = !warn;
    const bsde = runs.filter(isBsde), image = runs.filter((r) => !isBsde(r));
    this.accFig.hidden = !image.length;
    this.u0Fig.hidden = !bsde.length;
    this.loss.update(labelled, view);
    if (image.length) this.acc.update(labelled, view);
    if (bsde.length) this.u0.update(labelled, view);
    const key = runs.map(({ state }) => `${state.runId}:${state.status}:${state.evals.n}:${state.bsde.evals.length}:${!!state.finished}:${!!state.config}`).join("|");
    if (key !== this.tableKey) { this.tableKey = key; this.renderTables(runs); }
  }

  renderTables(runs) {
    const head = h("tr", {}, h("th", { scope: "col" }, ""), ...runs.map(({ state, run }, i) =>
      h("th", { scope: "col" }, h("span", { class: "swatch", style: { background: RUN_COLORS[i % RUN_COLORS.length] } }), " ", run ? run.name : state.name, h("div", { class: "small muted mono" }, state.runId))));
    const anyBsde = runs.some(isBsde), anyImage = runs.some((r) => !isBsde(r));
    const bsdeOnly = (f) => (r) => (isBsde(r) ? f(r) : "–"), imageOnly = (f) => (r) => (isBsde(r) ? "–" : f(r));
    const bsdeRows = [
      ["u0", bsdeOnly((r) => fmtNum(bsdeLast(r).u0, 6))],
      ["Relative error (u0)", bsdeOnly((r) => fmtPct(bsdeLast(r).relativeError, 3))],
      ["Validation loss", bsdeOnly((r) => fmtNum(bsdeLast(r).validLoss, 4))],
      ["z = 0 loss", bsdeOnly((r) => fmtNum(bsdeLast(r).z0Loss, 4))],
    ];
    const imageRows = [
      ["Final test accuracy", ({ state, run }) => fmtPct(state.finished ? state.finished.test_accuracy : run && run.final ? run.final.test_accuracy : null)],
      ["Best test accuracy", ({ state }) => fmtPct(state.evals.n ? Math.max(...state.evals.testAccuracy.filter((v) => v != null)) : null)],
      ["Final test loss", ({ state }) => fmtNum(state.finished ? state.finished.test_loss : null, 4)],
    ].map(([label, f]) => [label, anyBsde ? imageOnly(f) : f]);
    const rowsDef = [
      ["Status", ({ state }) => state.status],
      ...(anyImage ? imageRows : []),
      ...(anyBsde ? bsdeRows : []),
      ["Steps", ({ state }) => fmtInt(state.latest ? state.latest.step : 0)],
      ["Training time", ({ state }) => fmtDuration(state.finished ? state.finished.train_seconds : state.latest ? state.latest.elapsed : null)],
      [anyImage ? (anyBsde ? "Images/s (paths/s)" : "Images/s") : "Paths/s", ({ state }) => fmtInt(state.finished ? state.finished.images_per_second : state.latest ? state.latest.images_per_sec : null)],
      ["Parameters", ({ state }) => fmtInt(state.summary ? state.summary.params ?? state.summary.total_params : null)],
    ];
    clear(this.results).append(h("table", { class: "grid-table" }, h("thead", {}, head.cloneNode(true)),
      h("tbody", {}, ...rowsDef.map(([label, f]) => h("tr", {}, h("th", { scope: "row" }, label), ...runs.map((r) => h("td", { class: "num" }, f(r))))))));
    const flats = runs.map(({ state, run }) => flattenConfig(state.config || (run && run.config)));
    const keys = [...new Set(flats.flatMap((f) => Object.keys(f)))].sort((a, b) => (a === "model" ? -1 : b === "model" ? 1 : a.localeCompare(b)));
    const differing = keys.filter((k) => new Set(flats.map((f) => JSON.stringify(f[k] ?? null))).size > 1);
    clear(this.diff).append(differing.length
      ? h("table", { class: "grid-table diff" }, h("thead", {}, head),
        h("tbody", {}, ...differing.map((k) => h("tr", {}, h("th", { scope: "row", class: "mono" }, k), ...flats.map((f) => h("td", { class: "mono" }, f[k] == null ? "–" : String(f[k])))))))
      : h("p", { class: "small muted" }, runs.length > 1 ? "The configurations are identical." : ""));
  }
}
