// The run list (GET /api/runs, kept fresh by WS /ws/runs): status, final metrics, a button to
// watch a run, a box to compare it, its weights, and delete.

import { h, clear, fmtPct, fmtNum, fmtDuration } from "./dom.js";
import { api } from "../api.js";

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, status);
}

function when(t) {
  if (!t) return "";
  const d = new Date(t * 1000);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

export class RunList {
  constructor(root, { onWatch, onCompareChange, onDelete }) {
    Object.assign(this, { root, onWatch, onCompareChange, onDelete });
    this.tbody = h("tbody");
    this.empty = h("p", { class: "muted small" }, "No runs yet: pick a preset and press Start.");
    this.table = h("table", { class: "grid-table runs" },
      h("caption", { class: "sr-only" }, "Runs"),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Compare"), h("th", { scope: "col" }, "Run"), h("th", { scope: "col" }, "Status"),
        h("th", { scope: "col", class: "num" }, "Step"), h("th", { scope: "col", class: "num" }, "Loss"),
        h("th", { scope: "col", class: "num" }, "Test accuracy"), h("th", { scope: "col", class: "num" }, "Time"),
        h("th", { scope: "col" }, "Created"), h("th", { scope: "col" }, "Actions"))),
      this.tbody);
    clear(root).append(this.empty, h("div", { class: "table-wrap" }, this.table));
  }

  render(runs, watchedId, compareIds) {
    this.empty.hidden = runs.length > 0;
    this.table.hidden = runs.length === 0;
    clear(this.tbody);
    for (const r of runs) {
      const acc = r.final && r.final.test_accuracy != null ? r.final.test_accuracy : r.best_test_accuracy;
      const step = r.final ? r.final.step : r.latest ? r.latest.step : 0;
      const total = r.summary ? r.summary.total_steps : null;
      const secs = r.final ? r.final.train_seconds : (r.started_at ? ((r.finished_at || Date.now() / 1000) - r.started_at) : null);
      const box = h("input", { type: "checkbox", checked: compareIds.includes(r.id), "aria-label": `Compare ${r.name} (${r.id})`,
        onchange: () => this.onCompareChange(r.id, box.checked) });
      this.tbody.append(h("tr", { class: r.id === watchedId ? "watched" : "", dataset: { runId: r.id } },
        h("td", {}, box),
        h("td", {}, h("button", { type: "button", class: "link", "aria-current": r.id === watchedId ? "true" : null,
          "aria-label": `Watch ${r.name} (${r.id})`, onclick: () => this.onWatch(r.id) }, r.name), h("div", { class: "small muted mono" }, r.id)),
        h("td", {}, statusBadge(r.status), r.error ? h("div", { class: "small error-text", title: r.error }, r.error.length > 60 ? r.error.slice(0, 57) + "…" : r.error) : null),
        h("td", { class: "num" }, `${(step || 0).toLocaleString("en-US")}${total ? " / " + total.toLocaleString("en-US") : ""}`),
        h("td", { class: "num" }, r.final && r.final.test_loss != null ? fmtNum(r.final.test_loss, 4) : r.latest ? fmtNum(r.latest.loss, 4) : "–"),
        h("td", { class: "num" }, acc != null ? fmtPct(acc) : "–"),
        h("td", { class: "num" }, secs != null ? fmtDuration(secs) : "–"),
        h("td", { class: "small" }, when(r.created_at)),
        h("td", { class: "actions" },
          // weights_step: null until an active run has saved weights (and for imported ones)
          r.weights_step === null && ["queued", "running", "paused"].includes(r.status) ? h("span", { class: "small muted", title: "no weights saved yet" }, "no weights")
            : h("a", { href: api.weightsUrl(r.id), download: `${r.name}-${r.id}.npz`, "aria-label": `Export weights of ${r.name} (${r.id})` }, "Weights"),
          h("button", { type: "button", class: "link danger", "aria-label": `Delete ${r.name} (${r.id})`, onclick: () => this.onDelete(r) }, "Delete"))));
    }
  }
}
