// The browser's state for one run is a fold over its events:
//     state = reduceRun(state, event)
// Components never look at events; they draw state. Events with seq <= state.lastSeq are
// ignored, so a replay after a reconnect (after_seq) can never duplicate a point. (Transient
// snapshots, streamed live but not stored, reuse the newest stored seq; see below.)
//
// The per-iteration series grow to tens of thousands of points, so they live in columnar typed
// arrays that the reducer appends to in place (copying them on every event would make the fold
// quadratic). Everything else is small and replaced. `state.rev` counts applied events;
// components compare the counters they care about (progress.n, evals.n, snapshots, rev).

import { decodeArray } from "./codec.js";

/** A growable typed column. `view()` is a subarray over the filled part (no copy). */
export class Column {
  constructor(Type = Float64Array, capacity = 1024) {
    this.Type = Type;
    this.buf = new Type(capacity);
    this.n = 0;
  }
  push(v) {
    if (this.n === this.buf.length) {
      const next = new this.Type(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.n++] = v;
  }
  get(i) { return this.buf[i]; }
  view() { return this.buf.subarray(0, this.n); }
}

const TERMINAL = new Set(["completed", "stopped", "diverged", "failed", "interrupted"]);
export const isTerminal = (status) => TERMINAL.has(status);
export const isActive = (status) => status === "running" || status === "paused" || status === "queued";

export function initialRunState(runId, run = null) {
  return {
    runId,
    lastSeq: 0,
    rev: 0,
    status: run ? run.status : "queued",
    error: run ? run.error : null,
    name: run ? run.name : runId,
    config: run ? run.config : null,
    summary: run ? run.summary : null,
    totalSteps: run && run.summary ? run.summary.total_steps : null,
    stepsPerEpoch: null,
    trainSize: null,
    testSize: null,
    classNames: null,
    progress: {
      n: 0,
      step: new Column(Float64Array), loss: new Column(Float64Array),
      accuracy: new Column(Float64Array), lr: new Column(Float64Array),
      epoch: new Column(Float64Array),
      time: new Column(Float64Array),   // seconds of training wall time (elapsed, continued across a continue)
      timeOffset: 0,
    },
    latest: null,           // the newest progress event
    evals: {
      n: 0, step: [], trainLoss: [], trainAccuracy: [], testLoss: [], testAccuracy: [],
      confusion: [],        // per eval: the [true][predicted] counts (per-class accuracy, time-lapse)
    },
    lastEval: null,         // confusion + misclassified of the newest eval
    snapshot: null,         // newest snapshot, arrays decoded
    snapshots: 0,
    history: [],            // every stored snapshot (as state.snapshot), oldest first: stateAt(k)
    norms: { step: [], byName: new Map() },   // name -> {weight: [], grad: []} per snapshot
    markers: [],            // [{step, changes, previous}] from hparams_changed
    hparams: null,          // current {lr, momentum, weight_decay}
    pauses: [],             // [{step, type: "paused"|"resumed"}]
    continuations: [],      // [{step}] from continued: the run went on from its checkpoint
    tempo: null,            // max steps per second from tempo_changed (null: full speed)
    startStep: 0,           // run_started.start_step: where a fork began in its parent
    diverged: null,
    finished: null,
    // a bsde run (config.task === "bsde"): u0 per step, its evaluations, its newest picture
    bsde: { u0: new Column(Float64Array), evals: [], snapshot: null },
    ...wreckState(),
  };
}

/** Seed from a Run object (GET /api/runs/{id}) without touching the event-derived parts. */
export function withRunInfo(state, run) {
  if (!run) return state;
  state.name = run.name;
  if (!state.config) state.config = run.config;
  if (!state.summary) state.summary = run.summary;
  if (state.totalSteps == null && run.summary) state.totalSteps = run.summary.total_steps;
  // The event stream is authoritative for status once it has spoken.
  if (state.lastSeq === 0 || isTerminal(run.status)) {
    state.status = run.status;
    state.error = run.error;
  }
  state.rev++;
  return state;
}

function dropLastEval(e) {
  for (const k of ["step", "trainLoss", "trainAccuracy", "testLoss", "testAccuracy"]) e[k].pop();
  e.n--;
}

export function reduceRun(state, ev) {
  if (ev.transient) {
    // A live-only snapshot (server/eventlog.py: streamed but not stored) carries the seq of the
    // newest stored event: fold it without moving lastSeq, unless it is older than what we show.
    if (state.snapshot && ev.step < state.snapshot.step) return state;
  } else if (typeof ev.seq === "number") {
    if (ev.seq <= state.lastSeq) return state;
    state.lastSeq = ev.seq;
  }
  state.rev++;
  switch (ev.type) {
    case "run_started": {
      state.config = ev.config;
      state.summary = ev.summary;
      state.totalSteps = ev.total_steps;
      state.stepsPerEpoch = ev.steps_per_epoch;
      state.trainSize = ev.train_size;
      state.testSize = ev.test_size;
      state.classNames = ev.class_names;
      state.startStep = ev.start_step || 0;     // a fork's first step is startStep + 1
      const t = ev.config && ev.config.train;
      if (t) state.hparams = { lr: t.lr, momentum: t.momentum, weight_decay: t.weight_decay };
      if (!isTerminal(state.status)) state.status = "running";
      break;
    }
    case "progress": {
      const p = state.progress;
      p.step.push(ev.step);
      p.loss.push(ev.loss == null ? NaN : ev.loss);
      p.accuracy.push(ev.accuracy == null ? NaN : ev.accuracy);
      p.lr.push(ev.lr == null ? NaN : ev.lr);
      p.epoch.push(ev.epoch == null ? NaN : ev.epoch);
      p.time.push(ev.elapsed == null ? NaN : ev.elapsed + p.timeOffset);
      if ("u0" in ev) {
        const u = state.bsde.u0;
        u.n = p.n;               // aligned with progress (a continue may have cut both)
        u.push(ev.u0 == null ? NaN : ev.u0);
      }
      p.n++;
      state.latest = ev;
      if (state.status === "queued") state.status = "running";
      break;
    }
    case "eval": {
      const e = state.evals;
      if (e.n && e.step[e.n - 1] === ev.step) dropLastEval(e);  // re-evaluated on continue
      e.step.push(ev.step);
      e.trainLoss.push(ev.train_loss);
      e.trainAccuracy.push(ev.train_accuracy);
      e.testLoss.push(ev.test_loss);
      e.testAccuracy.push(ev.test_accuracy);
      e.confusion.push(ev.confusion || null);
      e.n++;
      state.lastEval = ev;
      break;
    }
    case "snapshot": {
      // Arrays are decoded lazily (snapshotArrays): a replay of a long run folds hundreds of
      // snapshots of which only the newest is ever drawn.
      state.snapshot = {
        step: ev.step, epoch: ev.epoch, layer: ev.layer,
        kernelsEnc: ev.kernels, featureMapsEnc: ev.feature_maps, decoded: null,
        probeIndices: ev.probe_indices || [],
        probeLabels: ev.probe_labels || [],
        norms: ev.norms || [],
      };
      state.snapshots++;
      // stored snapshots make the time-lapse; a transient one is live-only (never replayed)
      if (!ev.transient) state.history.push(state.snapshot);
      const nm = state.norms;
      nm.step.push(ev.step);
      for (const row of ev.norms || []) {
        let h = nm.byName.get(row.name);
        if (!h) { h = { step: [], weight: [], grad: [] }; nm.byName.set(row.name, h); }
        h.step.push(ev.step);
        h.weight.push(row.weight_norm);
        h.grad.push(row.grad_norm);
      }
      break;
    }
    case "bsde_eval": {
      const e = state.bsde.evals;
      if (e.length && e[e.length - 1].step >= ev.step) e.splice(e.findIndex((x) => x.step >= ev.step));
      e.push({ step: ev.step, validLoss: ev.valid_loss, u0: ev.u0, reference: ev.reference,
               relativeError: ev.relative_error, z0Loss: ev.z0_loss });
      break;
    }
    case "bsde_snapshot":
      state.bsde.snapshot = { step: ev.step, times: ev.times, zMeanAbs: ev.z_mean_abs,
                              paths: ev.paths, exactPaths: ev.exact_paths };
      break;
    case "hparams_changed": {
      state.markers = [...state.markers, { step: ev.step, changes: ev.changes, previous: ev.previous }];
      state.hparams = { ...(state.hparams || {}), ...ev.changes };
      break;
    }
    case "paused":
      state.pauses = [...state.pauses, { step: ev.step, type: "paused" }];
      if (!isTerminal(state.status)) state.status = "paused";
      break;
    case "resumed":
      state.pauses = [...state.pauses, { step: ev.step, type: "resumed" }];
      if (!isTerminal(state.status)) state.status = "running";
      break;
    case "tempo_changed":
      state.tempo = ev.steps_per_second;
      break;
    case "continued": {
      // Steps after the checkpoint that an interrupted attempt reported are void.
      const p = state.progress;
      let n = p.n;
      while (n > 0 && p.step.get(n - 1) > ev.step) n--;
      for (const c of [p.step, p.loss, p.accuracy, p.lr, p.epoch, p.time]) c.n = n;
      state.bsde.u0.n = Math.min(state.bsde.u0.n, n);
      p.n = n;
      // the new worker's elapsed starts at 0: go on from the checkpoint's time
      p.timeOffset = n && Number.isFinite(p.time.get(n - 1)) ? p.time.get(n - 1) : 0;
      const be = state.bsde.evals;
      while (be.length && be[be.length - 1].step > ev.step) be.pop();
      while (state.evals.n && state.evals.step[state.evals.n - 1] > ev.step) dropLastEval(state.evals);
      state.totalSteps = ev.total_steps;
      state.continuations = [...state.continuations, { step: ev.step }];
      state.tempo = null;     // a new worker starts at full speed
      state.finished = null;
      state.diverged = null;
      state.status = "running";
      break;
    }
    case "diverged":
      state.diverged = ev;
      state.status = "diverged";
      break;
    case "run_finished":
      state.finished = ev;
      state.status = ev.status;
      break;
    case "status":
      state.status = ev.status;
      if ("error" in ev) state.error = ev.error;
      break;
    default:
      break; // unknown events are ignored, never fatal
  }
  foldWreck(state, ev);
  return state;
}

// ---------------------------------------------------------------- live changes that wreck a run
// A live change (hparams_changed) is judged by the first evaluation after it, against the last
// evaluation before it. It "wrecked" the run when the test accuracy fell by more than
// WRECK_DROP (10 points: far beyond the eval-to-eval noise of a healthy run, e.g. lr 50 on
// Nielsen's net: 93% -> 31.8%), or when the test error at least doubled with a fall of
// WRECK_MIN_DROP or more (a 99% net falling to 95% has lost most of its margin). Changes made
// between two evaluations are judged together; undoing means setting their first `previous`.

export const WRECK_DROP = 0.10;
export const WRECK_MIN_DROP = 0.03;

function wreckState() {
  return {
    wreckWatch: { lastEval: null, pending: null },   // internal to the fold
    wrecks: [],   // [{step, changeStep, changes, previous, before: {step, acc}, after: {step, acc}, reason, undone}]
  };
}

/** Why `after` is a sharp fall from `before` (test accuracies in 0..1), or null. */
export function wreckReason(before, after) {
  const drop = before - after;
  const pts = (x) => `${(x * 100).toFixed(1)} points`;
  if (drop > WRECK_DROP) return `test accuracy fell ${pts(drop)}`;
  if (drop >= WRECK_MIN_DROP && 1 - after >= 2 * (1 - before)) return `test error more than doubled (accuracy fell ${pts(drop)})`;
  return null;
}

function foldWreck(state, ev) {
  const w = state.wreckWatch;
  if (ev.type === "hparams_changed") {
    const ch = ev.changes || {}, prev = ev.previous || {};
    let undo = false;
    for (const x of state.wrecks) {
      if (x.undone == null && Object.keys(x.previous).length && Object.entries(x.previous).every(([k, v]) => ch[k] === v)) {
        x.undone = ev.step;
        undo = true;
      }
    }
    // An undo restores the values from before a wreck: a run still recovering from the wreck
    // may fall further after it, which is not the undo's doing (nor news).
    if (undo) { w.pending = null; return; }
    w.pending = w.pending
      ? { ...w.pending, changes: { ...w.pending.changes, ...ch }, previous: { ...prev, ...w.pending.previous } }
      : { step: ev.step, changes: { ...ch }, previous: { ...prev }, before: w.lastEval };
  } else if (ev.type === "eval" && typeof ev.test_accuracy === "number") {
    const cur = { step: ev.step, acc: ev.test_accuracy };
    const p = w.pending;
    const reason = p && p.before ? wreckReason(p.before.acc, cur.acc) : null;
    if (reason) {
      state.wrecks = [...state.wrecks, { step: ev.step, changeStep: p.step, changes: p.changes, previous: p.previous,
        before: p.before, after: cur, reason, undone: null }];
    }
    w.pending = null;
    w.lastEval = cur;
  }
}

/** The learning rate in effect: the config's, then each live change (the lr a retry divides). */
export function lrInEffect(state) {
  if (state.hparams && typeof state.hparams.lr === "number") return state.hparams.lr;
  if (state.diverged && typeof state.diverged.lr === "number") return state.diverged.lr;
  return state.config && state.config.train ? state.config.train.lr : null;
}

/** The newest evaluation before a divergence, `{step, acc}` (null if there was none). */
export function lastGoodEval(state) {
  const e = state.evals;
  for (let j = e.n - 1; j >= 0; j--) {
    if (typeof e.testAccuracy[j] === "number" && (!state.diverged || e.step[j] < state.diverged.step)) return { step: e.step[j], acc: e.testAccuracy[j] };
  }
  return null;
}

/** The decoded {kernels, featureMaps} of a snapshot (cached on it). */
export function snapshotArrays(snap) {
  if (!snap) return null;
  if (!snap.decoded) {
    snap.decoded = { kernels: decodeArray(snap.kernelsEnc), featureMaps: decodeArray(snap.featureMapsEnc) };
  }
  return snap.decoded;
}

/** Index of the first progress point with step >= s (binary search). */
export function progressIndexOf(state, s) {
  const steps = state.progress.step.buf;
  let lo = 0, hi = state.progress.n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (steps[mid] < s) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// ---------------------------------------------------------------- looking back (time-lapse)

/** Index of the last history snapshot with step <= k (0 when k is before the first). */
export function historyIndexAt(state, k) {
  const hs = state.history;
  let lo = 0, hi = hs.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (hs[mid].step <= k) lo = mid + 1; else hi = mid; }
  return Math.max(0, lo - 1);
}

/** The run as it was at step k, for the snapshot views: a new object sharing state's parts,
 *  with `snapshot` the stored one at or before k (the first when k is before it), `lastEval`
 *  the eval at or before that snapshot's step and `at` its step. Pure: `state` is not changed. */
export function stateAt(state, k) {
  if (!state.history.length) return state;
  const i = historyIndexAt(state, k);
  const snap = state.history[i];
  const e = state.evals;
  let j = -1;
  for (let a = e.n - 1; a >= 0; a--) if (e.step[a] <= snap.step) { j = a; break; }
  const lastEval = j < 0 ? null : {
    step: e.step[j], test_accuracy: e.testAccuracy[j], test_loss: e.testLoss[j],
    train_accuracy: e.trainAccuracy[j], train_loss: e.trainLoss[j], confusion: e.confusion[j],
    misclassified: [],
  };
  // `snapshots` is the cards' redraw counter: i + 0.5 is never a live state's count
  return { ...state, snapshot: snap, snapshots: i + 0.5, lastEval, at: snap.step, atIndex: i };
}

/** Per-class test accuracy at each eval: {step: [...], classes: [[acc per eval] x C]}
 *  from the confusion matrices (row i: true class i; null when a class has no test image). */
export function perClassAccuracy(state) {
  const e = state.evals, steps = [], classes = [];
  for (let j = 0; j < e.n; j++) {
    const cm = e.confusion[j];
    if (!cm) continue;
    steps.push(e.step[j]);
    cm.forEach((row, i) => {
      const total = row.reduce((a, b) => a + b, 0);
      (classes[i] ||= new Array(steps.length - 1).fill(null)).push(total ? row[i] / total : null);
    });
  }
  return { step: steps, classes };
}
