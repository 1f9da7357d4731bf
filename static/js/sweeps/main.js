// The Sweeps page (/sweeps): the list of sweeps, a builder, and one sweep watched live
// (/sweeps#id=s-...). Its state is a fold over the sweep's stream (state.js).

import { api, ApiError, token, withToken } from "../api.js";
import { RunStream } from "../stream.js";
import { $, h, clear, fmtNum, fmtPct, fmtDuration, fmtInt } from "../ui/dom.js";
import { initialSweepState, withSweepInfo, reduceSweep, objectiveOf, objectiveSpec, ranked, paramPaths, importance } from "./state.js";
import { ParallelCoords, drawScatter, drawCurves } from "./plots.js";
import { SweepBuilder } from "./builder.js";

const DONE = new Set(["finished", "stopped", "failed"]);
const runHref = (runId) => withToken("/") + `#run=${encodeURIComponent(runId)}`;

class SweepsPage {
  constructor() {
    this.listEl = $("#sweep-list");
    this.viewEl = $("#sweep-view");
    this.builder = new SweepBuilder($("#sweep-builder"), { onCreated: (sw) => { this.open(sw.id); this.refreshList(); } });
    window.addEventListener("hashchange", () => this.route());
    this.sort = { key: "number", dir: 1 };
    this.filter = "";
    this.topK = 0;
    this.keep = null;
    this.route();
    this.refreshList();
  }

  route() {
    const id = new URLSearchParams(location.hash.slice(1)).get("id");
    if (id === this.id) return;
    if (this.stream) { this.stream.close(); this.stream = null; }
    this.id = id;
    $("#sweeps-home").hidden = !!id;
    this.viewEl.hidden = !id;
    if (id) this.watch(id);
  }

  open(id) { location.hash = `id=${encodeURIComponent(id)}`; }

  async refreshList() {
    try {
      const { sweeps } = await api.sweeps();
      clear(this.listEl).append(sweeps.length ? h("table", { class: "grid-table" },
        h("thead", {}, h("tr", {}, ["Sweep", "Status", "Method", "Trials", "Best", "Created"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, sweeps.map((s) => h("tr", {},
          h("td", {}, h("a", { href: `#id=${s.id}` }, s.name || s.id), h("div", { class: "small muted mono" }, s.id)),
          h("td", {}, h("span", { class: `badge status-${s.status}` }, s.status)),
          h("td", {}, s.method),
          h("td", { class: "num" }, `${Object.values(s.counts || {}).reduce((a, b) => a + b, 0)} / ${s.budget}`),
          h("td", { class: "num" }, s.best ? fmtMetric(s.objective, s.best.objective) : "–"),
          h("td", { class: "small" }, new Date(s.created_at * 1000).toLocaleString()))))) : h("p", { class: "muted small" }, "No sweeps yet: build one below."));
    } catch (err) { clear(this.listEl).append(h("p", { class: "error-text" }, `Could not list the sweeps: ${err.message}`)); }
  }

  async watch(id) {
    // the sweep presets' published numbers (the student report's tables), once
    if (!this.references) {
      this.references = [];
      api.sweepPresets().then((r) => { this.references = r.presets.flatMap((p) => (p.references || []).map((x) => ({ ...x, preset: p.name, source: p.reference }))); this.request(); }).catch(() => {});
    }
    this.state = initialSweepState(id);
    this.keep = null;
    this.buildView();
    try { withSweepInfo(this.state, await api.sweep(id)); }
    catch (err) {
      clear(this.viewEl).append(h("p", { class: "error-text" }, err instanceof ApiError && err.status === 404 ? `Sweep ${id} does not exist.` : err.message),
        h("p", {}, h("a", { href: "#" }, "All sweeps")));
      return;
    }
    this.stream = new RunStream(id, {
      base: "/ws/sweeps/",
      lastSeq: () => this.state.lastSeq,
      onEvent: (ev) => {
        reduceSweep(this.state, ev);
        if (ev.type === "trial_finished" || ev.type === "sweep_finished") this.refreshInfo();
        if (ev.type === "sweep_finished") this.refreshList();     // its status and best
        this.request();
      },
      onConn: (c) => { this.conn.textContent = c.state === "live" ? "live" : c.state === "done" ? "" : c.state; },
      isDone: () => DONE.has(this.state.status),
    });
    this.request();
  }

  async refreshInfo() {
    // the trials' final fields (where, objective) and the counts come with the Sweep object
    clearTimeout(this.infoTimer);
    this.infoTimer = setTimeout(async () => {
      try { withSweepInfo(this.state, await api.sweep(this.state.id)); this.request(); } catch { /* the stream goes on */ }
    }, 200);
  }

  request() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  buildView() {
    const v = clear(this.viewEl);
    this.title = h("h2", { id: "sweep-title" }, "Sweep");
    this.statusEl = h("span", { class: "badge", role: "status", "aria-label": "Sweep status" });
    this.conn = h("span", { class: "small muted" });
    this.summary = h("p", { class: "small" });
    this.bestEl = h("p", { class: "small best" });
    const extendN = h("input", { type: "number", min: "1", max: "1000", value: "4", "aria-label": "Trials to add", class: "narrow" });
    this.buttons = {
      stop: h("button", { type: "button", onclick: () => this.command("stop") }, "Stop"),
      extend: h("button", { type: "button", onclick: () => this.command("extend", { trials: +extendN.value }) }, "Add trials"),
      resume: h("button", { type: "button", onclick: () => this.command("resume") }, "Re-queue interrupted"),
      del: h("button", { type: "button", class: "danger", onclick: () => this.remove() }, "Delete sweep"),
    };
    this.notice = h("p", { class: "notice", role: "alert", hidden: true });
    this.stateFilter = h("select", { "aria-label": "Show trials", onchange: () => { this.filter = this.stateFilter.value; this.request(); } },
      ["", "completed", "running", "queued", "pruned", "failed", "diverged", "stopped", "interrupted"].map((s) => h("option", { value: s }, s || "every state")));
    this.table = h("table", { class: "grid-table trials" });
    this.pc = h("div", { class: "pc-wrap" });
    this.scatters = h("div", { class: "scatters" });
    this.curves = h("canvas", { class: "curves", role: "img" });
    this.topKSel = h("select", { "aria-label": "Curves shown", onchange: () => { this.topK = +this.topKSel.value; this.request(); } },
      [["0", "every trial"], ["3", "best 3"], ["5", "best 5"], ["10", "best 10"]].map(([v, t]) => h("option", { value: v }, t)));
    this.importanceEl = h("div", { class: "importance" });
    this.reportEl = h("div", { class: "table-wrap" });
    this.reportCard = h("section", { class: "card", "aria-labelledby": "t-report", hidden: true },
      h("h3", { id: "t-report" }, "Against the published numbers"), this.reportEl);
    v.append(
      h("p", {}, h("a", { href: "#" }, "← All sweeps")),
      h("div", { class: "sweep-head" }, this.title, this.statusEl, this.conn),
      this.summary, this.bestEl,
      h("div", { class: "buttons" }, this.buttons.stop, extendN, this.buttons.extend, this.buttons.resume, this.buttons.del),
      this.notice,
      this.reportCard,
      h("section", { class: "card", "aria-labelledby": "t-trials" }, h("h3", { id: "t-trials" }, "Trials"),
        h("div", { class: "run-tools" }, this.stateFilter, h("span", { class: "small muted", id: "brush-note" })),
        h("div", { class: "table-wrap" }, this.table)),
      h("section", { class: "card", "aria-labelledby": "t-pc" }, h("h3", { id: "t-pc" }, "Parallel coordinates"), this.pc),
      h("section", { class: "card", "aria-labelledby": "t-obj" }, h("h3", { id: "t-obj" }, "Objective against each parameter"), this.scatters),
      h("section", { class: "card", "aria-labelledby": "t-curves" }, h("h3", { id: "t-curves" }, "Loss curves"),
        h("div", { class: "run-tools" }, this.topKSel, h("span", { class: "small muted" }, "coloured by the objective (yellow best); pruned trials faded; log scale")), this.curves),
      h("section", { class: "card", "aria-labelledby": "t-imp" }, h("h3", { id: "t-imp" }, "Parameter importance"), this.importanceEl));
    this.pcoords = new ParallelCoords(this.pc, { onBrush: (sel) => { this.keep = Object.keys(this.pcoords.brushes).length ? sel : null; this.request(); } });
  }

  async command(what, body) {
    try { withSweepInfo(this.state, await api.sweepCommand(this.state.id, what, body)); this.notice.hidden = true; }
    catch (err) { this.notice.textContent = `Could not ${what} the sweep: ${err.message}`; this.notice.hidden = false; }
    if ((what === "extend" || what === "resume") && this.stream && !this.stream.ws) {
      this.stream.close();
      this.stream = new RunStream(this.state.id, { base: "/ws/sweeps/", lastSeq: () => this.state.lastSeq,
        onEvent: (ev) => { reduceSweep(this.state, ev); if (ev.type === "trial_finished") this.refreshInfo(); this.request(); },
        onConn: (c) => { this.conn.textContent = c.state === "live" ? "live" : ""; }, isDone: () => DONE.has(this.state.status) });
    }
    this.request();
  }

  async remove() {
    if (!confirm(`Delete the sweep and every one of its trial runs?`)) return;
    try { await api.deleteSweep(this.state.id); location.hash = ""; this.refreshList(); }
    catch (err) { this.notice.textContent = `Could not delete: ${err.message}`; this.notice.hidden = false; }
  }

  draw() {
    const st = this.state;
    if (!st) return;
    const sw = st.sweep || {};
    this.title.textContent = sw.name || st.id;
    this.statusEl.textContent = st.status || "";
    this.statusEl.className = `badge status-${st.status}`;
    const trials = [...st.trials.values()];
    const counts = {};
    for (const t of trials) counts[t.status] = (counts[t.status] || 0) + 1;
    const obj = objectiveSpec(st);
    this.summary.textContent = `${sw.method || ""} · ${trials.length} of ${st.budget ?? "?"} trials · ` +
      Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(", ") + ` · objective: ${obj.direction} ${obj.metric}` +
      (st.finished ? ` · ${fmtDuration(st.finished.wall_seconds)} in all` : "");
    const best = ranked(st)[0];
    this.bestEl.textContent = best ? `Best so far: trial ${best.number}, ${obj.metric} ${fmtMetric(obj, objectiveOf(st, best))} with ${paramText(best.params)}` : "No finished trial yet.";
    const done = DONE.has(st.status);
    this.buttons.stop.disabled = done || st.status === "stopping";
    this.buttons.resume.disabled = !trials.some((t) => t.status === "interrupted" && t.requeued_as == null);
    this.drawTable(st, best);
    this.drawReport(st, sw);
    this.pcoords.update(st);
    const width = Math.max(280, this.curves.parentElement.clientWidth - 32);
    const paths = paramPaths(st);
    if (this.scatters.children.length !== paths.length) clear(this.scatters).append(...paths.map((p) => h("canvas", { class: "scatter", role: "img", dataset: { path: p } })));
    [...this.scatters.children].forEach((c) => drawScatter(c, st, c.dataset.path, Math.max(260, Math.min(420, width / Math.min(paths.length, 3) - 12))));
    drawCurves(this.curves, st, width, this.topK, this.keep);
    const imp = importance(st);
    clear(this.importanceEl).append(imp
      ? h("div", {}, h("p", { class: "small muted" }, "How strongly each parameter's value orders the objective among the completed trials: |Spearman rank correlation| (1: the objective rises or falls with it; 0: no monotone relation). Not a causal measure; interactions are not seen."),
        h("table", { class: "grid-table" }, h("tbody", {}, imp.map((r) => h("tr", {}, h("th", { scope: "row" }, r.path),
          h("td", { class: "num" }, r.rho == null ? "–" : fmtNum(Math.abs(r.rho), 2)),
          h("td", {}, h("span", { class: "bar", style: { width: `${Math.round(100 * Math.abs(r.rho || 0))}px` } })))))))
      : h("p", { class: "small muted" }, `Shown once 5 trials have completed (${ranked(st).length} so far).`));
  }

  /** A sweep of a preset with published numbers (the student report's four sub-sweeps, by
   *  their names) gets a table: each value's loss, accuracy and time, ours beside theirs. */
  drawReport(st, sw) {
    const refs = (this.references || []).filter((r) => r.sweep === sw.name);
    this.reportCard.hidden = !refs.length;
    if (!refs.length) return;
    const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
    const key = refs.map((r) => r.sweep).join() + [...st.trials.values()].map((t) => `${t.number}:${t.status}:${t.test_accuracy}`).join();
    if (key === this.reportKey) return;
    this.reportKey = key;
    const rows = refs.map((r) => {
      const [path, value] = Object.entries(r.params)[0];
      const t = [...st.trials.values()].find((x) => x.status === "completed" && same(x.params[path], value));
      return h("tr", {}, h("th", { scope: "row" }, `${path} = ${fmtParam(value)}`),
        h("td", { class: "num" }, t && t.final_loss != null ? fmtNum(t.final_loss, 3) : "–"), h("td", { class: "num muted" }, fmtNum(r.loss, 3)),
        h("td", { class: "num" }, t && t.test_accuracy != null ? fmtPct(t.test_accuracy, 1) : "–"), h("td", { class: "num muted" }, fmtPct(r.test_accuracy, 1)),
        h("td", { class: "num" }, t && t.train_seconds != null ? fmtDuration(t.train_seconds) : "–"), h("td", { class: "num muted" }, fmtDuration(r.seconds)));
    });
    clear(this.reportEl).append(
      h("p", { class: "small muted" }, `${refs[0].source}. Ours: this sweep's completed trials on this machine; theirs in grey.`),
      h("table", { class: "grid-table report" },
        h("thead", {}, h("tr", {}, ["Value", "Loss (ours)", "Loss (report)", "Accuracy (ours)", "Accuracy (report)", "Time (ours)", "Time (report)"].map((x) => h("th", { scope: "col" }, x)))),
        h("tbody", {}, rows)));
  }

  drawTable(st, best) {
    const paths = paramPaths(st);
    const obj = objectiveSpec(st);
    const cols = [["number", "#"], ["status", "State"], ["where", "Where"], ...paths.map((p) => [`p:${p}`, p]),
      ["objective", obj.metric], ["final_loss", "Final loss"], ["train_seconds", "Time"], ["pruned", "Why pruned"]];
    const get = (t, key) => key === "objective" ? objectiveOf(st, t) : key.startsWith("p:") ? t.params[key.slice(2)] : key === "pruned" ? (t.pruned_reason && t.pruned_reason.message) : t[key];
    let rows = [...st.trials.values()];
    if (this.filter) rows = rows.filter((t) => t.status === this.filter);
    if (this.keep) rows = rows.filter((t) => this.keep.has(t.number));
    const { key, dir } = this.sort;
    rows.sort((a, b) => {
      const x = get(a, key), y = get(b, key);
      if (x == null) return y == null ? 0 : 1;
      if (y == null) return -1;
      return dir * (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y)));
    });
    if (best) rows = [best, ...rows.filter((t) => t !== best)].filter((t) => t === best ? (!this.keep || this.keep.has(t.number)) && (!this.filter || t.status === this.filter) : true);
    $("#brush-note").textContent = this.keep ? `${rows.length} trials inside the brushed ranges` : "";
    const head = h("tr", {}, cols.map(([k, label]) => h("th", { scope: "col", "aria-sort": this.sort.key === k ? (dir > 0 ? "ascending" : "descending") : null },
      h("button", { type: "button", class: "sort", onclick: () => { this.sort = { key: k, dir: this.sort.key === k ? -this.sort.dir : (k === "objective" && obj.direction !== "minimize" ? -1 : 1) }; this.request(); } }, h("span", { class: "sr-only" }, "Sort by "), label))));
    const spec = st.sweep && (st.sweep.sweep || st.sweep.spec);
    const fromBase = !!(spec && spec.start_from_base);     // trial 1 ran the base design's values
    const body = rows.map((t) => h("tr", { class: t === best ? "best" : "", dataset: { trial: String(t.number) } },
      h("td", { class: "num" }, t.run_id ? h("a", { href: runHref(t.run_id), "aria-label": `Open trial ${t.number}'s run` }, String(t.number)) : String(t.number),
        t === best ? h("span", { class: "small" }, " ★ best") : null,
        fromBase && t.number === 1 ? h("span", { class: "small muted", title: "the base design's own values" }, " (base)") : null),
      h("td", {}, h("span", { class: `badge status-${t.status}` }, t.status)),
      h("td", { class: "small" }, t.where || "local"),
      paths.map((p) => h("td", { class: "num" }, fmtParam(t.params[p]))),
      h("td", { class: "num" }, fmtMetric(obj, objectiveOf(st, t))),
      h("td", { class: "num" }, t.final_loss != null ? fmtNum(t.final_loss, 4) : "–"),
      h("td", { class: "num" }, t.train_seconds != null ? fmtDuration(t.train_seconds) : "–"),
      h("td", { class: "small" }, t.pruned_reason ? t.pruned_reason.message : t.reason || "")));
    clear(this.table).append(h("caption", { class: "sr-only" }, "Trials"), h("thead", {}, head), h("tbody", {}, body));
  }
}

function fmtParam(v) {
  if (v == null) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? fmtInt(v) : fmtNum(v, 3);
  return typeof v === "string" ? v : JSON.stringify(v);
}
function paramText(params) { return Object.entries(params || {}).map(([k, v]) => `${k} = ${fmtParam(v)}`).join(", "); }
function fmtMetric(obj, v) {
  if (v == null) return "–";
  return (obj && obj.metric || "").includes("accuracy") ? fmtPct(v) : fmtNum(v, 4);
}

window.__bplSweeps = new SweepsPage();
document.documentElement.dataset.ready = "true";
void token;
