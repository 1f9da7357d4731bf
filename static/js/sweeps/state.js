// A sweep's state in the browser is a fold over its stream (WS /ws/sweeps/{id}), seeded from
// GET /api/sweeps/{id}: state = reduceSweep(state, event). Pure functions, no DOM.

export function initialSweepState(id) {
  return { id, lastSeq: 0, rev: 0, sweep: null, status: null, budget: null, trials: new Map(), finished: null };
}

function trialOf(state, number) {
  let t = state.trials.get(number);
  if (!t) {
    t = { number, params: {}, status: "queued", run_id: null, evals: [], curve: [], objective: null,
      test_accuracy: null, final_loss: null, train_seconds: null, pruned_reason: null, where: "local" };
    state.trials.set(number, t);
  }
  return t;
}

/** Seed from a Sweep object (its trials with their evaluations). */
export function withSweepInfo(state, sw) {
  state.sweep = sw;
  if (state.lastSeq === 0 || !state.status) state.status = sw.status;
  state.budget = sw.budget;
  for (const tr of sw.trials || []) {
    const t = trialOf(state, tr.number);
    const { evals, ...rest } = tr;
    Object.assign(t, rest);
    if (evals && evals.length >= t.evals.length) t.evals = evals.slice();
  }
  state.rev++;
  return state;
}

export function reduceSweep(state, ev) {
  if (typeof ev.seq === "number") {
    if (ev.seq <= state.lastSeq) return state;
    state.lastSeq = ev.seq;
  }
  state.rev++;
  switch (ev.type) {
    case "sweep_started": state.budget = ev.budget; if (!state.status) state.status = "running"; break;
    case "trial_queued": {
      const t = trialOf(state, ev.number);
      t.params = ev.params || t.params; t.status = "queued";
      if (ev.run_id) t.run_id = ev.run_id;
      if (ev.requeue_of != null) t.requeue_of = ev.requeue_of;
      break;
    }
    case "trial_started": {
      const t = trialOf(state, ev.number);
      t.params = ev.params || t.params; t.status = "running";
      if (ev.run_id) t.run_id = ev.run_id;
      break;
    }
    case "trial_progress": {
      const t = trialOf(state, ev.number);
      const last = t.curve[t.curve.length - 1];
      if (!last || ev.step > last[0]) t.curve.push([ev.step, ev.loss]);
      break;
    }
    case "trial_eval": {
      const t = trialOf(state, ev.number);
      if (!t.evals.some((e) => e.eval === ev.eval)) {
        t.evals.push({ eval: ev.eval, step: ev.step, epoch: ev.epoch, test_accuracy: ev.test_accuracy,
          test_loss: ev.test_loss, train_accuracy: ev.train_accuracy, train_loss: ev.train_loss });
      }
      break;
    }
    case "trial_pruning": trialOf(state, ev.number).pruning = ev.reason; break;
    case "trial_finished": {
      const t = trialOf(state, ev.number);
      for (const [k, v] of Object.entries(ev)) if (!["type", "seq", "ts", "sweep_id", "evals"].includes(k)) t[k] = v;
      break;
    }
    case "sweep_extended": state.budget = ev.budget; if (ev.sweep) state.sweep = { ...(state.sweep || {}), sweep: ev.sweep }; state.status = "running"; break;
    case "sweep_status": state.status = ev.status; break;
    case "sweep_finished": state.status = ev.status; state.finished = ev; break;
    default: break;
  }
  return state;
}

export const objectiveSpec = (state) => (state.sweep && state.sweep.objective) || { metric: "test_accuracy", direction: "maximize" };

/** A trial's objective: the server's (at its last evaluation), else its newest evaluation's. */
export function objectiveOf(state, t) {
  if (t.objective != null) return t.objective;
  const metric = objectiveSpec(state).metric;
  const e = t.evals[t.evals.length - 1];
  return e && e[metric] != null ? e[metric] : null;
}

/** Finished trials ranked best first (completed only; pruned ones stopped early). */
export function ranked(state) {
  const max = objectiveSpec(state).direction !== "minimize";
  return [...state.trials.values()].filter((t) => t.status === "completed" && objectiveOf(state, t) != null)
    .sort((a, b) => (max ? objectiveOf(state, b) - objectiveOf(state, a) : objectiveOf(state, a) - objectiveOf(state, b)));
}

/** The parameter paths of the sweep (from its spec, else from the trials). */
export function paramPaths(state) {
  const spec = state.sweep && (state.sweep.sweep || state.sweep.spec);
  if (spec && spec.parameters) return Object.keys(spec.parameters);
  const out = new Set();
  for (const t of state.trials.values()) for (const k of Object.keys(t.params || {})) out.add(k);
  return [...out];
}

export function paramSpec(state, path) {
  const spec = state.sweep && (state.sweep.sweep || state.sweep.spec);
  return (spec && spec.parameters && spec.parameters[path]) || {};
}

function ranks(xs) {
  const idx = xs.map((v, i) => [v, i]).sort((a, b) => a[0] - b[0]);
  const r = new Array(xs.length);
  for (let i = 0; i < idx.length;) {
    let j = i;
    while (j + 1 < idx.length && idx[j + 1][0] === idx[i][0]) j++;
    for (let k = i; k <= j; k++) r[idx[k][1]] = (i + j) / 2;   // ties share their mean rank
    i = j + 1;
  }
  return r;
}

/** Spearman's rank correlation (ties averaged); null when either side is constant. */
export function spearman(xs, ys) {
  const n = xs.length;
  if (n < 3) return null;
  const rx = ranks(xs), ry = ranks(ys);
  const mx = rx.reduce((a, b) => a + b, 0) / n, my = ry.reduce((a, b) => a + b, 0) / n;
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < n; i++) { sxy += (rx[i] - mx) * (ry[i] - my); sxx += (rx[i] - mx) ** 2; syy += (ry[i] - my) ** 2; }
  return sxx && syy ? sxy / Math.sqrt(sxx * syy) : null;
}

/** A parameter's value as a number for plotting: numbers as they are, others by their index
 *  among the sorted distinct values. */
export function numericValues(values) {
  if (values.every((v) => typeof v === "number")) return values.slice();
  const distinct = [...new Set(values.map((v) => JSON.stringify(v)))].sort();
  return values.map((v) => distinct.indexOf(JSON.stringify(v)));
}

/** |Spearman| between each parameter and the objective over the completed trials, once at
 *  least ``min`` have finished: [{path, rho}] largest first. */
export function importance(state, min = 5) {
  const done = ranked(state);
  if (done.length < min) return null;
  const obj = done.map((t) => objectiveOf(state, t));
  return paramPaths(state).map((path) => {
    const have = done.filter((t) => t.params && path in t.params);
    const rho = have.length >= 3 ? spearman(numericValues(have.map((t) => t.params[path])), have.map((t) => objectiveOf(state, t))) : null;
    return { path, rho, n: have.length };
  }).sort((a, b) => Math.abs(b.rho ?? 0) - Math.abs(a.rho ?? 0));
}

