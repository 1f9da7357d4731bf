// Hyperparameters, dataset and probe images: labelled inputs bound to config.train and
// config.dataset. Fields a preset sets but the form does not show (sampling, drop_last, eps,
// ...) are kept as they are. The less common ones (loss, clip norm, Adam's betas, Nesterov, the
// schedule's parameters) are under an "Advanced" disclosure.

import { h, clear } from "./dom.js";
import { parseNum } from "./editor.js";
import { spec, initTypes, optimizerOptions, scheduleOptions, lossOptions, trainDefault } from "../spec.js";

// Placeholders of empty inputs: the engine's defaults (GET /api/spec), the initialisers'
// parameters included (spec.inits: {type: {field: rule}}).
const initRule = (type, name) => ((spec.inits || {})[type] || {})[name];
function placeholder(key, t) {
  const [a, b] = key.split(".");
  if (a !== "init" || !b) return trainDefault(key);
  const rule = initRule(initType(t), b);
  return rule && rule.default != null ? String(rule.default) : "";
}

const FIELDS = [
  { key: "optimizer", label: "Optimizer", kind: "select", options: optimizerOptions },
  { key: "lr", label: "Learning rate", kind: "float", hint: "step size" },
  { key: "momentum", label: "Momentum", kind: "float", hint: "SGD / RMSprop" },
  { key: "weight_decay", label: "Weight decay", kind: "float", hint: "L2" },
  { key: "batch_size", label: "Batch size", kind: "int" },
  { key: "epochs", label: "Epochs", kind: "int", hint: "or iterations" },
  { key: "iterations", label: "Iterations", kind: "int", hint: "instead of epochs" },
  { key: "init", label: "Initialiser", kind: "select", options: () => initTypes().map((t) => [t, t]) },
  { key: "init.std", label: "Init std", kind: "float", when: (t) => hasInitField(t, "std") },
  { key: "init.limit", label: "Init limit", kind: "float", when: (t) => hasInitField(t, "limit") },
  { key: "schedule", label: "Schedule", kind: "select", options: scheduleOptions },
  { key: "dropout", label: "Dropout", kind: "dropout" },
  { key: "seed", label: "Seed", kind: "int" },
  { key: "eval_every", label: "Evaluation interval", kind: "int", hint: "steps; 0 = once per epoch" },
  { key: "snapshot_interval", label: "Snapshot interval", kind: "float", hint: "seconds" },
  // under "Advanced": only fields the engine's train config accepts (engine/spec.py TRAIN_FIELDS)
  { key: "loss", label: "Loss function", kind: "select", options: lossOptions, advanced: true, when: () => spec.losses.length > 1 },
  { key: "clip_norm", label: "Clip norm", kind: "float", hint: "max gradient norm", advanced: true, placeholder: "none" },
  { key: "schedule.gamma", label: "Schedule gamma", kind: "float", advanced: true, when: (t) => hasScheduleField(t, "gamma") },
  { key: "schedule.every_epochs", label: "Schedule every", kind: "int", advanced: true, hint: "epochs", when: (t) => hasScheduleField(t, "every_epochs") },
  { key: "schedule.min_lr", label: "Minimum learning rate", kind: "float", advanced: true, when: (t) => hasScheduleField(t, "min_lr") },
  { key: "beta1", label: "Adam beta1", kind: "float", advanced: true, when: (t) => optimizer(t) === "adam" },
  { key: "beta2", label: "Adam beta2", kind: "float", advanced: true, when: (t) => optimizer(t) === "adam" },
  { key: "rho", label: "RMSprop rho", kind: "float", advanced: true, when: (t) => optimizer(t) === "rmsprop" },
  { key: "nesterov", label: "Nesterov momentum", kind: "bool", advanced: true, hint: "SGD with momentum", when: (t) => optimizer(t) === "sgd" },
];
const optimizer = (t) => t.optimizer ?? (spec.train.optimizer || {}).default;

/** A field: the label holds only the plain name (what a screen reader or a test looks for); the
 *  hint and the error message describe the input. */
function labelled(id, label, input, hint) {
  const err = h("span", { class: "error field-error", id: `${id}-error`, hidden: true });
  const hintEl = hint ? h("span", { class: "hint", id: `${id}-hint` }, hint) : null;
  input.setAttribute("aria-describedby", (hint ? `${id}-hint ` : "") + `${id}-error`);
  return { err, div: h("div", { class: "field" }, h("div", { class: "label-row" }, h("label", { for: id }, label), hintEl), input, err) };
}

const DATASET_TITLES = { mnist: "MNIST", "fashion-mnist": "Fashion-MNIST", digits8: "8x8 digits" };
function datasetTitle(name) { return DATASET_TITLES[name] || name; }

const defaultType = (key) => { const d = (spec.train[key] || {}).default; return d && d.type; };
function initType(t) { const i = t.init; return i == null ? defaultType("init") : typeof i === "string" ? i : i.type; }
function schedType(t) { const s = t.schedule; return s == null ? defaultType("schedule") : typeof s === "string" ? s : s.type; }
const hasScheduleField = (t, name) => name in (spec.schedules[schedType(t)] || {});
const hasInitField = (t, name) => !!initRule(initType(t), name);
const dropoutRate = () => (spec.layers.dropout || {}).rate || {};

export class HparamsForm {
  /**
   * @param root     where the hyperparameter inputs go
   * @param dataRoot where the dataset inputs go
   * @param onChange () => void after any edit
   * @param getModel () => the layer list (for the dropout field)
   */
  constructor(root, dataRoot, { onChange, getModel, samples }) {
    Object.assign(this, { root, dataRoot, onChange, getModel, samples });
    this.cfg = { model: [], train: {}, dataset: {} };
    this.datasets = [];
    this.inputs = {};
    this.errs = {};
    this.formError = h("p", { class: "error", role: "alert", hidden: true });
  }

  setDatasets(list) { this.datasets = list; this.renderData(); }

  setConfig(cfg) { this.cfg = cfg; this.render(); this.renderData(); }

  field(id, label, input, hint, key) {
    const el = labelled(id, label, input, hint);
    this.errs[key] = el.err;
    this.inputs[key] = input;
    return el.div;
  }

  render() {
    const t = this.cfg.train;
    this.inputs = {}; this.errs = {};
    const main = [], adv = [];
    for (const f of FIELDS) {
      if (f.when && !f.when(t)) continue;
      const els = f.advanced ? adv : main;
      const id = `hp-${f.key.replace(".", "-")}`;
      let input;
      if (f.kind === "select") {
        const options = f.options();
        const cur = f.key === "init" ? initType(t) : f.key === "schedule" ? schedType(t) : (t[f.key] ?? trainDefault(f.key));
        const opts = options.filter(([v]) => v !== "loss" || cur === "loss");
        input = h("select", { id, onchange: () => this.setSelect(f.key, input.value) },
          ...opts.map(([v, label]) => h("option", { value: v, selected: v === cur }, label)));
      } else if (f.kind === "dropout") {
        const drops = this.getModel().filter((l) => l.type === "dropout");
        const rate = dropoutRate();
        input = h("input", { type: "number", id, step: "any", min: rate.min, max: rate.max, disabled: !drops.length,
          value: drops.length ? String(drops[0].rate ?? dropoutRate().default) : "",
          placeholder: drops.length ? "" : "no dropout layer",
          oninput: () => { const v = parseNum(input.value); for (const l of this.getModel()) if (l.type === "dropout") { if (v === undefined) delete l.rate; else l.rate = v; } this.onChange("dropout"); } });
        els.push(this.field(id, f.label, input, drops.length > 1 ? `rate of all ${drops.length} dropout layers` : drops.length ? "rate of the dropout layer" : "add a Dropout layer to use it", f.key));
        continue;
      } else if (f.kind === "bool") {
        const rule = spec.train[f.key] || {};
        input = h("input", { type: "checkbox", id, checked: !!(t[f.key] ?? rule.default),
          onchange: () => { t[f.key] = input.checked; this.onChange(f.key); } });
        const err = h("span", { class: "error field-error", id: `${id}-error`, hidden: true });
        input.setAttribute("aria-describedby", `${id}-error`);
        this.errs[f.key] = err; this.inputs[f.key] = input;
        els.push(h("div", { class: "field check" }, h("label", { for: id }, input, " ", f.label), f.hint ? h("span", { class: "hint" }, f.hint) : null, err));
        continue;
      } else {
        const [a, b] = f.key.split(".");
        const obj = b ? (typeof t[a] === "object" && t[a] ? t[a] : {}) : t;
        const v = obj[b || a];
        input = h("input", { type: "number", id, step: f.kind === "int" ? "1" : "any", value: v == null ? "" : String(v), placeholder: f.placeholder || placeholder(f.key, t),
          oninput: () => this.setNumber(f.key, input.value) });
      }
      els.push(this.field(id, f.label, input, f.hint, f.key));
    }
    // "Advanced" stays open or closed across re-renders (a select re-renders the form)
    const details = h("details", { class: "advanced", open: !!this.advancedOpen },
      h("summary", {}, "Advanced"), h("div", { class: "field-grid" }, ...adv));
    details.addEventListener("toggle", () => { this.advancedOpen = details.open; });
    clear(this.root).append(h("div", { class: "field-grid" }, ...main), details, this.formError);
  }

  syncDropout() {
    const input = this.inputs.dropout;
    const drops = this.getModel().filter((l) => l.type === "dropout");
    if (!input || (!!drops.length) !== !input.disabled) { this.render(); return; }
    if (drops.length && document.activeElement !== input) input.value = String(drops[0].rate ?? dropoutRate().default);
  }

  setSelect(key, value) {
    const t = this.cfg.train;
    if (key === "init") {
      // the new type with the defaults of the parameters the form shows for it (std, limit)
      t.init = { type: value };
      for (const f of FIELDS) {
        const [a, b] = f.key.split(".");
        const rule = a === "init" && b ? initRule(value, b) : null;
        if (rule && rule.default != null) t.init[b] = rule.default;
      }
    }
    else if (key === "schedule") {
      const gamma = (spec.schedules[value] || {}).gamma;
      t.schedule = { type: value, ...(gamma ? { gamma: gamma.default } : {}) };
    }
    else t[key] = value;
    this.render();
    this.onChange(key);
    const el = this.inputs[key]; if (el) el.focus();
  }

  setNumber(key, raw) {
    const t = this.cfg.train;
    const v = parseNum(raw);
    const [a, b] = key.split(".");
    if (b) {
      if (typeof t[a] !== "object" || !t[a]) t[a] = { type: a === "init" ? initType(t) : schedType(t) };
      if (v === undefined) delete t[a][b]; else t[a][b] = v;
    } else if (v === undefined) {
      delete t[key];
    } else {
      t[key] = v;
      // epochs and iterations exclude each other: typing one clears the other
      const other = key === "epochs" ? "iterations" : key === "iterations" ? "epochs" : null;
      if (other && t[other] != null) { delete t[other]; if (this.inputs[other]) this.inputs[other].value = ""; }
    }
    this.onChange(key);
  }

  renderData() {
    const ds = this.cfg.dataset;
    const cur = ds.name || "mnist";
    const list = this.datasets.length ? this.datasets : [{ name: cur, available: true, description: "" }];
    const sel = h("select", { id: "ds-name", onchange: () => { ds.name = sel.value; this.renderData(); this.onChange("dataset"); } },
      ...list.map((d) => h("option", { value: d.name, disabled: !d.available, selected: d.name === cur },
        datasetTitle(d.name) + (d.available ? "" : " (not installed)"))));
    const info = list.find((d) => d.name === cur);
    const limit = h("input", { type: "number", id: "ds-train-limit", step: "1", min: 1, value: ds.train_limit == null ? "" : String(ds.train_limit),
      placeholder: info && info.train_size ? `all ${info.train_size.toLocaleString("en-US")}` : "all",
      oninput: () => { const v = parseNum(limit.value); if (v === undefined) delete ds.train_limit; else ds.train_limit = v; this.onChange("train_limit"); } });
    const probes = this.probes().join(", ");
    const probeInput = h("input", { type: "text", id: "ds-probes", value: probes, inputmode: "numeric", autocomplete: "off",
      oninput: () => { this.setProbes(probeInput.value); } });
    const chooser = h("details", { class: "probe-chooser" }, h("summary", {}, "Choose probe images from the test set"));
    chooser.addEventListener("toggle", () => { if (chooser.open) this.fillChooser(chooser, probeInput); });
    this.errsData = {};
    const f = (id, label, input, hint, key) => {
      const el = labelled(id, label, input, hint);
      this.errsData[key] = el.err;
      return el.div;
    };
    clear(this.dataRoot).append(
      h("div", { class: "field-grid" },
        f("ds-name", "Dataset", sel, null, "name"),
        f("ds-train-limit", "Training subset size", limit, "images", "train_limit")),
      info && info.description ? h("p", { class: "small muted" }, info.description) : null,
      f("ds-probes", "Probe images", probeInput, "test-set indices, shown as feature maps", "probe_indices"),
      chooser);
  }

  /** The probe indices in the design (the engine's default when the config has none). */
  probes() { return this.cfg.train.probe_indices ?? (spec.train.probe_indices || {}).default ?? []; }

  setProbes(text) {
    const parts = text.split(/[\s,]+/).filter(Boolean);
    const nums = parts.map(Number);
    this.cfg.train.probe_indices = nums.every((n) => Number.isInteger(n)) ? nums : parts;
    this.onChange("probe_indices");
  }

  async fillChooser(details, input) {
    if (details.querySelector(".gallery")) return;
    const ds = this.cfg.dataset.name || "mnist";
    const grid = h("ul", { class: "gallery chooser", "aria-label": "Test images" });
    details.append(h("p", { class: "small muted" }, "Press an image to add or remove it (at most 16)."), grid);
    for (let i = 0; i < 48; i++) {
      const c = h("canvas", { class: "thumb", width: 28, height: 28 });
      const chosen = () => this.probes().includes(i);
      const b = h("button", { type: "button", class: "probe", "aria-pressed": String(chosen()), "aria-label": `Test image #${i}`,
        onclick: () => {
          let cur = this.probes().filter((v) => Number.isInteger(v));
          cur = cur.includes(i) ? cur.filter((v) => v !== i) : [...cur, i].slice(-16);
          this.cfg.train.probe_indices = cur;
          input.value = cur.join(", ");
          for (const btn of grid.querySelectorAll("button")) btn.setAttribute("aria-pressed", String(cur.includes(+btn.dataset.index)));
          this.onChange("probe_indices");
        }, dataset: { index: String(i) } }, c, h("span", { class: "small" }, `#${i}`));
      grid.append(h("li", {}, b));
      this.samples.draw(ds, i, c);
    }
  }

  /** Messages for train.* and dataset.* next to their fields; the rest at the bottom. */
  showErrors(errors) {
    for (const e of Object.values(this.errs)) { e.hidden = true; e.textContent = ""; }
    for (const e of Object.values(this.errsData || {})) { e.hidden = true; e.textContent = ""; }
    for (const el of Object.values(this.inputs)) el.removeAttribute("aria-invalid");
    const rest = [];
    for (const e of errors) {
      const loc = e.loc || [];
      let target = null;
      if (loc[0] === "train") {
        const k = loc[1] === "init" || loc[1] === "schedule" ? (loc[2] && loc[2] !== "type" ? `${loc[1]}.${loc[2]}` : loc[1]) : loc[1];
        target = this.errs[k] || this.errs[loc[1]] || (loc[1] === "probe_indices" ? this.errsData.probe_indices : null);
        if (this.inputs[k]) this.inputs[k].setAttribute("aria-invalid", "true");
      } else if (loc[0] === "dataset") {
        target = this.errsData[loc[1]];
      } else if (loc[0] === "model") {
        continue; // the layer editor shows these
      }
      const adv = target && target.closest("details.advanced");
      if (adv && !adv.open) adv.open = true;         // a message in a closed disclosure is unseen
      if (target) { target.hidden = false; target.textContent = target.textContent ? target.textContent + " " + e.msg : e.msg; }
      else rest.push(e.msg);
    }
    this.formError.hidden = !rest.length;
    this.formError.textContent = rest.join(" ");
  }
}
