// Weight and gradient L2 norms per parameter tensor, from each snapshot, with a sparkline of the
// gradient norm over time (log scale): vanishing or exploding gradients show at a glance.

import { h, clear, fmtNum, fitCanvas } from "./dom.js";

export function tensorLabel(name) {
  // "3.conv2d.kernel" -> "layer4.conv2d.kernel": layers counted from 1, as the layer editor
  // numbers them, and the very key of the exported .npz (GET /api/runs/{id}/weights)
  const m = /^(\d+)\.([a-z0-9_]+)\.(.+)$/.exec(name);
  return m ? `layer${+m[1] + 1}.${m[2]}.${m[3]}` : name;
}

function spark(canvas, values, color) {
  const W = 64, H = 20;
  const ctx = fitCanvas(canvas, W, H);
  ctx.clearRect(0, 0, W, H);
  const logs = values.map((v) => (v > 0 ? Math.log10(v) : null)).filter((v) => v != null);
  if (logs.length < 2) return;
  let lo = Math.min(...logs), hi = Math.max(...logs);
  if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
  ctx.strokeStyle = color; ctx.lineWidth = 1.5; ctx.beginPath();
  let first = true;
  values.forEach((v, i) => {
    if (!(v > 0)) return;
    const x = (i / (values.length - 1)) * (W - 2) + 1;
    const y = H - 2 - ((Math.log10(v) - lo) / (hi - lo)) * (H - 4);
    if (first) { ctx.moveTo(x, y); first = false; } else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

export class NormsTable {
  constructor(root) {
    this.root = root;
    this.caption = h("p", { class: "muted small" }, "No run selected.");
    this.tbody = h("tbody");
    this.table = h("table", { class: "grid-table norms" },
      h("caption", { class: "sr-only" }, "Weight and gradient norms per parameter tensor"),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Layer tensor"), h("th", { scope: "col", class: "num" }, "‖W‖"),
        h("th", { scope: "col", class: "num" }, "‖∇W‖"), h("th", { scope: "col", class: "num", title: "‖∇W‖ / ‖W‖: how big a step the gradient asks for, relative to the weights" }, "ratio"),
        h("th", { scope: "col", title: "gradient norm at each snapshot, log scale" }, "trend"))),
      this.tbody);
    clear(root).append(this.caption, h("div", { class: "table-wrap" }, this.table));
    this.drawn = -1;
  }
  reset() { this.drawn = -1; this.runId = null; this.rows = null; clear(this.tbody); this.caption.textContent = "No run selected."; }
  update(state) {
    if (!state) { if (this.runId !== null) this.reset(); return; }
    if (state.runId === this.runId && state.snapshots === this.drawn) return;
    const sameRun = this.runId === state.runId;
    this.runId = state.runId; this.drawn = state.snapshots;
    if (!state.snapshot) { clear(this.tbody); this.rows = null; this.caption.textContent = "Waiting for the first snapshot…"; return; }
    this.caption.textContent = `At step ${state.snapshot.step.toLocaleString("en-US")} (gradients of the last batch).`;
    const norms = state.snapshot.norms;
    const names = norms.map((r) => r.name).join("|");
    if (!sameRun || !this.rows || this.names !== names) {
      // the tensors changed: build the rows once; later snapshots only update their cells
      clear(this.tbody);
      this.names = names;
      this.rows = norms.map((row) => {
        const cells = { w: h("td", { class: "num" }), g: h("td", { class: "num" }), r: h("td", { class: "num" }), c: h("canvas", { "aria-hidden": "true" }) };
        this.tbody.append(h("tr", {}, h("th", { scope: "row" }, tensorLabel(row.name)), cells.w, cells.g, cells.r, h("td", {}, cells.c)));
        return cells;
      });
    }
    norms.forEach((row, i) => {
      const cells = this.rows[i];
      const ratio = row.weight_norm > 0 ? row.grad_norm / row.weight_norm : null;
      cells.w.textContent = fmtNum(row.weight_norm, 4);
      cells.g.textContent = fmtNum(row.grad_norm, 4);
      cells.r.textContent = ratio == null ? "–" : fmtNum(ratio, 3);
      const hist = state.norms.byName.get(row.name);
      if (hist) spark(cells.c, hist.grad.slice(-200), "#0072B2");
    });
  }
}
