// The one wiring module: the design form, the API, the sockets and the components.
// Events are folded into one state per run (reducer.js); a frame loop (frame.js) asks every
// visible component to draw from state, at most once per animation frame.

import { api, ApiError, token } from "./api.js";
import { decodeArray } from "./codec.js";
import { initialRunState, reduceRun, withRunInfo, isTerminal } from "./reducer.js";
import { RunStream, RunsFeed } from "./stream.js";
import { setSpec } from "./spec.js";
import { FrameLoop } from "./frame.js";
import { loadPrefs, savePref } from "./prefs.js";
import { SampleCache } from "./samples.js";
import { $, h, debounce, fmtInt, shapeStr } from "./ui/dom.js";
import { RunChart } from "./ui/charts.js";
import { KernelGrid } from "./ui/kernels.js";
import { FeatureMaps, drawFeatureMaps, asOneProbe } from "./ui/featuremaps.js";
import { NormsTable } from "./ui/norms.js";
import { ConfusionMatrix, MisclassifiedGallery } from "./ui/evaluation.js";
import { DrawPad, ProbabilityBars } from "./ui/drawpad.js";
import { LayerEditor } from "./ui/editor.js";
import { HparamsForm } from "./ui/hparams.js";
import { GradCheck } from "./ui/gradcheck.js";
import { RunList } from "./ui/runlist.js";
import { ComparePanel } from "./ui/compare.js";
import { RunBar, Banner, WreckBanner, retryLr } from "./ui/runbar.js";
import { ForkDialog, lineagePrefix, nearestStep } from "./ui/fork.js";
import { layerText, scheduleText, lossTitle } from "./ui/compare.js";
import { TimeLapse } from "./ui/timelapse.js";
import { LayerView } from "./ui/layers.js";
import { PerClassChart } from "./ui/perclass.js";
import { BsdePanel, BsdeForm, IMAGE_ONLY, isBsde } from "./ui/bsde.js";
import { metricsCSV, metricsJSON, metricsFilename, download } from "./ui/export.js";

const clone = (x) => (x == null ? x : JSON.parse(JSON.stringify(x)));
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

class App {
  constructor() {
    this.presets = [];
    this.datasets = [];
    this.runs = new Map();       // id -> Run (from GET /api/runs and WS /ws/runs)
    this.states = new Map();     // id -> folded state
    this.streams = new Map();    // id -> RunStream (watched and compared runs only)
    this.conn = new Map();       // id -> connection text
    this.watched = null;
    this.compare = [];
    this.prefs = loadPrefs();
    // chart options, shared by the run charts and the compare charts (zoom: x-axis units)
    this.view = { smoothing: 0.95, xAxis: "step", ignoreOutliers: false, zoom: null, compareZoom: null };
    this.design = { cfg: { model: [], train: {}, dataset: {} }, preset: null, valid: false, checked: false };
    this.runListDirty = true;
    this.samples = new SampleCache();
    this.frame = new FrameLoop(() => this.draw());
    const req = () => this.frame.request();

    // charts and views
    // the run charts zoom together: a drag on one zooms all, Reset zoom on one resets all
    const onZoom = (z) => { this.view.zoom = z; req(); };
    const onLog = (kind) => (on) => savePref(`log.${kind}`, on);
    this.charts = [
      new RunChart($("#chart-loss"), "loss", { height: 260, requestDraw: req, onPick: (st) => this.pickFork(st), onZoom, onLog: onLog("loss") }),
      new RunChart($("#chart-accuracy"), "accuracy", { height: 260, requestDraw: req, onPick: (st) => this.pickFork(st), onZoom }),
      new RunChart($("#chart-lr"), "lr", { height: 160, requestDraw: req, onZoom, onLog: onLog("lr") }),
    ];
    for (const c of this.charts) if (c.logBox && this.prefs[`log.${c.kindName}`]) c.setLog(true);
    this.kernels = new KernelGrid($("#kernels"));
    this.fmaps = new FeatureMaps($("#feature-maps"), this.samples);
    this.fmaps.onSelect = req;
    this.norms = new NormsTable($("#norms"));
    this.confusion = new ConfusionMatrix($("#confusion"));
    this.gallery = new MisclassifiedGallery($("#misclassified"), this.samples);
    this.timelapse = new TimeLapse($("#timelapse"), { requestDraw: req });
    this.layerView = new LayerView($("#layer-view"));
    this.perclass = new PerClassChart($("#perclass"));
    this.compareView = new ComparePanel($("#compare"), { requestDraw: req, onZoom: (z) => { this.view.compareZoom = z; req(); } });
    this.runList = new RunList($("#run-list"), {
      onWatch: (id) => this.watch(id),
      onCompareChange: (id, on) => this.setCompare(id, on),
      onDelete: (run) => this.deleteRun(run),
      onCompareMany: (ids) => this.compareMany(ids),
      onDeleteMany: (runs) => this.deleteMany(runs),
    });
    this.runBar = new RunBar({
      start: $("#btn-start"), pause: $("#btn-pause"), resume: $("#btn-resume"), stop: $("#btn-stop"),
      step: $("#btn-step"), cont: $("#btn-continue"), tempo: $("#tempo"),
      statusText: $("#run-status"), runName: $("#run-name"), progress: $("#run-progress"),
      progressText: $("#run-progress-text"), conn: $("#conn"), startWhy: $("#start-why"),
    }, { onStart: () => this.start(), onCommand: (c) => this.command(c), onTempo: (v) => this.setTempo(v) });
    this.banner = new Banner($("#banner"), { onRetry: (s) => this.retry(s), onForkBack: (s) => this.forkBack(s) });
    // a server started with --dask offers the cluster for single runs too
    api.health().then((hl) => { if (hl.dask) $("#where-label").hidden = false; }).catch(() => {});
    this.forkDialog = new ForkDialog(document.body, { onForked: (child) => this.forked(child) });
    this.view.lineage = (field) => this.lineage(field);
    this.wreckBanner = new WreckBanner($("#wreck"), { onUndo: (s, previous) => this.undoLive(s, previous) });
    // a Deep BSDE run's cards, and its design form (beside the layer editor, which edits the subnet)
    const bsdeBody = h("div", { class: "bsde-panel" });
    this.bsdeGradEl = h("div", { class: "bsde-gradcheck" });
    this.bsdeCard = h("section", { class: "card span-all bsde-card", id: "bsde-card", "aria-labelledby": "t-bsde", hidden: true },
      h("h2", { id: "t-bsde" }, "Deep BSDE"), bsdeBody, h("h3", {}, "Gradient check of the global network"), this.bsdeGradEl);
    $(".timelapse-card").before(this.bsdeCard);
    this.bsdePanel = new BsdePanel(bsdeBody);
    this.bsdeGrad = new GradCheck(this.bsdeGradEl, { getBody: () => ({ run_id: this.watched }) });
    // the watched run's notes and tags (the person's own; POST /api/runs/{id}/notes)
    this.notesText = h("textarea", { id: "run-notes", rows: 3, maxlength: 5000, placeholder: "What you tried, what you saw" });
    this.tagsInput = h("input", { id: "run-tags", type: "text", placeholder: "baseline, lr-sweep", "aria-describedby": "run-tags-hint" });
    this.notesMsg = h("span", { class: "small muted", "aria-live": "polite" });
    this.notesBox = h("details", { class: "notes", id: "notes-box", hidden: true },
      h("summary", {}, "Notes and tags"),
      h("div", { class: "field" }, h("label", { for: "run-notes" }, "Run notes"), this.notesText),
      h("div", { class: "field" }, h("label", { for: "run-tags" }, "Tags"), this.tagsInput,
        h("span", { class: "hint small", id: "run-tags-hint" }, "comma-separated; search the run list with #tag")),
      h("button", { type: "button", onclick: () => this.saveNotes() }, "Save notes"), this.notesMsg);
    $("#run-info").after(this.notesBox);
    this.bsdeFormEl = h("div", { id: "bsde-fields", hidden: true });
    $("#hparams").before(this.bsdeFormEl);
    this.bsdeForm = new BsdeForm(this.bsdeFormEl, { onChange: () => this.designChanged() });

    // chart options: smoothing, x axis, ignore outliers (remembered across reloads)
    const sm = $("#smoothing"), smOut = $("#smoothing-value");
    if (typeof this.prefs.smoothing === "number") sm.value = String(this.prefs.smoothing);
    sm.addEventListener("input", () => { this.view.smoothing = +sm.value; smOut.textContent = (+sm.value).toFixed(3); savePref("smoothing", +sm.value); req(); });
    this.view.smoothing = +sm.value;
    smOut.textContent = (+sm.value).toFixed(3);
    const xSel = $("#x-axis");
    if ([...xSel.options].some((o) => o.value === this.prefs.xAxis)) xSel.value = this.prefs.xAxis;
    this.view.xAxis = xSel.value;
    xSel.addEventListener("change", () => {
      this.view.xAxis = xSel.value; this.view.zoom = null; this.view.compareZoom = null;
      savePref("xAxis", xSel.value); req();
    });
    const outl = $("#ignore-outliers");
    outl.checked = !!this.prefs.ignoreOutliers;
    this.view.ignoreOutliers = outl.checked;
    outl.addEventListener("change", () => { this.view.ignoreOutliers = outl.checked; savePref("ignoreOutliers", outl.checked); req(); });

    // live hyperparameters
    $("#live-form").addEventListener("submit", (e) => { e.preventDefault(); this.applyLive(); });

    // draw a digit
    this.probs = new ProbabilityBars($("#predict-probs"));
    this.predictMaps = $("#predict-maps");
    this.predictMapsCaption = $("#predict-maps-caption");
    this.predictSeq = 0;
    this.drawpad = new DrawPad($("#drawpad"), { onImage: (rows) => { this.predict(rows); this.layerView.setDrawing(rows); req(); } });

    // design
    this.editor = new LayerEditor($("#layers"), { onChange: () => { this.hparams.syncDropout(); this.designChanged(); } });
    this.hparams = new HparamsForm($("#hparams"), $("#dataset-fields"), {
      onChange: () => this.designChanged(), getModel: () => this.design.cfg.model, samples: this.samples,
    });
    this.gradcheck = new GradCheck($("#gradcheck"), { getBody: () => ({ model: this.design.cfg.model, dataset: this.design.cfg.dataset }) });
    $("#preset").addEventListener("change", (e) => this.loadPreset(e.target.value));
    $("#btn-copy-design").addEventListener("click", () => this.copyDesign());
    $("#run-name-input").addEventListener("input", () => this.saveDesign());
    $("#btn-metrics-csv").addEventListener("click", () => this.downloadMetrics("csv"));
    $("#btn-metrics-json").addEventListener("click", () => this.downloadMetrics("json"));
    this.validateSoon = debounce(() => this.validate(), 200);

    // the design drawer (narrow screens, app.css)
    $("#btn-design").addEventListener("click", () => this.setDrawer(!document.body.classList.contains("design-open")));
    $("#btn-design-close").addEventListener("click", () => this.setDrawer(false));
    $("#design-backdrop").addEventListener("click", () => this.setDrawer(false));
    document.addEventListener("keydown", (e) => { if (e.key === "Escape" && document.body.classList.contains("design-open")) this.setDrawer(false); });

    window.addEventListener("hashchange", () => this.readHash());
    document.addEventListener("visibilitychange", () => { if (!document.hidden) req(); });
  }

  // ------------------------------------------------------------------ start-up

  async init() {
    if (document.body.dataset.tokenRequired === "true" && !token) {
      this.notice("This server needs its access token: open the address that `backprop-lab serve` printed (it ends with ?token=…).");
    }
    performance.mark("bpl-init");
    const [spec, presets, datasets, runs] = await Promise.allSettled([api.spec(), api.presets(), api.datasets(), api.runs()]);
    performance.mark("bpl-data");
    if (spec.status === "fulfilled") setSpec(spec.value);   // before the design form is drawn
    else this.notice("Could not load the layer fields: " + spec.reason.message);
    if (presets.status === "fulfilled") this.presets = presets.value.presets;
    else this.notice("Could not load the presets: " + presets.reason.message);
    this.bsdePanel.setPresets(this.presets);
    if (datasets.status === "fulfilled") this.datasets = datasets.value.datasets;
    if (runs.status === "fulfilled") for (const r of runs.value.runs) this.runs.set(r.id, r);
    this.hparams.setDatasets(this.datasets);
    const sel = $("#preset");
    sel.replaceChildren(...this.presets.map((p) => h("option", { value: p.name }, `${p.title} (${p.name})`)), h("option", { value: "" }, "Custom (start from an empty model)"));
    // the design as the person left it (not yet run), else the mlp preset
    const saved = this.prefs.design;
    if (saved && saved.cfg && typeof saved.cfg === "object" && (Array.isArray(saved.cfg.model) || isBsde(saved.cfg))
        && (saved.preset === "" || this.presets.some((p) => p.name === saved.preset))) {
      sel.value = saved.preset;
      this.loadPreset(saved.preset, clone(saved.cfg));
      $("#run-name-input").value = typeof saved.name === "string" ? saved.name : "";
      this.saveDesign();
    } else {
      const initial = this.presets.find((p) => p.name === "mlp") ? "mlp" : this.presets.length ? this.presets[0].name : "";
      sel.value = initial;
      this.loadPreset(initial);
    }
    performance.mark("bpl-form");
    this.feed = new RunsFeed({
      onMessage: (m) => this.onRunsMessage(m),
      onReconnect: () => this.refreshRuns(),
      onConn: () => {},
    });
    this.readHash();
    if (!this.watched) {
      const newest = [...this.runs.values()].sort((a, b) => b.created_at - a.created_at)[0];
      if (newest) this.watch(newest.id, { replace: true });
    }
    this.runListDirty = true;
    this.frame.request();
  }

  /** Open or close the design drawer (only a drawer below 1000 px; wide, the panel stays put). */
  setDrawer(open) {
    document.body.classList.toggle("design-open", open);
    $("#btn-design").setAttribute("aria-expanded", String(open));
    $("#design-backdrop").hidden = !open;
    if (open) $("#preset").focus();
    else if (document.activeElement && $("#design").contains(document.activeElement)) $("#btn-design").focus();
  }

  notice(msg) { const el = $("#notice"); el.textContent = msg; el.hidden = !msg; }

  async refreshRuns() {
    try {
      const res = await api.runs();
      const ids = new Set(res.runs.map((r) => r.id));
      for (const id of [...this.runs.keys()]) if (!ids.has(id)) this.forget(id);
      for (const r of res.runs) this.onRunInfo(r);
      this.runListDirty = true; this.frame.request();
    } catch { /* the feed will try again */ }
  }

  // ------------------------------------------------------------------ URL state

  readHash() {
    const q = new URLSearchParams(location.hash.slice(1));
    const run = q.get("run");
    const cmp = (q.get("compare") || "").split(",").filter(Boolean);
    const dropped = this.compare.filter((id) => !cmp.includes(id));
    this.compare = cmp;
    for (const id of dropped) this.releaseStream(id);
    for (const id of cmp) this.ensureStream(id);
    if (run && run !== this.watched) this.watch(run, { fromHash: true });
    this.runListDirty = true;
    this.frame.request();
  }

  writeHash(replace = false) {
    const q = new URLSearchParams();
    if (this.watched) q.set("run", this.watched);
    if (this.compare.length) q.set("compare", this.compare.join(","));
    const url = `${location.pathname}${location.search}#${q.toString()}`;
    if (url !== location.pathname + location.search + location.hash) history[replace ? "replaceState" : "pushState"](null, "", url);
  }

  // ------------------------------------------------------------------ runs and streams

  state(id) {
    let s = this.states.get(id);
    if (!s) { s = initialRunState(id, this.runs.get(id) || null); this.states.set(id, s); }
    return s;
  }

  ensureStream(id) {
    if (this.streams.has(id)) return;
    const st = this.state(id);
    const stream = new RunStream(id, {
      lastSeq: () => this.state(id).lastSeq,
      onEvent: (ev) => {
        const t0 = performance.now();
        const s = this.state(id);
        reduceRun(s, ev);
        if (ev.type === "run_finished" || ev.type === "status") this.runListDirty = true;
        // only live events count for latency (a replay's are old by design)
        this.frame.event(s.replayedTo != null && ev.seq <= s.replayedTo ? undefined : ev.ts);
        this.frame.metrics.foldMs += performance.now() - t0;
      },
      onConn: (c) => {
        if (c.state === "connecting") {
          const r = this.runs.get(id);
          this.state(id).replayedTo = r ? r.last_seq : null;   // events up to here are history
        }
        this.conn.set(id, c.state === "reconnecting" ? `reconnecting in ${(c.retryIn / 1000).toFixed(1)} s…`
          : c.state === "live" ? "live" : c.state === "connecting" ? "connecting…" : c.state === "done" ? "" : c.state);
        this.frame.request();
      },
      onRefused: () => {
        api.run(id).then((r) => this.onRunInfo(r)).catch((err) => {
          if (err instanceof ApiError && err.status === 404) {
            this.notice(`Run ${id} does not exist (it may have been deleted).`);
            this.forget(id);
            this.runListDirty = true; this.frame.request();
          }
        });
      },
      isDone: (code) => {
        const s = this.state(id), r = this.runs.get(id);
        return !!s.finished || (isTerminal(s.status) && (code === 1000 || !r || r.last_seq <= s.lastSeq));
      },
    });
    this.streams.set(id, stream);
    return st;
  }

  releaseStream(id) {
    if (id === this.watched || this.compare.includes(id)) return;
    const s = this.streams.get(id);
    if (s) { s.close(); this.streams.delete(id); }
  }

  onRunInfo(run) {
    this.runs.set(run.id, run);
    const s = this.states.get(run.id);
    if (s) withRunInfo(s, run);
  }

  onRunsMessage(m) {
    if (!m || !m.run) return;
    if (m.type === "run_deleted") this.forget(m.run.id);
    else this.onRunInfo(m.run);
    this.runListDirty = true;
    this.frame.request();
  }

  forget(id) {
    this.runs.delete(id);
    const st = this.streams.get(id);
    if (st) { st.close(); this.streams.delete(id); }
    this.states.delete(id);
    this.compare = this.compare.filter((c) => c !== id);
    if (this.watched === id) { this.watched = null; this.resetViews(); this.writeHash(true); }
  }

  watch(id, { replace = false, fromHash = false } = {}) {
    const prev = this.watched;
    this.watched = id;
    if (prev && prev !== id) this.releaseStream(prev);
    this.ensureStream(id);
    if (!this.runs.has(id)) api.run(id).then((r) => { this.onRunInfo(r); this.runListDirty = true; this.frame.request(); })
      .catch((err) => { if (err instanceof ApiError && err.status === 404) { this.notice(`Run ${id} does not exist (it may have been deleted).`); this.forget(id); } });
    if (prev !== id) { this.resetViews(); this.probs.clear(); }
    if (!fromHash) this.writeHash(replace);
    this.runListDirty = true;
    this.frame.request();
  }

  resetViews() {
    for (const c of this.charts) c.reset();
    this.kernels.reset(); this.fmaps.reset(); this.norms.reset(); this.confusion.reset(); this.gallery.reset();
    this.timelapse.reset(); this.layerView.reset(); this.perclass.reset();
    this.view.zoom = null;
    this.liveKey = null;
    this.headerKey = null;
  }

  setCompare(id, on) {
    this.compare = on ? [...new Set([...this.compare, id])] : this.compare.filter((c) => c !== id);
    if (on) this.ensureStream(id); else this.releaseStream(id);
    this.writeHash(true);
    this.runListDirty = true;
    this.frame.request();
  }

  compareMany(ids) {
    const keep = new Set(ids);
    for (const id of this.compare) if (!keep.has(id)) this.setCompare(id, false);
    for (const id of ids) if (!this.compare.includes(id)) this.setCompare(id, true);
    const el = document.getElementById("t-compare");
    if (el) el.scrollIntoView({ block: "start" });
  }

  async deleteMany(runs) {
    if (!runs.length || !confirm(`Delete ${runs.length} run${runs.length > 1 ? "s" : ""} with their events and checkpoints?\n${runs.map((r) => `${r.name} (${r.id})`).join("\n")}`)) return;
    const failed = [];
    for (const run of runs) {
      try { await api.deleteRun(run.id); this.forget(run.id); }
      catch (err) { failed.push(`${run.id}: ${err.message}`); }
    }
    if (failed.length) this.notice(`Could not delete ${failed.join("; ")}`);
    this.runListDirty = true;
    this.frame.request();
  }

  async deleteRun(run) {
    if (!confirm(`Delete run “${run.name}” (${run.id}) with its events and checkpoints?`)) return;
    try { await api.deleteRun(run.id); this.forget(run.id); this.runListDirty = true; this.frame.request(); }
    catch (err) { this.notice(`Could not delete ${run.id}: ${err.message}`); }
  }

  // ------------------------------------------------------------------ commands

  async start() {
    if (this.runBar.start.disabled) return;
    const body = this.runBody();
    if ($("#start-paused").checked) body.start_paused = true;
    if (!$("#where-label").hidden && $("#where").value === "dask") body.where = "dask";
    this.runBar.start.disabled = true;
    try {
      const run = await api.createRun(body);
      this.notice("");
      this.onRunInfo(run);
      this.watch(run.id);
    } catch (err) {
      if (err instanceof ApiError && err.status === 422) this.showValidation({ valid: false, errors: err.detail, summary: this.editor.lastResult ? this.editor.lastResult.summary : null });
      this.notice("Could not start the run: " + err.message);
    } finally {
      this.runBar.setStartEnabled(this.design.valid);
    }
  }

  async command(what) {
    const id = this.watched;
    if (!id) return;
    try {
      const run = await api.command(id, what);
      this.onRunInfo(run);
      const s = this.state(id);
      if (what === "continue") {
        // the finished stream was closed by the server: open it again from the last seq
        s.status = run.status; s.error = run.error; s.rev++;
        const old = this.streams.get(id);
        if (old) { old.close(); this.streams.delete(id); }
        this.ensureStream(id);
      }
      // The HTTP answer is newer than anything the stream has said so far.
      if (run.status !== s.status && !(isTerminal(s.status))) { s.status = run.status; s.rev++; }
      this.runListDirty = true;
      this.frame.request();
    } catch (err) {
      this.notice(`Could not ${what} the run: ${err.message}`);
    }
  }

  async setTempo(stepsPerSecond) {
    const id = this.watched;
    if (!id) return;
    try { await api.tempo(id, stepsPerSecond); }
    catch (err) { this.notice(`Could not change the tempo: ${err.message}`); }
  }

  async applyLive() {
    const id = this.watched;
    if (!id) return;
    const body = {};
    for (const [key, sel] of [["lr", "#live-lr"], ["momentum", "#live-momentum"], ["weight_decay", "#live-wd"]]) {
      const el = $(sel);
      if (el.value.trim() === "" || el.closest(".field").style.display === "none") continue;
      const v = Number(el.value);
      const cur = this.state(id).hparams;
      if (!cur || cur[key] !== v) body[key] = v;
    }
    const msg = $("#live-msg");
    if (!Object.keys(body).length) { msg.textContent = "Nothing changed."; return; }
    try {
      await api.patch(id, body);
      msg.textContent = "Applied; the change takes effect at the next step.";
    } catch (err) {
      msg.textContent = err.message;
    }
  }

  // ------------------------------------------------------------------ forks

  /** "Fork from here": the evaluation nearest the clicked step (checkpoints are kept there). */
  pickFork(step) {
    const run = this.watched && this.runs.get(this.watched);
    if (!run) return;
    const ev = this.state(run.id).evals;
    this.forkDialog.open(run, ev.n ? nearestStep(ev.step, step) : step);
  }

  forked(child) {
    this.onRunInfo(child);
    this.runListDirty = true;
    this.watch(child.id);
  }

  /** A diverged run: a fork from its newest checkpoint before the divergence, at lr / 10. */
  async forkBack(state) {
    try {
      const list = (await api.checkpoints(state.runId)).checkpoints.filter((c) => c.step < state.diverged.step);
      if (!list.length) { this.notice("This run kept no checkpoint before it diverged: use Retry (from scratch)."); return; }
      const at = list[list.length - 1].step;
      const base = (state.name || "run").replace(/ \(lr \/ 10\)+$/, "");
      const child = await api.fork(state.runId, { step: at, overrides: { lr: retryLr(state) }, name: `${base} @${at} (lr / 10)`.slice(0, 200) });
      this.forked(child);
    } catch (err) {
      this.notice("Could not fork: " + err.message);
    }
  }

  /** The watched run's ancestors' points before it started (faded on its charts). */
  lineage(field) {
    const empty = { step: [], value: [] };
    let run = this.watched && this.runs.get(this.watched);
    if (!run || !run.parent_id) return empty;
    const chain = [];
    let upTo = run.fork_step;
    for (let depth = 0; run && run.parent_id && depth < 8; depth++) {
      const parent = this.runs.get(run.parent_id);
      if (!parent) break;                       // deleted: nothing to draw before the fork
      this.ensureStream(parent.id);
      chain.unshift({ state: this.state(parent.id), upTo });
      upTo = parent.fork_step;
      run = parent;
    }
    const key = `${field}|${chain.map((c) => `${c.state.runId}:${c.state.lastSeq}:${c.upTo}`).join()}`;
    this.lineageCache ||= new Map();
    let hit = this.lineageCache.get(field);
    if (!hit || hit.key !== key) { hit = { key, value: lineagePrefix(chain, field) }; this.lineageCache.set(field, hit); }
    return hit.value;
  }

  async retry(state) {
    const cfg = clone(state.config);
    if (!cfg) return;
    cfg.train.lr = retryLr(state);        // the lr in effect when it diverged, as the button says
    const base = (state.name || "run").replace(/ \(lr \/ 10\)+$/, "");
    cfg.name = `${base} (lr / 10)`.slice(0, 200);
    try {
      const run = await api.createRun(cfg);
      this.onRunInfo(run);
      this.watch(run.id);
    } catch (err) {
      this.notice("Could not retry: " + err.message);
    }
  }

  /** Undo a wrecking live change: PATCH the values it replaced. */
  async undoLive(state, previous) {
    try {
      await api.patch(state.runId, previous);
      $("#live-msg").textContent = "Undone; the previous values take effect at the next step.";
    } catch (err) {
      this.notice("Could not undo the change: " + err.message);
    }
  }

  async predict(rows) {
    const seq = ++this.predictSeq;
    const id = this.watched;
    if (!rows) { this.probs.clear(); drawFeatureMaps(this.predictMaps, null); this.predictMapsCaption.textContent = ""; return; }
    if (!id) { this.probs.clear("Select or start a run first: the drawing is classified by the watched run."); return; }
    this.probs.caption.textContent = "Classifying…";
    try {
      const res = await api.predict(id, rows);
      if (seq !== this.predictSeq) return;
      const s = this.state(id);
      this.probs.show(res, s.classNames);
      const maps = asOneProbe(decodeArray(res.feature_maps));
      const what = drawFeatureMaps(this.predictMaps, maps, 0, Math.max(120, this.predictMaps.parentElement.clientWidth - 4));
      this.predictMapsCaption.textContent = what ? "Its first-layer feature maps: " + what : "";
    } catch (err) {
      if (seq === this.predictSeq) this.probs.clear("Could not classify: " + err.message);
    }
  }

  // ------------------------------------------------------------------ design

  /** Load the watched run's (normalised) config into the design form, to change and rerun. */
  copyDesign() {
    const s = this.watched && this.state(this.watched);
    if (!s || !s.config) return;
    const run = this.runs.get(s.runId);
    const presetName = run && run.preset ? run.preset : "";
    $("#preset").value = presetName;
    this.loadPreset(presetName, clone(s.config));
    $("#run-name-input").value = "";
    $("#preset").focus();
  }

  /** The watched run's metrics as a CSV or JSON file (ui/export.js). */
  downloadMetrics(ext) {
    const s = this.watched && this.state(this.watched);
    if (!s) return;
    download(metricsFilename(s, ext), ext === "csv" ? metricsCSV(s) : metricsJSON(s), ext === "csv" ? "text/csv" : "application/json");
  }

  loadPreset(name, config = null) {
    const p = this.presets.find((x) => x.name === name);
    if ((p && p.task === "bsde" && !config) || isBsde(config)) return this.loadBsde(p, config);
    this.setDesignTask("image");
    const cfg = config || (p ? clone(p.config) : { model: [{ type: "flatten" }, { type: "dense", units: 10 }], train: { optimizer: "sgd", lr: 0.05, momentum: 0.9, batch_size: 64, epochs: 1 }, dataset: { name: "mnist", train_limit: 5000 } });
    delete cfg.name;
    // a normalised config spells out every default; drop the empty ones so the form stays plain
    for (const part of [cfg.train || {}, cfg.dataset || {}]) for (const k of Object.keys(part)) if (part[k] == null) delete part[k];
    cfg.train = cfg.train || {};
    cfg.dataset = cfg.dataset || {};
    this.design.cfg = cfg;
    this.design.preset = p || null;
    $("#preset-desc").replaceChildren(...(p ? [h("span", {}, p.description + ". "), h("span", { class: "muted" }, `${p.reference}; target ${(p.target * 100).toFixed(1)}% test accuracy.`)] : ["Build a network layer by layer."]));
    $("#run-name-input").placeholder = p ? p.name : "custom";
    this.editor.setModel(cfg.model);
    this.hparams.setConfig(cfg);
    this.designLoaded();
  }

  /** After a preset or a run's config fills the form. */
  designLoaded() {
    // a run name belongs to the design it was typed for: a new preset starts without one
    $("#run-name-input").value = "";
    this.saveDesign();
    // a whole new design: check it now (typing is debounced, a preset need not wait)
    this.validateSoon.cancel();
    this.design.checked = false;
    this.validate();
  }

  /** Show the design form of an image run or of a bsde run. */
  setDesignTask(task) {
    this.design.task = task;
    const bsde = task === "bsde";
    this.bsdeFormEl.hidden = !bsde;
    for (const sel of ["#hparams", "#dataset-fields", "#gradcheck"]) $(sel).hidden = bsde;
    $("#gradcheck").previousElementSibling.hidden = bsde;        // its heading
  }

  /** A bsde preset (or a bsde run's config): the subnet in the layer editor, the equation and
   *  training in the bsde form. */
  loadBsde(p, config) {
    const cfg = clone(config || p.config);
    delete cfg.name;
    if (typeof cfg.subnet === "string" || !cfg.subnet) cfg.subnet = [];
    this.design.cfg = cfg;
    this.design.preset = p || null;
    this.setDesignTask("bsde");
    const t = p && p.target;
    $("#preset-desc").replaceChildren(...(p ? [h("span", {}, p.description + ". "), h("span", { class: "muted" },
      `${p.reference}; target u0 ${t.u0} within ${(t.band * 100).toFixed(1)}% and a validation loss below ${t.valid_loss_below}.`),
      ...(p.remark ? [" ", h("span", { class: "remark" }, p.remark)] : [])] : ["A Deep BSDE run."]));
    $("#run-name-input").placeholder = p ? p.name : "bsde";
    this.editor.setModel(cfg.subnet);
    this.bsdeForm.setConfig(cfg);
    this.designLoaded();
  }

  /** Remember the design form (preset, config, run name) so a reload keeps unsaved edits. */
  saveDesign() {
    savePref("design", { preset: this.design.preset ? this.design.preset.name : "", cfg: this.design.cfg, name: $("#run-name-input").value });
  }

  designChanged() {
    this.saveDesign();
    this.design.checked = false;
    this.validateSoon();
  }

  async validate() {
    const { model, train, dataset } = this.design.cfg;
    if (this.validating) this.validating.abort();
    const ctl = new AbortController();
    this.validating = ctl;
    const c = this.design.cfg;
    const body = this.design.task === "bsde"
      ? { task: "bsde", model: c.subnet, equation: c.equation, y_init_range: c.y_init_range, train: c.train }
      : { model, train, dataset };
    try {
      const res = await api.validate(body, ctl.signal);
      if (ctl.signal.aborted) return;
      this.showValidation(res);
      if (!this.interactiveAt) {
        this.interactiveAt = performance.now();
        performance.mark("bpl-interactive");
      }
    } catch (err) {
      if (err.name === "AbortError") return;
      if (err instanceof ApiError && err.status === 422) this.showValidation({ valid: false, errors: err.detail, summary: null });
      else this.runBar.setStartEnabled(false, "Cannot reach the server to check the model.");
    } finally {
      if (this.validating === ctl) this.validating = null;
    }
  }

  showValidation(res) {
    // every endpoint locates a field the engine's way: ["train", "lr"], ["model", 2, "units"]
    this.design.valid = !!res.valid;
    this.design.checked = true;
    this.editor.showResult(res);
    this.hparams.showErrors(res.errors || []);
    this.bsdeForm.showErrors(this.design.task === "bsde" ? res.errors || [] : []);
    const n = (res.errors || []).length;
    this.runBar.setStartEnabled(res.valid, n ? `Fix ${n === 1 ? "the problem" : `the ${n} problems`} in the design to start.` : "");
    const sum = res.summary;
    $("#design-summary").textContent = res.valid && sum && sum.task === "bsde"
      ? `${fmtInt(sum.subnets)} subnets of ${fmtInt(sum.subnet_params)} parameters · ${fmtInt(sum.params)} parameters in all · ${fmtInt(sum.total_steps)} iterations`
      : res.valid && sum
      ? `${sum.input_shape ? shapeStr(sum.input_shape) : ""} → ${sum.output_shape ? shapeStr(sum.output_shape) : ""} · ${fmtInt(sum.params)} parameters${sum.total_steps ? ` · ${fmtInt(sum.total_steps)} steps` : ""}`
      : n ? `${n} problem${n > 1 ? "s" : ""} to fix` : "";
  }

  /** The POST /api/runs body: the preset form when the design is a preset plus train/dataset
   *  overrides (so the run remembers its preset), otherwise the full config. */
  runBody() {
    const cfg = this.design.cfg, p = this.design.preset;
    const name = $("#run-name-input").value.trim();
    if (this.design.task === "bsde") {
      const pc = p && p.config;
      if (pc && same(cfg.subnet, pc.subnet) && same(cfg.equation, pc.equation) && same(cfg.y_init_range, pc.y_init_range)) {
        const overrides = {};
        for (const [k, v] of Object.entries(cfg.train)) if (!same(v, (pc.train || {})[k])) overrides[k] = v;
        return { preset: p.name, overrides, ...(name ? { name } : {}) };
      }
      return { task: "bsde", equation: cfg.equation, subnet: cfg.subnet, y_init_range: cfg.y_init_range,
               train: cfg.train, name: name || (p ? `${p.name} (edited)` : "bsde") };
    }
    if (p && same(cfg.model, p.config.model)) {
      const pt = p.config.train || {}, pd = p.config.dataset || {};
      const overrides = {};
      let exact = true;
      for (const [k, v] of Object.entries(cfg.train)) if (!same(v, pt[k])) overrides[k] = v;
      for (const k of Object.keys(pt)) if (!(k in cfg.train) && !((k === "epochs" && "iterations" in overrides) || (k === "iterations" && "epochs" in overrides))) exact = false;
      if ((cfg.dataset.name || "mnist") !== (pd.name || "mnist")) overrides.dataset = cfg.dataset.name;
      for (const k of ["train_limit", "test_limit", "path"]) {
        if (same(cfg.dataset[k], pd[k])) continue;
        if (cfg.dataset[k] == null) exact = false; else overrides[k] = cfg.dataset[k];
      }
      for (const v of Object.values(overrides)) if (v === null) exact = false;
      if (exact) return { preset: p.name, overrides, ...(name ? { name } : {}) };
    }
    return { model: cfg.model, train: cfg.train, dataset: cfg.dataset, name: name || (p ? `${p.name} (edited)` : "custom") };
  }

  // ------------------------------------------------------------------ drawing

  draw() {
    const s = this.watched ? this.state(this.watched) : null;
    const conn = this.watched ? this.conn.get(this.watched) || "" : "";
    const t = this.frame.timer();
    this.runBar.update(s, conn);
    this.banner.update(s);
    this.wreckBanner.update(s);
    this.drawHeader(s);
    this.syncNotes(s);
    t("bar");
    const bsde = !!s && isBsde(s.config);
    if (bsde !== this.showingBsde) {
      this.showingBsde = bsde;
      this.bsdeCard.hidden = !bsde;
      for (const id of IMAGE_ONLY) { const el = document.getElementById(id); if (el) el.closest("section").hidden = bsde; }
    }
    if (bsde) {
      this.bsdePanel.update(s, this.runs.get(s.runId)); t("bsde");
      this.charts[0].update(s, this.view);
      if (this.throttle("lr", 200)) this.charts[2].update(s, this.view);
      this.drawCompareAndList();
      return;
    }
    // the draw card names what it classifies: digits, or (Fashion-MNIST, a custom set) inputs
    const digits = !s || !s.config || !s.config.dataset || ["mnist", "digits8"].includes(s.config.dataset.name);
    const drawTitle = digits ? "Draw a digit" : "Draw an input";
    if ($("#t-draw").textContent !== drawTitle) {
      $("#t-draw").textContent = drawTitle;
      this.probs.defaultCaption = digits ? null : "Draw an input to see what the selected run predicts (its classes are listed with their probabilities).";
      if (!this.probs.list.childElementCount) this.probs.clear();
    }
    // the time-lapse: the snapshot cards draw the run as at step k, the charts mark k
    this.timelapse.update(s);
    const at = this.timelapse.view(s);
    this.view.mark = this.timelapse.markStep(s);
    this.charts[0].update(s, this.view); t("loss");
    // batch accuracy moves in steps of 1/batch and is read as a trend: 10 redraws a second are
    // enough, and each canvas redrawn costs the compositor a copy (measured ~2 ms a frame)
    if (this.throttle("accuracy", 100)) { this.charts[1].update(s, this.view); t("accuracy"); }
    // the learning rate changes rarely: redraw it at most 5 times a second (a trailing frame
    // makes sure its last state is drawn)
    if (this.throttle("lr", 200)) { this.charts[2].update(s, this.view); t("lr"); }
    this.kernels.update(at); t("kernels");
    this.fmaps.update(at); t("featureMaps");
    this.norms.update(at); t("norms");
    this.confusion.update(at);
    this.gallery.update(s); t("evaluation");
    this.perclass.update(s);
    this.layerView.update(s, s ? this.runs.get(s.runId) : null); t("lookDeeper");
    if (s && s.summary && s.summary.input_shape) this.drawpad.setInputShape(s.summary.input_shape.slice(0, 2));
    this.drawCompareAndList();
  }

  drawCompareAndList() {
    const t = this.frame.timer();
    const cmp = this.compare.map((id) => ({ state: this.state(id), run: this.runs.get(id) }));
    this.compareView.update(cmp, this.view); t("compare");
    if (this.runListDirty) {
      this.runListDirty = false;
      const runs = [...this.runs.values()].sort((a, b) => b.created_at - a.created_at);
      // the list shows the stream's status for the runs we follow (it is the newest)
      const shown = runs.map((r) => { const st = this.states.get(r.id); return st && st.lastSeq && st.status !== r.status && !isTerminal(r.status) ? { ...r, status: st.status } : r; });
      this.runList.render(shown, this.watched, this.compare);
      t("runList");
    }
  }

  /** True at most once per `ms` for `key`; otherwise asks for a frame when the time is up. */
  throttle(key, ms) {
    const now = performance.now();
    const last = (this.throttled ||= {})[key] || 0;
    if (now - last >= ms) { this.throttled[key] = now; return true; }
    clearTimeout((this.throttleTimers ||= {})[key]);
    this.throttleTimers[key] = setTimeout(() => this.frame.request(), ms - (now - last) + 1);
    return false;
  }

  /** Fill the notes form from the watched run (unless the person is editing it). */
  syncNotes(s) {
    const run = s ? this.runs.get(s.runId) : null;
    this.notesBox.hidden = !run;
    if (!run) return;
    const key = `${run.id}|${run.notes || ""}|${(run.tags || []).join(",")}`;
    if (key === this.notesKey) return;
    const editing = document.activeElement === this.notesText || document.activeElement === this.tagsInput;
    if (editing && this.notesRun === run.id) return;
    this.notesKey = key;
    if (this.notesRun !== run.id) this.notesMsg.textContent = "";
    this.notesRun = run.id;
    this.notesText.value = run.notes || "";
    this.tagsInput.value = (run.tags || []).join(", ");
    this.notesBox.querySelector("summary").textContent = `Notes and tags${run.tags && run.tags.length ? ` (${run.tags.join(", ")})` : run.notes ? " (notes)" : ""}`;
  }

  async saveNotes() {
    const id = this.notesRun;
    if (!id) return;
    const tags = this.tagsInput.value.split(",").map((t) => t.trim()).filter(Boolean);
    this.notesMsg.textContent = "Saving…";
    try {
      const run = await api.notes(id, { notes: this.notesText.value, tags });
      this.onRunInfo(run);
      this.notesKey = null;
      this.notesMsg.textContent = "Saved.";
      this.runListDirty = true;
      this.frame.request();
    } catch (err) {
      const d = err instanceof ApiError && err.detail && err.detail[0];
      this.notesMsg.textContent = "Not saved: " + (d ? `${(d.loc || []).join(".") || "body"}: ${d.msg}` : err.message);
    }
  }

  drawHeader(s) {
    const key = s ? `${s.runId}|${!!s.config}|${s.status}|${s.hparams ? JSON.stringify(s.hparams) : ""}` : "none";
    if (key === this.headerKey) return;
    this.headerKey = key;
    const info = $("#run-info");
    $("#btn-copy-design").hidden = !(s && s.config);
    $("#metrics-download").hidden = !s;
    if (!s) { info.textContent = "No run selected. Design a network on the left and press Start, or pick a run from the list below."; }
    else {
      const c = s.config;
      const run = this.runs.get(s.runId);
      const parts = [];
      if (run && run.preset) parts.push(`preset ${run.preset}`);
      if (c && isBsde(c)) {
        const e = c.equation, t = c.train;
        parts.push(`${e.name}, d = ${e.dim}, T = ${e.total_time}, N = ${e.num_time_interval}`);
        parts.push(`subnet ${(Array.isArray(c.subnet) ? c.subnet : []).map(layerText).join(" → ")}`);
        parts.push(`Adam lr ${t.lr}, batch ${t.batch_size} paths, ${fmtInt(t.iterations)} iterations`);
      } else if (c) {
        parts.push(c.model.map(layerText).join(" → "));
        parts.push(`${c.dataset.name}${c.dataset.train_limit ? `, ${fmtInt(c.dataset.train_limit)} training images` : ""}`);
        const t = c.train;
        // each optimizer's own knobs: momentum (SGD, RMSprop), Nesterov (SGD), betas (Adam)
        const opt = t.optimizer === "adam" ? `, betas ${t.beta1 ?? 0.9}/${t.beta2 ?? 0.999}`
          : t.momentum ? `, momentum ${t.momentum}${t.nesterov && t.optimizer === "sgd" ? " (Nesterov)" : ""}` : "";
        parts.push(`${t.optimizer} lr ${t.lr}${opt}, weight decay ${t.weight_decay ?? 0}, batch ${t.batch_size}, ${t.epochs ? t.epochs + " epoch" + (t.epochs > 1 ? "s" : "") : fmtInt(t.iterations) + " iterations"}`);
        parts.push(`${scheduleText(t.schedule)} · ${lossTitle(t.loss || "cross_entropy")} loss${t.clip_norm ? ` · gradient norm clipped at ${t.clip_norm}` : ""}`);
      }
      if (s.summary && s.summary.params != null) parts.push(`${fmtInt(s.summary.params)} parameters`);
      info.textContent = parts.join(" · ");
    }
    // live hyperparameter inputs follow the run unless the person is typing in them
    const live = !!s && (s.status === "running" || s.status === "paused" || s.status === "queued");
    $("#live-apply").disabled = !live;
    const hp = s && (s.hparams || (s.config && { lr: s.config.train.lr, momentum: s.config.train.momentum, weight_decay: s.config.train.weight_decay }));
    // a Deep BSDE run trains with Adam and no weight decay: only its lr can change
    const bsde = !!(s && s.config && s.config.task === "bsde");
    for (const [key, sel] of [["lr", "#live-lr"], ["momentum", "#live-momentum"], ["weight_decay", "#live-wd"]]) {
      const el = $(sel);
      el.closest(".field").style.display = bsde && key !== "lr" ? "none" : "";
      el.disabled = !live;
      if (document.activeElement !== el) el.value = hp && hp[key] != null ? String(hp[key]) : "";
    }
    if (!live) $("#live-msg").textContent = "";
  }
}

performance.mark("bpl-modules");
const app = new App();
performance.mark("bpl-components");
// For the benchmark and the browser tests: read-only views of the state, and the frame metrics.
window.__bpl = {
  app,
  metrics: () => app.frame.summary(),
  resetMetrics: () => app.frame.resetMetrics(),
  interactiveAt: () => app.interactiveAt ?? null,
  watched: () => app.watched,
  points: (id) => { const s = app.states.get(id || app.watched); return s ? Array.from(s.progress.step.view()) : []; },
  lastSeq: (id) => { const s = app.states.get(id || app.watched); return s ? s.lastSeq : 0; },
  info: (id) => {
    const s = app.states.get(id || app.watched);
    return s ? { runId: s.runId, status: s.status, points: s.progress.n, snapshots: s.snapshots, evals: s.evals.n, lastSeq: s.lastSeq, markers: s.markers.length } : null;
  },
  /** Fold events into a run that has no server behind it (the benchmark's page-only mode). */
  feed: (id, events) => {
    if (!app.states.has(id)) { app.states.set(id, initialRunState(id)); }
    if (app.watched !== id) { app.watched = id; app.resetViews(); }
    const s = app.states.get(id);
    for (const ev of events) { reduceRun(s, ev); app.frame.event(ev.ts); }
  },
  kick: () => { for (const s of app.streams.values()) s.kick(); },
  draw: (points) => app.drawpad.stroke(points),
};
app.init().catch((err) => app.notice("The page could not start: " + err.message));
