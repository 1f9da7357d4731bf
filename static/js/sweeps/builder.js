// The sweep builder: a base preset with overrides, parameters (a list of values or a range,
// log or linear, integer or not, optionally applying only when another parameter has a value),
// the method, the budget and early stopping. It shows how many trials that makes and an
// estimate of the time before Start, and puts each 422 error next to the field it names.

import { api, ApiError } from "../api.js";
import { h, clear, fmtDuration, fmtInt } from "../ui/dom.js";

const TRAIN_PATHS = ["train.lr", "train.momentum", "train.weight_decay", "train.batch_size", "train.epochs",
  "train.iterations", "train.init.std", "train.optimizer", "train.schedule", "train.dropout", "train.seed", "dataset.train_limit"];

/** Grid size (product of value counts) or the trial budget; null when a grid has a range. */
export function trialCount(spec) {
  const params = Object.values(spec.parameters || {});
  if (spec.method === "grid") {
    if (params.some((p) => !Array.isArray(p.values))) return null;
    const n = params.reduce((a, p) => a * p.values.length, 1);
    return spec.max_trials ? Math.min(n, spec.max_trials) : n;
  }
  return spec.max_trials || null;
}

/** "0.01, 0.1, adam, true" -> [0.01, 0.1, "adam", true] (JSON where it parses, else text). */
export function parseValues(text) {
  return text.split(",").map((s) => s.trim()).filter((s) => s !== "").map((s) => {
    try { return JSON.parse(s); } catch { return s; }
  });
}

export class SweepBuilder {
  constructor(root, { onCreated }) {
    this.root = root;
    this.onCreated = onCreated;
    this.rows = [];
    this.previewSeq = 0;
    this.build();
    this.load();
  }

  async load() {
    try {
      const [{ presets }, sp, runs] = await Promise.all([api.presets(), api.sweepPresets(), api.runs()]);
      this.presets = presets;
      this.runs = runs.runs;
      for (const p of presets) this.base.append(h("option", { value: p.name }, p.name));
      this.base.value = presets.some((p) => p.name === "mlp") ? "mlp" : presets[0].name;
      this.sweepPresets = [];
      for (const p of sp.presets) {
        const parts = p.sweeps && p.sweeps.length ? p.sweeps : [p.spec];
        parts.forEach((spec, i) => {
          this.sweepPresets.push(spec);
          this.from.append(h("option", { value: String(this.sweepPresets.length - 1) }, parts.length > 1 ? `${p.name} (${i + 1} of ${parts.length}: ${spec.name || ""})` : p.name));
        });
      }
      this.suggest();
      if (!this.rows.length) this.addRow({ path: "train.lr", kind: "values", values: "0.01, 0.05, 0.1" });
      this.preview();
    } catch (err) { this.errors.textContent = `Could not load the presets: ${err.message}`; }
  }

  build() {
    const field = (label, el, hint) => { el.id ||= `sb-${label.toLowerCase().replace(/\W+/g, "-")}`; return h("div", { class: "field" }, h("label", { for: el.id }, label), el, hint ? h("span", { class: "small muted" }, hint) : null); };
    this.from = h("select", { id: "sb-from", onchange: () => this.fromPreset() }, h("option", { value: "" }, "—"));
    this.name = h("input", { id: "sb-name", type: "text", maxlength: "200", placeholder: "my sweep" });
    this.base = h("select", { id: "sb-base", onchange: () => { this.suggest(); this.preview(); } });
    this.overrides = h("input", { id: "sb-overrides", type: "text", value: '{"epochs": 1}', "aria-describedby": "sb-overrides-hint", oninput: () => this.preview() });
    this.method = h("select", { id: "sb-method", onchange: () => this.preview() }, ["grid", "random", "tpe"].map((m) => h("option", { value: m }, m)));
    this.maxTrials = h("input", { id: "sb-max-trials", type: "number", min: "1", placeholder: "grid: all", oninput: () => this.preview() });
    this.maxParallel = h("input", { id: "sb-max-parallel", type: "number", min: "1", value: "2", oninput: () => this.preview() });
    this.seed = h("input", { id: "sb-seed", type: "number", placeholder: "none" });
    this.fromBase = h("input", { id: "sb-start-from-base", type: "checkbox" });
    this.early = h("select", { id: "sb-early" }, [["", "none"], ["median", "median rule"], ["asha", "successive halving (ASHA)"]].map(([v, t]) => h("option", { value: v }, t)));
    this.paramsEl = h("div", { class: "sweep-params" });
    this.datalist = h("datalist", { id: "sb-paths" });
    this.count = h("p", { class: "small", role: "status", id: "sb-count" });
    this.errors = h("ul", { class: "errors small", role: "alert" });
    this.start = h("button", { type: "button", class: "primary", onclick: () => this.submit() }, "Start sweep");
    clear(this.root).append(
      h("div", { class: "sb-grid" },
        field("Start from a sweep preset", this.from), field("Name", this.name),
        field("Base preset", this.base), field("Overrides", this.overrides, "JSON, as for a run: {\"epochs\": 1, \"train_limit\": 2000}"),
        field("Method", this.method), field("Max trials", this.maxTrials),
        field("Max parallel", this.maxParallel), field("Seed", this.seed), field("Early stopping", this.early),
        field("Trial 1 is the base design", this.fromBase, "random and tpe: run the base preset's own values first, then search")),
      h("h3", {}, "Parameters"), this.datalist, this.paramsEl,
      h("button", { type: "button", onclick: () => { this.addRow({ kind: "values" }); this.preview(); } }, "Add parameter"),
      this.count, this.errors, this.start);
  }

  suggest() {
    const p = (this.presets || []).find((x) => x.name === this.base.value);
    const bsde = !!p && p.task === "bsde";
    // a Deep BSDE base trains for iterations (it has no epochs) and has no image model
    if (bsde && this.overrides.value.trim() === '{"epochs": 1}') this.overrides.value = '{"iterations": 500}';
    if (!bsde && this.overrides.value.trim() === '{"iterations": 500}') this.overrides.value = '{"epochs": 1}';
    const paths = bsde ? ["train.lr", "train.batch_size", "train.iterations", "train.seed"] : [...TRAIN_PATHS];
    (p && Array.isArray(p.config.model) ? p.config.model : []).forEach((layer, i) => {
      for (const k of ["units", "filters", "rate", "kernel_size"]) if (k in layer) paths.push(`model.${i}.${k}`);
    });
    clear(this.datalist).append(...paths.map((x) => h("option", { value: x })));
  }

  addRow({ path = "", kind = "values", values = "", min = "", max = "", log = false, int = false, when = "" } = {}) {
    const n = this.rows.length + 1;
    const row = {};
    row.path = h("input", { type: "text", list: "sb-paths", value: path, "aria-label": `Parameter ${n} path`, placeholder: "train.lr", oninput: () => this.preview() });
    row.kind = h("select", { "aria-label": `Parameter ${n} kind`, onchange: () => { sync(); this.preview(); } }, h("option", { value: "values" }, "values"), h("option", { value: "range" }, "range"));
    row.kind.value = kind;
    row.values = h("input", { type: "text", value: values, "aria-label": `Parameter ${n} values`, placeholder: "0.01, 0.1", oninput: () => this.preview() });
    row.min = h("input", { type: "number", step: "any", value: String(min), "aria-label": `Parameter ${n} min`, class: "narrow", oninput: () => this.preview() });
    row.max = h("input", { type: "number", step: "any", value: String(max), "aria-label": `Parameter ${n} max`, class: "narrow", oninput: () => this.preview() });
    row.log = h("input", { type: "checkbox", checked: log, "aria-label": `Parameter ${n} log scale` });
    row.int = h("input", { type: "checkbox", checked: int, "aria-label": `Parameter ${n} integer` });
    row.when = h("input", { type: "text", value: when, "aria-label": `Parameter ${n} only when`, placeholder: "train.optimizer=sgd", class: "narrow" });
    row.err = h("span", { class: "small error-text", role: "alert" });
    const rangeBits = h("span", { class: "range-bits" }, "min ", row.min, " max ", row.max, h("label", {}, row.log, " log"), h("label", {}, row.int, " int"));
    const sync = () => { row.values.hidden = row.kind.value !== "values"; rangeBits.hidden = row.kind.value !== "range"; };
    sync();
    row.el = h("div", { class: "sweep-param" }, row.path, row.kind, row.values, rangeBits, h("span", { class: "small" }, " when "), row.when,
      h("button", { type: "button", class: "link danger", "aria-label": `Remove parameter ${n}`, onclick: () => { this.rows = this.rows.filter((r) => r !== row); row.el.remove(); this.preview(); } }, "Remove"), row.err);
    this.rows.push(row);
    this.paramsEl.append(row.el);
  }

  fromPreset() {
    const spec = this.sweepPresets[+this.from.value];
    if (!spec) return;
    this.name.value = spec.name || "";
    if (spec.base && spec.base.preset) { this.base.value = spec.base.preset; this.overrides.value = JSON.stringify(spec.base.overrides || {}); }
    this.method.value = spec.method || "grid";
    this.maxTrials.value = spec.max_trials ?? "";
    this.maxParallel.value = spec.max_parallel ?? 2;
    this.seed.value = spec.seed ?? "";
    this.early.value = (spec.early_stopping && spec.early_stopping.type) || "";
    this.fromBase.checked = !!spec.start_from_base;
    this.presetSpec = spec;
    this.rows.forEach((r) => r.el.remove());
    this.rows = [];
    for (const [path, p] of Object.entries(spec.parameters || {})) {
      const when = p.when ? Object.entries(p.when).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ") : "";
      if (Array.isArray(p.values)) this.addRow({ path, kind: "values", values: p.values.map((v) => JSON.stringify(v)).join(", "), when });
      else this.addRow({ path, kind: "range", min: p.min, max: p.max, log: !!p.log, int: !!p.int, when });
    }
    this.suggest();
    this.preview();
  }

  /** The spec the form describes (problems that are the form's own go to ``this.problems``). */
  spec() {
    this.problems = [];
    let overrides = {};
    try { overrides = this.overrides.value.trim() ? JSON.parse(this.overrides.value) : {}; }
    catch (e) { this.problems.push(`Overrides: not JSON (${e.message})`); }
    const parameters = {};
    for (const r of this.rows) {
      const path = r.path.value.trim();
      if (!path) continue;
      const p = r.kind.value === "values" ? { values: parseValues(r.values.value) }
        : { min: r.min.value === "" ? null : +r.min.value, max: r.max.value === "" ? null : +r.max.value, log: r.log.checked, int: r.int.checked };
      const when = r.when.value.trim();
      if (when) {
        p.when = {};
        for (const part of when.split(",")) {
          const [k, ...v] = part.split("=");
          const text = v.join("=").trim();
          let val; try { val = JSON.parse(text); } catch { val = text; }
          p.when[k.trim()] = val;
        }
      }
      parameters[path] = p;
    }
    const spec = { base: { preset: this.base.value, overrides }, method: this.method.value, parameters };
    if (this.name.value.trim()) spec.name = this.name.value.trim();
    if (this.maxTrials.value !== "") spec.max_trials = +this.maxTrials.value;
    if (this.maxParallel.value !== "") spec.max_parallel = +this.maxParallel.value;
    if (this.seed.value !== "") spec.seed = +this.seed.value;
    if (this.fromBase.checked && spec.method !== "grid") spec.start_from_base = true;
    if (this.early.value) spec.early_stopping = { ...((this.presetSpec && this.presetSpec.early_stopping) || {}), type: this.early.value };
    return spec;
  }

  async preview() {
    const spec = this.spec();
    const n = trialCount(spec);
    const par = Math.max(1, spec.max_parallel || 1);
    let text = n == null ? (spec.method === "grid" ? "A grid needs a list of values for every parameter." : "Set max trials.")
      : `${fmtInt(n)} trial${n === 1 ? "" : "s"}, ${par} at a time`;
    const seq = ++this.previewSeq;
    this.count.textContent = text + ".";
    if (n == null || !this.presets) return;
    // the estimate: this design's steps x the seconds per step of the last finished run of
    // the same preset on this server
    const p = this.presets.find((x) => x.name === this.base.value);
    const past = (this.runs || []).filter((r) => r.preset === this.base.value && r.status === "completed" && r.final && r.final.step && r.final.train_seconds);
    if (!p || !past.length) { this.count.textContent = text + ": no time estimate until a run of this preset has finished here."; return; }
    try {
      const cfg = JSON.parse(JSON.stringify(p.config));
      const o = spec.base.overrides || {};
      for (const [k, v] of Object.entries(o)) {
        if (p.task === "bsde") { cfg.train[k] = v; continue; }
        if (["train_limit", "test_limit"].includes(k)) cfg.dataset[k] = v;
        else if (k === "dataset") cfg.dataset.name = v;
        else { if (k === "epochs") delete cfg.train.iterations; if (k === "iterations") delete cfg.train.epochs; cfg.train[k] = v; }
      }
      const res = p.task === "bsde"
        ? { summary: { total_steps: cfg.train.iterations } }
        : await api.validate({ model: cfg.model, train: cfg.train, dataset: cfg.dataset });
      if (seq !== this.previewSeq || !res.summary || !res.summary.total_steps) return;
      const last = past.sort((a, b) => b.created_at - a.created_at)[0];
      const perStep = last.final.train_seconds / last.final.step;
      const secs = Math.ceil(n / par) * res.summary.total_steps * perStep;
      this.count.textContent = `${text}: about ${fmtDuration(secs)} of training (${fmtInt(res.summary.total_steps)} steps a trial at this server's last ${p.name} speed; start-up not counted).`;
    } catch { /* the estimate is a nicety */ }
  }

  async submit() {
    const spec = this.spec();
    clear(this.errors);
    for (const r of this.rows) r.err.textContent = "";
    if (this.problems.length) { this.errors.append(...this.problems.map((p) => h("li", {}, p))); return; }
    this.start.disabled = true;
    try {
      const sw = await api.createSweep(spec);
      this.onCreated(sw);
    } catch (err) {
      const detail = err instanceof ApiError ? err.detail : [{ loc: [], msg: err.message }];
      for (const d of detail) {
        const loc = d.loc || [];
        const row = loc[0] === "parameters" && this.rows.find((r) => r.path.value.trim() === loc[1]);
        if (row) row.err.textContent = ` ${loc.slice(2).join(".") || loc[1]}: ${d.msg}`;
        else this.errors.append(h("li", {}, `${loc.join(".")}${loc.length ? ": " : ""}${d.msg}`));
      }
    } finally { this.start.disabled = false; }
  }
}
