// "Check gradients": POST /api/gradcheck with the designed model -> numerical vs analytic
// relative error per parameter tensor (float64, central differences, as in cs231n).

import { h, clear } from "./dom.js";
import { api } from "../api.js";
import { tensorLabel } from "./norms.js";

/** ok below the server's threshold; a warning up to 100x it (ReLU kinks, max-pool ties). */
export function errorClass(e, threshold = 1e-4) {
  if (e == null) return "";
  return e < threshold ? "ok" : e < 100 * threshold ? "warn" : "bad";
}

export class GradCheck {
  constructor(root, { getBody }) {
    this.getBody = getBody;
    this.button = h("button", { type: "button", onclick: () => this.run() }, "Check gradients");
    this.status = h("p", { class: "small muted", "aria-live": "polite" }, "Compares backprop's gradients with central differences on 2-3 images, in float64.");
    this.out = h("div", { class: "table-wrap" });
    clear(root).append(this.button, this.status, this.out);
  }

  async run() {
    this.button.disabled = true;
    this.status.textContent = "Checking gradients…";
    clear(this.out);
    try {
      const res = await api.gradcheck(this.getBody());
      const limit = res.threshold ? ` (limit ${res.threshold.toExponential(0)})` : "";
      this.status.textContent = `Largest relative error ${res.max_rel_error.toExponential(2)}${limit}: ${res.ok ? "backprop agrees with the numerical gradient." : "too large; a gradient may be wrong (kinks such as ReLU at 0 or max-pool ties can raise it)."}`;
      this.out.append(h("table", { class: "grid-table gradcheck" },
        h("caption", { class: "sr-only" }, "Relative error per tensor"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Tensor"), h("th", { scope: "col" }, "Shape"),
          h("th", { scope: "col", class: "num" }, "Relative error"), h("th", { scope: "col", class: "num" }, "Entries checked"))),
        h("tbody", {}, ...res.rows.map((r) => h("tr", {},
          h("th", { scope: "row" }, tensorLabel(r.name)), h("td", { class: "mono" }, r.shape.join("×")),
          h("td", { class: `num ${errorClass(r.rel_error, res.threshold)}` }, r.rel_error == null ? "–" : r.rel_error.toExponential(2)),
          h("td", { class: "num" }, String(r.checked)))))));
    } catch (err) {
      this.status.textContent = "Gradient check failed: " + err.message;
    } finally {
      this.button.disabled = false;
    }
  }
}
