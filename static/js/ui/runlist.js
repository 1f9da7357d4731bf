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
  const year = new Date().getFullYear() === d.getFullYear() ? undefined : "numeric";
  return d.toLocaleString(undefined, { year, month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** Sortable columns: key -> [header, value of a run for sorting, numeric]. */
const COLUMNS = {
  name: ["Run", (r) => r.name.toLowerCase()],
  status: ["Status", (r) => r.status],
  where: ["Where", (r) => r.where || "local"],
  preset: ["Preset", (r) => r.preset || ""],
  dataset: ["Dataset", (r) => (isBsde(r) ? `PDE ${r.config.equation.name}, d ${r.config.equation.dim}`
    : (r.config && r.config.dataset && r.config.dataset.name) || "")],
  optimizer: ["Optimizer", (r) => trainOf(r).optimizer || (isBsde(r) ? "adam" : "")],
  lr: ["lr", (r) => trainOf(r).lr, true],
  batch: ["Batch", (r) => trainOf(r).batch_size, true],
  step: ["Step", (r) => (r.final ? r.final.step : r.latest ? r.latest.step : 0), true],
  loss: ["Loss", (r) => (r.final && r.final.test_loss != null ? r.final.test_loss : r.latest ? r.latest.loss : null), true],
  acc: ["Test accuracy", (r) => (r.final && r.final.test_accuracy != null ? r.final.test_accuracy : r.best_test_accuracy), true],
  time: ["Time", (r) => (r.final ? r.final.train_seconds : null), true],
  created: ["Created", (r) => r.created_at, true],
};
const trainOf = (r) => (r.config && r.config.train) || {};
// a Deep BSDE run has an equation instead of a dataset, and always trains with Adam
const isBsde = (r) => !!(r.config && r.config.task === "bsde" && r.config.equation);

/** What the search box matches: name, id, preset, status, dataset, optimizer, notes and tags
 *  ("#tag" matches a tag exactly). */
export function matches(r, q) {
  if (!q) return true;
  const tags = (r.tags || []).map((t) => t.toLowerCase());
  const hay = `${r.name} ${r.id} ${r.preset || ""} ${r.status} ${COLUMNS.dataset[1](r)} ${COLUMNS.optimizer[1](r)} ${r.notes || ""} ${tags.join(" ")}`.toLowerCase();
  return q.toLowerCase().split(/\s+/).filter(Boolean).every((w) => (w.startsWith("#") && w.length > 1 ? tags.includes(w.slice(1)) : hay.includes(w)));
}

/** Sorted by ``key`` (nulls last), or in lineage order (newest first, forks under parents). */
export function sortRuns(runs, key, dir) {
  if (!key) return lineageOrder(runs);
  const [, get, numeric] = COLUMNS[key];
  const sgn = dir === "asc" ? 1 : -1;
  return runs.slice().sort((a, b) => {
    const x = get(a), y = get(b);
    if (x == null || Number.isNaN(x)) return (y == null || Number.isNaN(y)) ? 0 : 1;
    if (y == null || Number.isNaN(y)) return -1;
    return sgn * (numeric ? x - y : String(x).localeCompare(String(y)));
  });
}

export class RunList {
  constructor(root, { onWatch, onCompareChange, onDelete, onCompareMany, onDeleteMany }) {
    Object.assign(this, { root, onWatch, onCompareChange, onDelete, onCompareMany, onDeleteMany });
    this.selected = new Set();
    this.sortKey = null;
    this.sortDir = "desc";
    this.query = "";
    this.tbody = h("tbody");
    this.empty = h("p", { class: "muted small" }, "No runs yet: pick a preset and press Start.");
    this.search = h("input", { type: "search", id: "run-search", placeholder: "name, preset, status…",
      "aria-label": "Search runs", oninput: () => { this.query = this.search.value.trim(); this.rerender(); } });
    this.count = h("span", { class: "small muted", "aria-live": "polite" });
    this.compareBtn = h("button", { type: "button", disabled: true, onclick: () => this.onCompareMany([...this.selected]) }, "Compare selected");
    this.deleteBtn = h("button", { type: "button", class: "danger", disabled: true,
      onclick: () => this.onDeleteMany([...this.selected].map((id) => this.rows.get(id)).filter(Boolean).map((row) => row.run)) }, "Delete selected");
    this.selectAll = h("input", { type: "checkbox", "aria-label": "Select every run shown",
      onchange: () => { for (const r of this.shown || []) { if (this.selectAll.checked) this.selected.add(r.id); else this.selected.delete(r.id); } this.rerender(); } });
    this.heads = {};
    const th = (key, cls) => {
      const btn = h("button", { type: "button", class: "sort", title: `Sort by ${COLUMNS[key][0]}`,
        onclick: () => this.sortBy(key) }, h("span", { class: "sr-only" }, "Sort by "), COLUMNS[key][0],
        h("span", { class: "arrow", "aria-hidden": "true" }));
      this.heads[key] = h("th", { scope: "col", class: cls }, btn);
      return this.heads[key];
    };
    this.table = h("table", { class: "grid-table runs" },
      h("caption", { class: "sr-only" }, "Runs"),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, this.selectAll), h("th", { scope: "col" }, "Compare"), th("name"), th("status"),
        th("preset"), th("dataset"), th("optimizer"), th("lr", "num"), th("batch", "num"),
        th("step", "num"), th("loss", "num"), th("acc", "num"), th("time", "num"), th("created"), th("where"),
        h("th", { scope: "col" }, "Actions"))),
      this.tbody);
    clear(root).append(this.empty,
      h("div", { class: "run-tools" }, this.search, this.count, this.compareBtn, this.deleteBtn),
      h("div", { class: "table-wrap" }, this.table));
  }

  sortBy(key) {
    if (this.sortKey === key) {
      if (this.sortDir === "desc") this.sortDir = "asc"; else { this.sortKey = null; this.sortDir = "desc"; }
    } else { this.sortKey = key; this.sortDir = key === "name" ? "asc" : "desc"; }
    for (const [k, cell] of Object.entries(this.heads)) {
      const arrow = cell.querySelector(".arrow");
      if (k === this.sortKey) {
        cell.setAttribute("aria-sort", this.sortDir === "asc" ? "ascending" : "descending");
        arrow.textContent = this.sortDir === "asc" ? " ▲" : " ▼";
      } else { cell.removeAttribute("aria-sort"); arrow.textContent = ""; }
    }
    this.rerender();
  }

  rerender() {
    if (this.last) this.render(...this.last);
  }

  /** Rows are kept per run and updated in place (twice a second while runs train), so the
   *  keyboard focus on a row's button survives the updates. */
  render(all, watchedId, compareIds) {
    this.last = [all, watchedId, compareIds];
    for (const id of [...this.selected]) if (!all.some((r) => r.id === id)) this.selected.delete(id);
    const runs = sortRuns(all.filter((r) => matches(r, this.query)), this.sortKey, this.sortDir);
    this.shown = runs;
    this.empty.hidden = all.length > 0;
    this.table.hidden = all.length === 0;
    this.count.textContent = this.query ? `${runs.length} of ${all.length} runs` : `${all.length} run${all.length === 1 ? "" : "s"}`;
    const nSel = this.selected.size;
    this.compareBtn.disabled = nSel < 1;
    this.deleteBtn.disabled = nSel < 1;
    this.deleteBtn.textContent = nSel ? `Delete selected (${nSel})` : "Delete selected";
    this.selectAll.checked = runs.length > 0 && runs.every((r) => this.selected.has(r.id));
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
    row.sel = h("input", { type: "checkbox", onchange: () => {
      if (row.sel.checked) this.selected.add(row.run.id); else this.selected.delete(row.run.id);
      this.rerender();
    } });
    row.box = h("input", { type: "checkbox", onchange: () => this.onCompareChange(row.run.id, row.box.checked) });
    row.preset = h("td", { class: "small" });
    row.dataset = h("td", { class: "small" });
    row.optimizer = h("td", { class: "small" });
    row.lr = h("td", { class: "num" });
    row.batch = h("td", { class: "num" });
    row.created = h("td", { class: "small" });
    row.where = h("td", { class: "small" });
    row.name = h("button", { type: "button", class: "link", onclick: () => this.onWatch(row.run.id) });
    row.status = h("td");
    row.step = h("td", { class: "num step" });
    row.loss = h("td", { class: "num" });
    row.acc = h("td", { class: "num" });
    row.time = h("td", { class: "num" });
    row.actions = h("td", { class: "actions" });
    row.lineage = h("div", { class: "small muted lineage" });
    row.tags = h("div", { class: "tags small" });
    row.nameCell = h("td", {}, row.name, row.tags, h("div", { class: "small muted mono" }, r.id), row.lineage);
    row.tr = h("tr", { dataset: { runId: r.id } },
      h("td", {}, row.sel), h("td", {}, row.box), row.nameCell,
      row.status, row.preset, row.dataset, row.optimizer, row.lr, row.batch,
      row.step, row.loss, row.acc, row.time, row.created, row.where, row.actions);
    return row;
  }

  updateRow(row, r, watchedId, compareIds) {
    row.run = r;
    // most rows are finished runs that did not change: skip them (500 rows, twice a second)
    const key = `${r.status}|${r.error}|${r.name}|${r.latest && r.latest.step}|${r.final && r.final.step}|` +
      `${r.best_test_accuracy}|${r.weights_step}|${r.finished_at}|${r._depth}|${r.id === watchedId}|` +
      `${compareIds.includes(r.id)}|${this.selected.has(r.id)}|${r.where}|${(r.tags || []).join("\u0001")}|${r.notes || ""}`;
    if (row.key === key) return;
    row.key = key;
    const text = (el, t) => { if (el.textContent !== t) el.textContent = t; };
    const acc = r.final && r.final.test_accuracy != null ? r.final.test_accuracy : r.best_test_accuracy;
    const step = r.final ? r.final.step : r.latest ? r.latest.step : 0;
    const total = r.summary ? r.summary.total_steps : null;
    const secs = r.final ? r.final.train_seconds : (r.started_at ? ((r.finished_at || Date.now() / 1000) - r.started_at) : null);
    row.tr.classList.toggle("watched", r.id === watchedId);
    const compared = compareIds.includes(r.id);
    if (row.box.checked !== compared) row.box.checked = compared;
    row.box.setAttribute("aria-label", `Compare ${r.name} (${r.id})`);
    const sel = this.selected.has(r.id);
    if (row.sel.checked !== sel) row.sel.checked = sel;
    row.sel.setAttribute("aria-label", `Select ${r.name} (${r.id})`);
    const tr = trainOf(r);
    text(row.preset, r.preset || "custom");
    text(row.dataset, COLUMNS.dataset[1](r) || "–");
    text(row.optimizer, COLUMNS.optimizer[1](r) || "–");
    text(row.where, r.where || "local");
    text(row.lr, tr.lr != null ? fmtNum(tr.lr, 3) : "–");
    text(row.batch, tr.batch_size != null ? String(tr.batch_size) : "–");
    if (!row.created.textContent) {
      text(row.created, when(r.created_at));
      row.created.title = r.created_at ? new Date(r.created_at * 1000).toLocaleString() : "";
    }
    text(row.name, r.name);
    const tagKey = (r.tags || []).join("\u0001") + "|" + (r.notes ? 1 : 0);
    if (row.tagKey !== tagKey) {
      row.tagKey = tagKey;
      clear(row.tags).append(...(r.tags || []).map((t) => h("span", { class: "tag" }, t)),
        ...(r.notes ? [h("span", { class: "muted", title: r.notes }, " ✎ notes")] : []));
    }
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
