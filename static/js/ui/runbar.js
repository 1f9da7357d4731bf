// The run bar: Start / Pause / Resume / Stop, the watched run's status, a progress bar with ETA
// and images/s, and the connection state. Plus the diverged/failed banner.

import { h, clear, fmtInt, fmtDuration, fmtPct, fmtNum } from "./dom.js";
import { lrInEffect, lastGoodEval } from "../reducer.js";

export class RunBar {
  constructor(els, { onStart, onCommand, onTempo }) {
    Object.assign(this, els);
    this.start.addEventListener("click", () => onStart());
    this.pause.addEventListener("click", () => onCommand("pause"));
    this.resume.addEventListener("click", () => onCommand("resume"));
    this.stop.addEventListener("click", () => onCommand("stop"));
    this.step.addEventListener("click", () => onCommand("step"));
    this.cont.addEventListener("click", () => onCommand("continue"));
    this.tempo.addEventListener("change", () => onTempo(this.tempo.value === "" ? null : +this.tempo.value));
    this.key = "";
  }

  setStartEnabled(ok, why) {
    this.start.disabled = !ok;
    this.startWhy.textContent = ok ? "" : why || "";
    this.startWhy.hidden = ok || !why;
  }

  update(state, conn) {
    const s = state ? state.status : null;
    const latest = state && state.latest;
    const key = state ? `${state.runId}|${s}|${latest ? latest.step : -1}|${conn}|${!!state.finished}|${state.totalSteps}|${!!state.diverged}|${state.evals.n}|${state.tempo}` : `none|${conn}`;
    if (key === this.key) return;
    this.key = key;
    this.pause.disabled = s !== "running" && s !== "queued";
    this.resume.disabled = s !== "paused";
    this.stop.disabled = !(s === "running" || s === "paused" || s === "queued");
    this.step.disabled = s !== "paused";
    // a completed or diverged run goes on only as a fork (server/API.md)
    this.cont.disabled = !(s === "stopped" || s === "interrupted" || s === "failed");
    this.tempo.disabled = !(s === "running" || s === "paused");
    const tv = state && state.tempo != null ? String(state.tempo) : "";
    if (document.activeElement !== this.tempo) {
      if (![...this.tempo.options].some((o) => o.value === tv)) this.tempo.append(h("option", { value: tv }, `${tv} steps/s`));
      this.tempo.value = tv;
    }
    this.statusText.textContent = state ? s : "no run selected";
    this.statusText.className = `badge status-${s || "none"}`;
    this.runName.textContent = state ? state.name : "";
    const total = state && state.totalSteps;
    const step = latest ? latest.step : 0;
    if (state && total) { this.progress.max = total; this.progress.value = Math.min(step, total); }
    else { this.progress.removeAttribute("value"); if (!state) { this.progress.max = 1; this.progress.value = 0; } }
    let text = "";
    const bsde = !!(state && state.config && state.config.task === "bsde");
    const unit = bsde ? "paths/s" : "img/s";
    if (state) {
      if (state.diverged) {
        // the last evaluation is from before the divergence: never the run's result
        const f = state.finished, good = lastGoodEval(state);
        text = `diverged at step ${fmtInt(state.diverged.step)} · ` +
          (good ? `last good: test ${fmtPct(good.acc)} at step ${fmtInt(good.step)}` : "no evaluation before it") +
          (f ? ` · ${fmtInt(f.step)} steps in ${fmtDuration(f.wall_seconds)}` : "");
      } else if (state.finished) {
        const f = state.finished, u0 = f.result && f.result.u0;
        text = `${fmtInt(f.step)} steps in ${fmtDuration(f.wall_seconds)} · ${fmtInt(f.images_per_second)} ${unit}` +
          (f.test_accuracy != null ? ` · test ${fmtPct(f.test_accuracy)}` : "") +
          (bsde && u0 != null ? ` · u0 ${u0.toPrecision(7)}` : "");
      } else if (latest) {
        const eta = total && step ? (total - step) * (latest.elapsed / step) : null;
        // a Deep BSDE run samples fresh paths each step: no epochs, paths not images
        text = `step ${fmtInt(step)}${total ? " / " + fmtInt(total) : ""}${bsde ? "" : ` · epoch ${latest.epoch}`} · ${fmtInt(latest.images_per_sec)} ${unit}` +
          (s === "running" && eta != null ? ` · ETA ${fmtDuration(eta)}` : "");
      } else {
        text = s === "queued" ? "waiting to start…" : s === "running" ? "loading data…" : "";
      }
    }
    this.progressText.textContent = text;
    this.progress.setAttribute("aria-valuetext", text || "no run");
    this.conn.textContent = conn || "";
  }
}

export class Banner {
  constructor(el, { onRetry, onForkBack }) {
    this.el = el;
    this.onRetry = onRetry;
    this.onForkBack = onForkBack;
    this.key = "";
  }
  update(state) {
    let key = "";
    if (state && state.diverged) key = `d|${state.runId}`;
    else if (state && (state.status === "failed" || state.status === "interrupted")) key = `f|${state.runId}|${state.error}`;
    if (key === this.key) return;
    this.key = key;
    clear(this.el);
    this.el.hidden = !key;
    if (!key) return;
    if (state.diverged) {
      const d = state.diverged, good = lastGoodEval(state);   // checkpoints are kept at evals
      this.el.className = "banner diverged";
      this.el.append(
        h("div", {}, h("strong", {}, `Diverged at step ${fmtInt(d.step)}`), `: ${d.reason}, in ${d.where}. `, h("span", {}, cap(d.suggestion) + ".")),
        h("div", { class: "buttons" },
          good ? h("button", { type: "button", class: "primary", onclick: () => this.onForkBack(state) },
            `Fork from step ${fmtInt(good.step)} with lr / 10 (${fmtNum(retryLr(state), 3)})`) : null,
          h("button", { type: "button", class: good ? "" : "primary", onclick: () => this.onRetry(state) }, `Retry with lr / 10 (${fmtNum(retryLr(state), 3)})`)));
    } else {
      this.el.className = "banner failed";
      this.el.append(h("div", {}, h("strong", {}, state.status === "failed" ? "The run failed" : "The run was interrupted"), state.error ? `: ${state.error}` : "."));
    }
  }
}

/** The lr a retry starts with: a tenth of the one in effect when the run diverged (live
 *  changes included), the same number on the button and in the new run's config. */
export function retryLr(state) {
  const lr = lrInEffect(state);
  return lr == null ? null : lr / 10;
}

const hpName = (k) => (k === "weight_decay" ? "weight decay" : k);
const hpList = (o) => Object.entries(o).map(([k, v]) => `${hpName(k)} ${fmtNum(v, 4)}`).join(", ");

/** A live change after which the test accuracy fell sharply (reducer.js: wrecks), with Undo
 *  (PATCH the previous values back) while the run is running or paused. */
export class WreckBanner {
  constructor(el, { onUndo }) {
    this.el = el;
    this.onUndo = onUndo;
    this.key = "";
  }
  update(state) {
    const w = state && state.wrecks.length ? state.wrecks[state.wrecks.length - 1] : null;
    const live = !!state && (state.status === "running" || state.status === "paused");
    const key = w ? `${state.runId}|${w.step}|${w.undone}|${live}` : "";
    if (key === this.key) return;
    this.key = key;
    clear(this.el);
    this.el.hidden = !w;
    if (!w) return;
    const msg = h("div", {},
      h("strong", {}, `Test accuracy fell from ${fmtPct(w.before.acc)} to ${fmtPct(w.after.acc)}`),
      ` after the live change to ${hpList(w.changes)} at step ${fmtInt(w.changeStep)} (${w.reason}; evaluations at steps ${fmtInt(w.before.step)} and ${fmtInt(w.after.step)}). `);
    if (w.undone != null) msg.append(`Undone at step ${fmtInt(w.undone)}: ${hpList(w.previous)} again.`);
    else if (!live) msg.append(`It was kept until the run ended (${state.status}).`);
    this.el.append(msg);
    if (w.undone == null && live && Object.keys(w.previous).length) {
      const btn = h("button", { type: "button", class: "primary", onclick: async () => {
        btn.disabled = true;
        try { await this.onUndo(state, w.previous); } finally { btn.disabled = false; }
      } }, `Undo: set ${hpList(w.previous)}`);
      this.el.append(btn);
    }
  }
}

function cap(s) { return s ? s[0].toUpperCase() + s.slice(1) : ""; }
