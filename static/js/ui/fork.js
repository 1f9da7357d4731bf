// "Fork from here": a dialog that starts a new run from one of a run's checkpoints (one per
// evaluation, GET /api/runs/{id}/checkpoints) with changed training settings, prefilled with
// the parent's values (POST /api/runs/{id}/fork). The architecture and dataset stay.

import { h, clear, fmtInt, fmtPct } from "./dom.js";
import { api, ApiError } from "../api.js";

const FIELDS = [
  ["lr", "Learning rate", "any"], ["momentum", "Momentum", "any"],
  ["weight_decay", "Weight decay", "any"], ["epochs", "Epochs", "1"],
  ["iterations", "Iterations (instead of epochs)", "1"],
];

/** The checkpoint step nearest to ``step`` (the earlier on a tie). */
export function nearestStep(steps, step) {
  let best = null;
  for (const s of steps) if (best === null || Math.abs(s - step) < Math.abs(best - step)) best = s;
  return best;
}

export class ForkDialog {
  constructor(root, { onForked }) {
    this.onForked = onForked;
    this.dialog = h("dialog", { class: "fork-dialog", "aria-labelledby": "fork-title" });
    root.append(this.dialog);
  }

  /** Open for ``run`` (a Run object), preselecting the checkpoint nearest ``step``. */
  async open(run, step, presets = {}) {
    const d = clear(this.dialog);
    this.run = run;
    const title = h("h2", { id: "fork-title" }, `Fork ${run.name}`);
    const status = h("p", { class: "small", role: "status" }, "Loading its checkpoints…");
    d.append(title, status);
    if (!d.open) d.showModal();
    let list;
    try { list = (await api.checkpoints(run.id)).checkpoints; }
    catch (err) { status.textContent = `Could not list the checkpoints: ${err.message}`; d.append(this.closeButton()); return; }
    if (!list.length) { status.textContent = "This run has no checkpoints kept (they are kept at each evaluation)."; d.append(this.closeButton()); return; }
    const pick = nearestStep(list.map((c) => c.step), step);
    status.textContent = step === pick ? "" : `The nearest kept checkpoint to step ${fmtInt(step)} is step ${fmtInt(pick)}.`;
    const select = h("select", { id: "fork-step", name: "step" },
      list.map((c) => h("option", { value: String(c.step), selected: c.step === pick },
        `step ${fmtInt(c.step)}${c.test_accuracy != null ? ` · test ${fmtPct(c.test_accuracy)}` : ""}${c.best ? " (best)" : ""}`)));
    const tr = (run.config && run.config.train) || {};
    const inputs = {};
    const rows = FIELDS.map(([key, label, stepAttr]) => {
      const id = `fork-${key}`;
      const value = key in presets ? presets[key] : tr[key];
      inputs[key] = h("input", { id, type: "number", step: stepAttr, value: value == null ? "" : String(value) });
      return h("div", { class: "field" }, h("label", { for: id }, label), inputs[key]);
    });
    const name = h("input", { id: "fork-name", type: "text", maxlength: "200", value: presets.name || `${run.name} @${pick}` });
    const errors = h("ul", { class: "errors small", role: "alert" });
    const submit = h("button", { type: "submit", class: "primary" }, "Fork");
    const form = h("form", { method: "dialog", class: "fork-form" },
      h("div", { class: "field" }, h("label", { for: "fork-step" }, "From checkpoint"), select),
      ...rows,
      h("div", { class: "field" }, h("label", { for: "fork-name" }, "Name"), name),
      h("p", { class: "small muted" }, "The child starts from the checkpoint's weights and optimizer state; with nothing changed it takes exactly the parent's next steps."),
      errors,
      h("div", { class: "buttons" }, submit, this.closeButton()));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const overrides = {};
      for (const [key] of FIELDS) {
        const raw = inputs[key].value.trim();
        if (raw === "") continue;            // blank: the parent's value
        const v = Number(raw);
        if (v !== tr[key]) overrides[key] = v;
      }
      if ("iterations" in overrides) delete overrides.epochs;
      clear(errors);
      submit.disabled = true;
      try {
        const child = await api.fork(run.id, { step: +select.value, overrides, name: name.value });
        d.close();
        this.onForked(child);
      } catch (err) {
        const detail = err instanceof ApiError && err.detail ? err.detail : [{ loc: [], msg: err.message }];
        for (const x of detail) errors.append(h("li", {}, `${(x.loc || []).join(".")}${x.loc && x.loc.length ? ": " : ""}${x.msg}`));
      } finally { submit.disabled = false; }
    });
    d.append(form);
    select.focus();
  }

  closeButton() {
    return h("button", { type: "button", onclick: () => this.dialog.close() }, "Cancel");
  }
}

/** The steps and values that come before a fork: each ancestor's points up to where its
 *  child started. ``chain``: [{state, upTo}] oldest first. Returns {step: [], value: []}. */
export function lineagePrefix(chain, field) {
  const out = { step: [], value: [] };
  let from = 0;
  for (const { state, upTo } of chain) {
    const p = state.progress, col = p[field];
    for (let i = 0; i < p.n; i++) {
      const s = p.step.get(i);
      if (s > from && s <= upTo) { out.step.push(s); out.value.push(col.get(i)); }
    }
    from = upTo;
  }
  return out;
}
