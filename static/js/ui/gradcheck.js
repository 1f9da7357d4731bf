// "Check gradients": POST /api/gradcheck with the designed model -> numerical vs analytic
// relative error per parameter tensor (float64, central differences, as in cs231n), and one of
// three answers: agrees / inconclusive (n entries at ReLU or max-pool kinks) / disagrees.

import { h, clear, fmtInt } from "./dom.js";
import { api } from "../api.js";
import { tensorLabel } from "./norms.js";

/** ok below the server's threshold; a warning up to 100x it; bad beyond. */
export function errorClass(e, threshold = 1e-4) {
  if (e == null) return "";
  return e < threshold ? "ok" : e < 100 * threshold ? "warn" : "bad";
}

const exp = (x) => (x == null ? "–" : x.toExponential(2));

/** The headline and the sentence that explains it, from a /api/gradcheck answer. */
export function verdictText(res) {
  const limit = res.threshold ? ` (limit ${res.threshold.toExponential(0)})` : "";
  const worst = `Largest relative error ${exp(res.max_rel_error)}${limit}`;
  const n = res.at_kinks || 0;
  if (res.status === "disagrees") {
    return { head: "Disagrees", cls: "bad", text: `${worst} on entries away from any kink: a gradient is wrong.` };
  }
  if (res.status === "inconclusive") {
    return { head: `Inconclusive (${fmtInt(n)} at kinks)`, cls: "warn",
      text: `${worst} over the ${fmtInt(res.checked)} entries compared, which agree. ${fmtInt(n)} ${n === 1 ? "entry sits" : "entries sit"} on a ReLU or max-pool kink (a ±h step crosses it: ` +
        "a central difference there is not a gradient; MNIST's zero background and zero biases put whole feature maps on ReLU's kink), so " + (n === 1 ? "it was" : "they were") + " not compared." };
  }
  return { head: "Agrees", cls: "ok", text: `${worst} over ${fmtInt(res.checked)} entries: backprop agrees with the numerical gradient.` };
}

export class GradCheck {
  constructor(root, { getBody }) {
    this.getBody = getBody;
    this.button = h("button", { type: "button", onclick: () => this.run() }, "Check gradients");
    this.verdict = h("p", { class: "gc-verdict", role: "status", "aria-label": "Gradient check result", hidden: true });
    this.status = h("p", { class: "small muted", "aria-live": "polite" }, "Compares backprop's gradients with central differences on 2-3 images, in float64.");
    this.out = h("div", { class: "table-wrap" });
    clear(root).append(this.button, this.verdict, this.status, this.out);
  }

  async run() {
    this.button.disabled = true;
    this.verdict.hidden = true;
    this.status.textContent = "Checking gradients…";
    clear(this.out);
    try {
      const res = await api.gradcheck(this.getBody());
      const v = verdictText(res);
      this.verdict.textContent = v.head;
      this.verdict.className = `gc-verdict ${v.cls}`;
      this.verdict.hidden = false;
      this.status.textContent = v.text;
      this.out.append(h("table", { class: "grid-table gradcheck" },
        h("caption", { class: "sr-only" }, "Relative error per tensor"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Tensor"), h("th", { scope: "col" }, "Shape"),
          h("th", { scope: "col", class: "num" }, "Rel. error"), h("th", { scope: "col", class: "num", title: "entries compared" }, "Compared"),
          h("th", { scope: "col", class: "num", title: "entries whose ±h step crosses a kink (not compared)" }, "At kinks"))),
        h("tbody", {}, ...res.rows.map((r) => h("tr", {},
          h("th", { scope: "row" }, tensorLabel(r.name)), h("td", { class: "mono" }, r.shape.join("×")),
          h("td", { class: `num ${errorClass(r.rel_error, res.threshold)}` }, r.rel_error == null ? "–" : exp(r.rel_error)),
          h("td", { class: "num" }, String(r.checked)),
          h("td", { class: `num ${r.at_kinks ? "warn" : ""}` }, String(r.at_kinks ?? 0)))))));
    } catch (err) {
      this.status.textContent = "Gradient check failed: " + err.message;
    } finally {
      this.button.disabled = false;
    }
  }
}
