// Redraws are batched: any number of events between two frames cause one draw, in
// requestAnimationFrame. The loop also keeps the numbers the benchmark reads
// (window.__bpl.metrics): the time spent drawing each frame and event-to-pixel latency.

const RING = 4096;

class Ring {
  constructor(n = RING) { this.a = new Float64Array(n); this.n = 0; }
  push(v) { this.a[this.n % this.a.length] = v; this.n++; }
  values() { return Array.from(this.a.subarray(0, Math.min(this.n, this.a.length))); }
  clear() { this.n = 0; }
}

export class FrameLoop {
  constructor(draw) {
    this.draw = draw;             // () => void, draws everything that is dirty
    this.pending = false;
    this.received = [];           // performance.now() of events not yet drawn
    this.emitted = [];            // their engine emit times (unix ms), when known
    this.metrics = {
      drawMs: new Ring(),         // our work per frame
      frameGapMs: new Ring(),     // time between consecutive rAF callbacks while busy
      latencyMs: new Ring(),      // event received by the page -> drawn
      e2eMs: new Ring(),          // event emitted by the engine (its "ts") -> drawn
      frames: 0,
      foldMs: 0,                  // time spent folding events (after JSON parsing)
      since: performance.now(),
    };
    this.lastFrameAt = 0;
    this.tick = this.tick.bind(this);
  }

  /** Note an event (for latency) and ask for a frame. `ts`: the engine's emit time (unix s). */
  event(ts) {
    const t = performance.now();
    this.received.push(t);
    if (typeof ts === "number") this.emitted.push(ts * 1000);
    this.request();
  }

  request() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(this.tick);
  }

  tick(ts) {
    this.pending = false;
    const t0 = performance.now();
    if (this.lastFrameAt && ts - this.lastFrameAt < 1000) this.metrics.frameGapMs.push(ts - this.lastFrameAt);
    this.lastFrameAt = ts;
    this.draw();
    const t1 = performance.now();
    this.metrics.drawMs.push(t1 - t0);
    this.metrics.frames++;
    for (const r of this.received) this.metrics.latencyMs.push(t1 - r);
    this.received.length = 0;
    // the engine stamps events with the wall clock (time.time()); compare with the same clock
    const wall = Date.now();
    for (const e of this.emitted) this.metrics.e2eMs.push(wall - e);
    this.emitted.length = 0;
  }

  /** A stopwatch for the parts of one draw: t("name") records the time since the last call. */
  timer() {
    let last = performance.now();
    const parts = (this.parts ||= new Map());
    return (name) => {
      const now = performance.now();
      let r = parts.get(name);
      if (!r) { r = new Ring(1024); parts.set(name, r); }
      r.push(now - last);
      last = now;
    };
  }

  summary() {
    const pct = (arr, p) => {
      if (!arr.length) return null;
      const s = arr.slice().sort((a, b) => a - b);
      return s[Math.min(s.length - 1, Math.floor(p * s.length))];
    };
    const d = this.metrics.drawMs.values(), g = this.metrics.frameGapMs.values(), l = this.metrics.latencyMs.values();
    const e = this.metrics.e2eMs.values();
    return {
      frames: this.metrics.frames,
      seconds: (performance.now() - this.metrics.since) / 1000,
      foldMs: this.metrics.foldMs,
      drawMsP50: pct(d, 0.5), drawMsP95: pct(d, 0.95), drawMsMax: d.length ? Math.max(...d) : null,
      frameGapMsP50: pct(g, 0.5), frameGapMsP95: pct(g, 0.95),
      latencyMsP50: pct(l, 0.5), latencyMsP95: pct(l, 0.95),
      e2eMsP50: pct(e, 0.5), e2eMsP95: pct(e, 0.95), e2eSamples: e.length,
      partsMsP95: Object.fromEntries([...(this.parts || new Map())].map(([k, r]) => [k, pct(r.values(), 0.95)])),
      partsMsMax: Object.fromEntries([...(this.parts || new Map())].map(([k, r]) => [k, Math.max(0, ...r.values())])),
    };
  }

  resetMetrics() {
    this.metrics.drawMs.clear(); this.metrics.frameGapMs.clear(); this.metrics.latencyMs.clear();
    this.metrics.e2eMs.clear(); this.metrics.frames = 0; this.metrics.foldMs = 0;
    this.metrics.since = performance.now();
    if (this.parts) for (const r of this.parts.values()) r.clear();
  }
}
