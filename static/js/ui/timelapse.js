// The time-lapse: a slider (and play/pause) over the watched run's stored snapshots
// (state.history). While it is held at a snapshot the kernel, feature-map, norms and confusion
// cards draw stateAt(k) and the charts mark step k; "Live" (or moving it to the end) releases
// it, and it then follows the run as new snapshots arrive.

import { h, clear, fmtInt, fmtPct } from "./dom.js";
import { stateAt } from "../reducer.js";

const PLAY_MS = 400;    // one snapshot per 0.4 s while playing

export class TimeLapse {
  constructor(root, { requestDraw }) {
    this.root = root;
    this.requestDraw = requestDraw;
    this.index = null;            // null: live (the newest); else a history index
    this.timer = null;
    this.slider = h("input", { type: "range", min: "0", max: "0", value: "0", step: "1", id: "timelapse-slider",
      "aria-label": "Snapshot to show", disabled: true, oninput: () => this.seek(+this.slider.value) });
    this.play = h("button", { type: "button", id: "timelapse-play", "aria-pressed": "false", disabled: true, "aria-label": "Play time-lapse",
      onclick: () => this.toggle() }, "Play");
    this.live = h("button", { type: "button", id: "timelapse-live", disabled: true, "aria-label": "Back to live",
      onclick: () => this.release() }, "Live");
    this.readout = h("p", { class: "small", id: "timelapse-readout", "aria-live": "polite" }, "No run selected.");
    clear(root).append(h("div", { class: "timelapse-row" },
      this.play, h("label", { class: "sr-only", for: "timelapse-slider" }, "Snapshot"), this.slider, this.live),
    this.readout);
    this.memo = { key: "", view: null };
  }

  reset() { this.stop(); this.index = null; this.key = ""; this.memo = { key: "", view: null }; }

  seek(i) {
    this.stop();
    this.pick(i);
  }

  pick(i) {
    const n = this.history ? this.history.length : 0;
    this.index = n && i < n - 1 ? Math.max(0, i) : null;   // the newest one is live
    this.requestDraw();
  }

  release() { this.stop(); this.index = null; this.requestDraw(); }

  toggle() {
    if (this.timer) { this.stop(); return; }
    const n = this.history ? this.history.length : 0;
    if (n < 2) return;
    if (this.index == null) this.index = 0;          // from live: play from the start
    this.play.textContent = "Pause"; this.play.setAttribute("aria-label", "Pause time-lapse"); this.play.setAttribute("aria-pressed", "true");
    this.timer = setInterval(() => {
      const m = this.history.length;
      if (this.index == null || this.index >= m - 2) { this.stop(); this.index = null; }
      else this.index++;
      this.requestDraw();
    }, PLAY_MS);
    this.requestDraw();
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.play.textContent = "Play"; this.play.setAttribute("aria-label", "Play time-lapse"); this.play.setAttribute("aria-pressed", "false");
  }

  /** The state the snapshot cards draw: `state` itself when live, else stateAt(step k)
   *  (memoised, so the cards see the same object until k or the run changes). */
  view(state) {
    if (!state || this.index == null || !state.history.length) return state;
    const i = Math.min(this.index, state.history.length - 1);
    const key = `${state.runId}|${i}|${state.evals.n}`;
    if (key !== this.memo.key) this.memo = { key, view: stateAt(state, state.history[i].step) };
    return this.memo.view;
  }

  /** The step the charts mark, or null when live. */
  markStep(state) {
    if (!state || this.index == null || !state.history.length) return null;
    return state.history[Math.min(this.index, state.history.length - 1)].step;
  }

  update(state) {
    if (state && this.runId !== state.runId) { this.reset(); this.runId = state.runId; }
    const hs = state ? state.history : [];
    this.history = hs;
    const n = hs.length;
    const i = this.index == null ? n - 1 : Math.min(this.index, n - 1);
    const key = `${state ? state.runId : ""}|${n}|${i}|${this.index == null}|${state ? state.evals.n : 0}|${state ? state.snapshots : 0}`;
    if (key === this.key) return;
    this.key = key;
    this.slider.max = String(Math.max(0, n - 1));
    this.slider.value = String(Math.max(0, i));
    this.slider.disabled = n < 2;
    this.play.disabled = n < 2;
    this.live.disabled = this.index == null;
    if (!state) { this.readout.textContent = "No run selected."; return; }
    if (!n) { this.readout.textContent = "No stored snapshot yet."; return; }
    const snap = this.index == null && state.snapshot ? state.snapshot : hs[i];
    const v = this.index == null ? null : this.view(state);
    const ev = v ? v.lastEval : state.lastEval;
    const acc = ev && ev.test_accuracy != null ? ` · test accuracy ${fmtPct(ev.test_accuracy)} (eval at step ${fmtInt(ev.step)})` : "";
    const where = this.index == null ? "live" : `snapshot ${i + 1} of ${n}`;
    this.readout.textContent = `Step ${fmtInt(snap.step)} (${where})${acc}`;
    this.slider.setAttribute("aria-valuetext", `step ${snap.step}, snapshot ${i + 1} of ${n}`);
  }
}
