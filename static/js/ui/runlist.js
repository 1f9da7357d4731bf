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

  /** Rows are kept per run and updated in place (twice a second while runs train), so the
   *  keyboard focus on a row's button survives the updates. */
  render(runs, watchedId, compareIds) {
    runs = lineageOrder(runs);
    this.empty.hidden = runs.length > 0;
    this.table.hidden = runs.length === 0;
    this.rows ||= new Map();
    const seen = new Set();
    runs.forEach((r, i) => {
      seen.add(r.id);
      let row = this.rows.get(r.id);
      if (!row) { row = this.buildRow(r); this.rows.set(r.id, row); }
      this.updateRow(row, r, watchedId, compareIds);
      if (this.tbody.children[i] !== row.tr) this.tbody.insertBefore(row.tr, this.tbody.children[i] || null);
    });
    for (const [id, row] of this.rows) if (!seen.has(id)) { row.tr.remove(); this.rows.delete(id); }
  }

  buildRow(r) {
    const row = { run: r };
    row.box = h("input", { type: "checkbox", onchange: () => this.onCompareChange(row.run.id, row.box.checked) });
    row.name = h("button", { type: "button", class: "link", onclick: () => this.onWatch(row.run.id) });
    row.status = h("td");
    row.step = h("td", { class: "num" });
    row.loss = h("td", { class: "num" });
    row.acc = h("td", { class: "num" });
    row.time = h("td", { class: "num" });
    row.actions = h("td", { class: "actions" });
    row.lineage = h("div", { class: "small muted lineage" });
    row.nameCell = h("td", {}, row.name, h("div", { class: "small muted mono" }, r.id), row.lineage);
    row.tr = h("tr", { dataset: { runId: r.id } },
      h("td", {}, row.box), row.nameCell,
      row.status, row.step, row.loss, row.acc, row.time, h("td", { class: "small" }, when(r.created_at)), row.actions);
    return row;
  }

  updateRow(row, r, watchedId, compareIds) {
    row.run = r;
    const text = (el, t) => { if (el.textContent !== t) el.textContent = t; };
    const acc = r.final && r.final.test_accuracy != null ? r.final.test_accuracy : r.best_test_accuracy;
    const step = r.final ? r.final.step : r.latest ? r.latest.step : 0;
    const total = r.summary ? r.summary.total_steps : null;
    const secs = r.final ? r.final.train_seconds : (r.started_at ? ((r.finished_at || Date.now() / 1000) - r.started_at) : null);
    row.tr.classList.toggle("watched", r.id === watchedId);
    const compared = compareIds.includes(r.id);
    if (row.box.checked !== compared) row.box.checked = compared;
    row.box.setAttribute("aria-label", `Compare ${r.name} (${r.id})`);
    text(row.name, r.name);
    const depth = r._depth || 0;
    row.nameCell.style.paddingLeft = depth ? `${0.5 + 1.25 * depth}em` : "";
    row.tr.classList.toggle("fork", depth > 0);
    text(row.lineage, r.parent_id ? `↳ fork of ${r._parentName || r.parent_id} at step ${(r.fork_step || 0).toLocaleString("en-US")}` : "");
    row.name.setAttribute("aria-label", `Watch ${r.name} (${r.id})`);
    if (r.id === watchedId) row.name.setAttribute("aria-current", "true"); else row.name.removeAttribute("aria-current");
    const statusKey = `${r.status}|${r.error || ""}`;
    if (row.statusKey !== statusKey) {
      row.statusKey = statusKey;
      clear(row.status).append(statusBadge(r.status));
      if (r.error) row.status.append(h("div", { class: "small error-text", title: r.error }, r.error.length > 60 ? r.error.slice(0, 57) + "…" : r.error));
    }
    if (r.status === "diverged") {
      // the step it diverged at is the one after the last applied step; the accuracy on record
      // is the last evaluation before it, never the run's result
      const at = (step || 0) + 1;
      text(row.step, `diverged at step ${at.toLocaleString("en-US")}`);
      text(row.loss, "–");
      text(row.acc, acc != null ? `last good: ${fmtPct(acc)}` : "–");
      row.acc.title = "the last evaluation before the run diverged (not its result)";
    } else {
      text(row.step, `${(step || 0).toLocaleString("en-US")}${total ? " / " + total.toLocaleString("en-US") : ""}`);
      text(row.loss, r.final && r.final.test_loss != null ? fmtNum(r.final.test_loss, 4) : r.latest ? fmtNum(r.latest.loss, 4) : "–");
      text(row.acc, acc != null ? fmtPct(acc) : "–");
      row.acc.removeAttribute("title");
    }
    text(row.time, secs != null ? fmtDuration(secs) : "–");
    // weights_step: null until an active run has saved weights (and for imported ones)
    const noWeights = r.weights_step === null && ["queued", "running", "paused"].includes(r.status);
    const actionsKey = `${noWeights}|${r.name}`;
    if (row.actionsKey !== actionsKey) {
      row.actionsKey = actionsKey;
      clear(row.actions).append(
        noWeights ? h("span", { class: "small muted", title: "no weights saved yet" }, "no weights")
          : h("a", { href: api.weightsUrl(r.id), download: `${r.name}-${r.id}.npz`, "aria-label": `Export weights of ${r.name} (${r.id})` }, "Weights"),
        h("button", { type: "button", class: "link danger", "aria-label": `Delete ${r.name} (${r.id})`, onclick: () => this.onDelete(row.run) }, "Delete"));
    }
  }
}


/** Runs in list order (newest first) with each fork right under its parent (its own forks
 *  under it, oldest first), annotated with ``_depth`` and ``_parentName``. A fork whose parent
 *  is gone is listed as a root. */
export function lineageOrder(runs) {
  const byId = new Map(runs.map((r) => [r.id, r]));
  const kids = new Map();
  const roots = [];
  for (const r of runs) {
    if (r.parent_id && byId.has(r.parent_id)) {
      if (!kids.has(r.parent_id)) kids.set(r.parent_id, []);
      kids.get(r.parent_id).push(r);
    } else roots.push(r);
  }
  const out = [];
  const visit = (r, depth) => {
    const p = r.parent_id && byId.get(r.parent_id);
    out.push({ ...r, _depth: depth, _parentName: p ? p.name : null });
    const ch = (kids.get(r.id) || []).slice().sort((a, b) => a.created_at - b.created_at);
    for (const c of ch) if (depth < 20) visit(c, depth + 1);
  };
  for (const r of roots) visit(r, 0);
  return out;
}
