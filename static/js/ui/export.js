// "Download metrics": a run's per-step and evaluation metrics, from its folded state (the same
// numbers the charts draw), as CSV or JSON. Nothing is asked of the server.

import { imagesAt, lowerBound } from "./series.js";

export const STEP_FIELDS = ["step", "epoch", "images", "wall_time_s", "loss", "accuracy", "lr"];
export const EVAL_FIELDS = ["step", "epoch", "images", "wall_time_s", "train_loss", "train_accuracy", "test_loss", "test_accuracy"];
export const CSV_COLUMNS = ["kind", "step", "epoch", "images", "wall_time_s", "loss", "accuracy", "lr",
  "train_loss", "train_accuracy", "test_loss", "test_accuracy"];

/** A Deep BSDE run's columns: u0 with every step; its evaluations on the validation paths. */
export const BSDE_CSV_COLUMNS = ["kind", "step", "wall_time_s", "loss", "u0", "lr", "valid_loss",
  "relative_error", "z0_loss"];

const num = (v) => (v == null || !Number.isFinite(v) ? null : v);
const isBsde = (state) => !!state.config && state.config.task === "bsde";

/**
 * The run's metrics: {steps: [{step, epoch, images, wall_time_s, loss, accuracy, lr}],
 * evals: [{step, epoch, images, wall_time_s, train_loss, train_accuracy, test_loss,
 * test_accuracy}]}. `epoch` is the engine's (1-based), `images` the training images seen after
 * the step, `wall_time_s` the seconds of training up to it; null where unknown.
 */
export function runMetrics(state) {
  const p = state.progress, e = state.evals, n = p.n;
  const t = (state.config && state.config.train) || {};
  const spe = state.stepsPerEpoch;
  const o = { stepsPerEpoch: spe, trainSize: state.trainSize, batch: t.batch_size, perStep: t.drop_last || t.sampling === "replacement" };
  const images = (s) => (t.batch_size ? imagesAt(s, o) : null);
  const epochOf = (s) => (spe ? Math.floor((s - 1) / spe) + 1 : null);
  const steps = [];
  for (let i = 0; i < n; i++) {
    const s = p.step.get(i);
    steps.push({ step: s, epoch: num(p.epoch ? p.epoch.get(i) : NaN) ?? epochOf(s), images: images(s),
      wall_time_s: num(p.time ? p.time.get(i) : NaN), loss: num(p.loss.get(i)), accuracy: num(p.accuracy.get(i)), lr: num(p.lr.get(i)) });
  }
  if (isBsde(state)) {
    const u = state.bsde.u0;
    steps.forEach((r, i) => { r.u0 = i < u.n ? num(u.get(i)) : null; delete r.accuracy; delete r.images; delete r.epoch; });
    const evals = state.bsde.evals.map((x) => {
      const i = lowerBound(p.step.buf, n, x.step);
      return { step: x.step, wall_time_s: i < n && p.step.get(i) === x.step ? steps[i].wall_time_s : null,
        u0: num(x.u0), valid_loss: num(x.validLoss), relative_error: num(x.relativeError), z0_loss: num(x.z0Loss) };
    });
    return { steps, evals };
  }
  const evals = [];
  for (let j = 0; j < e.n; j++) {
    const s = e.step[j];
    const i = lowerBound(p.step.buf, n, s);
    const at = i < n && p.step.get(i) === s ? steps[i] : null;
    evals.push({ step: s, epoch: at ? at.epoch : epochOf(s), images: images(s), wall_time_s: at ? at.wall_time_s : null,
      train_loss: num(e.trainLoss[j]), train_accuracy: num(e.trainAccuracy[j]), test_loss: num(e.testLoss[j]), test_accuracy: num(e.testAccuracy[j]) });
  }
  return { steps, evals };
}

/** JSON text: {run_id, name, config, steps, evals} (runMetrics' rows). */
export function metricsJSON(state) {
  const { steps, evals } = runMetrics(state);
  return JSON.stringify({ run_id: state.runId, name: state.name, config: state.config, steps, evals });
}

/** CSV text: one row per step (kind "step") and per evaluation (kind "eval", after its step's
 *  row), the columns CSV_COLUMNS; empty cells where a row has no value. */
export function metricsCSV(state) {
  const { steps, evals } = runMetrics(state);
  const cols = isBsde(state) ? BSDE_CSV_COLUMNS : CSV_COLUMNS;
  const cell = (v) => (v == null ? "" : String(v));
  const lines = [cols.join(",")];
  let j = 0;
  const evalRow = (r) => lines.push(cols.map((c) => (c === "kind" ? "eval" : cell(r[c]))).join(","));
  for (const r of steps) {
    while (j < evals.length && evals[j].step < r.step) evalRow(evals[j++]);
    lines.push(cols.map((c) => (c === "kind" ? "step" : cell(r[c]))).join(","));
    while (j < evals.length && evals[j].step === r.step) evalRow(evals[j++]);
  }
  while (j < evals.length) evalRow(evals[j++]);
  return lines.join("\n") + "\n";
}

/** Save `text` as a file named `filename` (the browser's download). */
export function download(filename, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url; a.download = filename;
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A file name for a run's metrics: "<name>-<id>-metrics.<ext>" with only safe characters. */
export function metricsFilename(state, ext) {
  const base = String(state.name || "run").replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 60);
  return `${base}-${state.runId}-metrics.${ext}`;
}
