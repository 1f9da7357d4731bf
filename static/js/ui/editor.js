// The layer-by-layer editor: add, remove, reorder and edit layers. Each row shows its output
// shape and parameter count from the server's validation, and the server's message next to
// the field it is about. Editing a field does not rebuild the rows (focus stays put); adding,
// removing, moving or changing a type does. The layer types and their fields are the engine's
// (GET /api/spec, through spec.js).

import { h, clear, shapeStr, fmtInt } from "./dom.js";
import { layerTypes, layerFields, fieldLabel, initTypes, newLayer } from "../spec.js";

export class LayerEditor {
  /** @param onChange () => void, called after any edit (the model list is edited in place) */
  constructor(root, { onChange }) {
    this.root = root;
    this.onChange = onChange;
    this.model = [];
    this.list = h("ol", { class: "layers", "aria-label": "Layers" });
    this.inputRow = h("li", { class: "layer input-layer" }, h("span", { class: "layer-name" }, "Input"), h("span", { class: "shape" }, ""));
    this.modelError = h("p", { class: "error", role: "alert", hidden: true });
    this.total = h("p", { class: "small muted totals" }, "");
    this.addType = h("select", { id: "add-layer-type", "aria-label": "New layer type" });
    const addBtn = h("button", { type: "button", onclick: () => this.add(this.addType.value) }, "Add layer");
    clear(root).append(this.list, this.modelError, h("div", { class: "add-layer" }, this.addType, addBtn), this.total);
    this.rows = [];
  }

  setModel(model) { this.model = model; this.render(); }

  add(type) {
    this.model.push(newLayer(type));
    this.render();
    this.onChange();
    const row = this.rows[this.rows.length - 1];
    if (row) row.typeSel.focus();
  }
  /** A new layer of `type` at position j (below layer j, 1-based), its type select focused. */
  insert(j, type) {
    this.model.splice(j, 0, newLayer(type));
    this.render();
    this.onChange();
    if (this.rows[j]) this.rows[j].typeSel.focus();
  }
  remove(i) { this.model.splice(i, 1); this.render(); this.onChange(); this.focusRow(Math.min(i, this.model.length - 1), "remove"); }
  move(i, d) {
    const j = i + d;
    if (j < 0 || j >= this.model.length) return;
    [this.model[i], this.model[j]] = [this.model[j], this.model[i]];
    this.render(); this.onChange(); this.focusRow(j, d < 0 ? "up" : "down");
  }
  focusRow(i, which) {
    const row = this.rows[i];
    if (!row) return;
    // the same button on the moved layer, so pressing again keeps moving it; at the end of the
    // list (disabled), the opposite one
    const other = { up: "down", down: "up", remove: "remove" }[which];
    const btn = [row.buttons[which], row.buttons[other]].find((b) => b && !b.disabled) || row.typeSel;
    btn.focus();
  }

  render() {
    if (this.addType.options.length !== layerTypes().length) {
      clear(this.addType).append(...layerTypes().map(([t, title]) => h("option", { value: t }, title)));
    }
    clear(this.list);
    this.list.append(this.inputRow);
    this.rows = this.model.map((layer, i) => this.renderRow(layer, i));
    for (const r of this.rows) this.list.append(r.el);
    if (this.lastResult) this.showResult(this.lastResult);
  }

  renderRow(layer, i) {
    const n = i + 1;
    const type = layer.type;
    const typeSel = h("select", { "aria-label": `Layer ${n} type`, class: "type-select",
      onchange: () => { this.model[i] = newLayer(typeSel.value); this.render(); this.onChange(); this.rows[i].typeSel.focus(); } },
      ...layerTypes().map(([t, title]) => h("option", { value: t, selected: t === type }, title)));
    if (!layerTypes().some(([t]) => t === type)) typeSel.append(h("option", { value: type, selected: true }, String(type)));
    const shape = h("span", { class: "shape", "aria-live": "off" }, "");
    const params = h("span", { class: "params" }, "");
    const buttons = {
      up: h("button", { type: "button", class: "icon", "aria-label": `Move layer ${n} up`, title: "Move up", disabled: i === 0, onclick: () => this.move(i, -1) }, "↑"),
      down: h("button", { type: "button", class: "icon", "aria-label": `Move layer ${n} down`, title: "Move down", disabled: i === this.model.length - 1, onclick: () => this.move(i, 1) }, "↓"),
      insert: h("button", { type: "button", class: "icon", "aria-label": `Insert a layer below layer ${n}`,
        title: "Insert a layer below this one (of the type chosen under the list; change it here after)", onclick: () => this.insert(i + 1, this.addType.value) }, "+"),
      remove: h("button", { type: "button", class: "icon danger", "aria-label": `Remove layer ${n}`, title: "Remove", onclick: () => this.remove(i) }, "✕"),
    };
    const rowErr = h("p", { class: "error", id: `layer-${i}-error`, hidden: true });
    const fields = {};
    const fieldEls = [];
    for (const [name, rule] of Object.entries(layerFields(type))) {
      const id = `layer-${i}-${name}`;
      const err = h("span", { class: "error field-error", id: `${id}-error`, hidden: true });
      let input;
      const label = fieldLabel(name);
      if (rule.kind === "bool") {
        input = h("input", { type: "checkbox", id, checked: layer[name] ?? rule.default, "aria-label": `Layer ${n} ${label.toLowerCase()}`,
          onchange: () => { layer[name] = input.checked; this.onChange(); } });
        fieldEls.push(h("div", { class: "field check" }, h("label", { for: id }, input, " ", label), err));
      } else if (rule.kind === "init") {
        const cur = layer.init ? (typeof layer.init === "string" ? layer.init : layer.init.type) : "";
        input = h("select", { id, "aria-label": `Layer ${n} init`, onchange: () => {
          if (!input.value) delete layer.init;
          else layer.init = { type: input.value, ...(input.value === "normal" ? { std: 0.01 } : input.value === "uniform" ? { limit: 0.05 } : {}) };
          this.render(); this.onChange();
        } }, h("option", { value: "", selected: !cur }, "default"), ...initTypes().map((t) => h("option", { value: t, selected: t === cur }, t)));
        fieldEls.push(h("div", { class: "field" }, h("label", { for: id }, label), input, err));
        if (layer.init && (layer.init.type === "normal" || layer.init.type === "uniform")) {
          const key = layer.init.type === "normal" ? "std" : "limit";
          const sid = `${id}-${key}`;
          const sub = h("input", { type: "number", id: sid, step: "any", value: layer.init[key] ?? "", "aria-label": `Layer ${n} init ${key}`,
            oninput: () => { const v = parseNum(sub.value); if (v === undefined) delete layer.init[key]; else layer.init[key] = v; this.onChange(); } });
          fieldEls.push(h("div", { class: "field" }, h("label", { for: sid }, `Init ${key}`), sub));
          fields[`init.${key}`] = { input: sub, err };
        }
      } else {
        const val = layer[name];
        input = h("input", { type: "number", id, inputmode: rule.kind === "int" ? "numeric" : "decimal",
          step: rule.kind === "int" ? "1" : "any", value: val == null ? "" : String(val), min: rule.min, max: rule.max,
          placeholder: rule.required ? "required" : rule.default == null ? (name === "stride" ? "= pool" : "") : String(rule.default),
          "aria-label": `Layer ${n} ${label.toLowerCase()}`, "aria-describedby": `${id}-error`,
          oninput: () => { const v = parseNum(input.value); if (v === undefined) delete layer[name]; else layer[name] = v; this.onChange(); } });
        fieldEls.push(h("div", { class: "field" }, h("label", { for: id }, label), input, err));
      }
      fields[name] = { input, err };
    }
    const el = h("li", { class: "layer", dataset: { index: String(i) } },
      h("div", { class: "layer-head" }, h("span", { class: "layer-num", "aria-hidden": "true" }, String(n)), typeSel, h("span", { class: "shape-box" }, shape, params),
        h("span", { class: "layer-buttons" }, buttons.up, buttons.down, buttons.insert, buttons.remove)),
      fieldEls.length ? h("div", { class: "fields" }, ...fieldEls) : null, rowErr);
    return { el, typeSel, shape, params, fields, rowErr, buttons };
  }

  /** Show a validation answer: shapes and params per layer, messages next to their fields. */
  showResult(res) {
    this.lastResult = res;
    const summary = res.summary || { layers: [] };
    const byIndex = new Map((summary.layers || []).map((l) => [l.index, l]));
    const inShape = summary.input_shape;
    this.inputRow.querySelector(".shape").textContent = inShape ? shapeStr(inShape) : "";
    for (const [i, r] of this.rows.entries()) {
      const l = byIndex.get(i);
      r.shape.textContent = l ? `→ ${shapeStr(l.output_shape)}` : "→ ?";
      r.shape.title = l ? `output ${shapeStr(l.output_shape)}, ${fmtInt(l.params)} parameters` : "not inferred (fix the errors above it)";
      r.params.textContent = l && l.params ? `${fmtInt(l.params)} params` : "";
      r.shape.classList.toggle("unknown", !l);
      r.rowErr.hidden = true; r.rowErr.textContent = "";
      r.el.classList.remove("invalid");
      for (const f of Object.values(r.fields)) { f.err.hidden = true; f.err.textContent = ""; f.input.removeAttribute("aria-invalid"); }
    }
    const modelMsgs = [];
    for (const e of res.errors || []) {
      const loc = e.loc || [];
      if (loc[0] !== "model") continue;
      const i = loc[1];
      const r = typeof i === "number" ? this.rows[i] : null;
      if (!r) { modelMsgs.push(e.msg); continue; }
      r.el.classList.add("invalid");
      const field = loc[2] === "init" && loc[3] ? `init.${loc[3]}` : loc[2];
      const f = field != null && (r.fields[field] || r.fields[loc[2]]);
      if (f) {
        f.err.hidden = false;
        f.err.textContent = f.err.textContent ? f.err.textContent + " " + e.msg : e.msg;
        f.input.setAttribute("aria-invalid", "true");
      } else {
        r.rowErr.hidden = false;
        r.rowErr.textContent = r.rowErr.textContent ? r.rowErr.textContent + " " + e.msg : e.msg;
      }
    }
    this.modelError.hidden = !modelMsgs.length;
    this.modelError.textContent = modelMsgs.join(" ");
    const mem = summary.memory_bytes;
    this.total.textContent = summary.params != null
      ? `${fmtInt(summary.params)} parameters${mem ? ` · about ${(mem / 1048576).toFixed(mem > 1048576 * 10 ? 0 : 1)} MiB to train` : ""}`
      : "";
  }
}

/** "" -> undefined (the field falls back to its default); otherwise a Number (NaN stays text). */
export function parseNum(s) {
  if (s == null || String(s).trim() === "") return undefined;
  const v = Number(s);
  return Number.isFinite(v) ? v : String(s);
}
