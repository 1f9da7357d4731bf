// The run bar: Start / Pause / Resume / Stop, the watched run's status, a progress bar with ETA
// and images/s, and the connection state. Plus the diverged/failed banner.

import { h, clear, fmtInt, fmtDuration, fmtPct, fmtNum } from "./dom.js";

export class RunBar {
  constructor(els, { onStart, onCommand }) {
    Object.assign(this, els);
    this.start.addEventListener("click", () => onStart());
    this.pause.addEventListener("click", () => onCommand("pause"));
    this.resume.addEventListener("click", () => onCommand("resume"));
    this.stop.addEventListener("click", () => onCommand("stop"));
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
    const key = state ? `${state.runId}|${s}|${latest ? latest.step : -1}|${conn}|${!!state.finished}|${state.totalSteps}` : `none|${conn}`;
    if (key === this.key) return;
    this.key = key;
    this.pause.disabled = s !== "running" && s !== "queued";
    this.resume.disabled = s !== "paused";
    this.stop.disabled = !(s === "running" || s === "paused" || s === "queued");
    this.statusText.textContent = state ? s : "no run selected";
    this.statusText.className = `badge status-${s || "none"}`;
    this.runName.textContent = state ? state.name : "";
    const total = state && state.totalSteps;
    const step = latest ? latest.step : 0;
    if (state && total) { this.progress.max = total; this.progress.value = Math.min(step, total); }
    else { this.progress.removeAttribute("value"); if (!state) { this.progress.max = 1; this.progress.value = 0; } }
    let text = "";
    if (state) {
      if (state.finished) {
        const f = state.finished;
        text = `${fmtInt(f.step)} steps in ${fmtDuration(f.wall_seconds)} · ${fmtInt(f.images_per_second)} img/s` +
          (f.test_accuracy != null ? ` · test ${fmtPct(f.test_accuracy)}` : "");
      } else if (latest) {
        const eta = total && step ? (total - step) * (latest.elapsed / step) : null;
        text = `step ${fmtInt(step)}${total ? " / " + fmtInt(total) : ""} · epoch ${latest.epoch} · ${fmtInt(latest.images_per_sec)} img/s` +
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
  constructor(el, { onRetry }) {
    this.el = el;
    this.onRetry = onRetry;
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
      const d = state.diverged;
      this.el.className = "banner diverged";
      this.el.append(
        h("div", {}, h("strong", {}, `Diverged at step ${fmtInt(d.step)}`), `: ${d.reason}, in ${d.where}. `, h("span", {}, cap(d.suggestion) + ".")),
        h("button", { type: "button", class: "primary", onclick: () => this.onRetry(state) }, `Retry with lr / 10 (${fmtNum(d.lr / 10, 3)})`));
    } else {
      this.el.className = "banner failed";
      this.el.append(h("div", {}, h("strong", {}, state.status === "failed" ? "The run failed" : "The run was interrupted"), state.error ? `: ${state.error}` : "."));
    }
  }
}

function cap(s) { return s ? s[0].toUpperCase() + s.slice(1) : ""; }
