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
    this.metrics = {
      drawMs: new Ring(),         // our work per frame
      frameGapMs: new Ring(),     // time between consecutive rAF callbacks while busy
      latencyMs: new Ring(),      // event received -> drawn
      frames: 0,
    };
    this.drawnSeq = null;         // {seq: wall ms} when ?bench=1 (for end-to-end latency)
    this.lastFrameAt = 0;
    this.tick = this.tick.bind(this);
  }

  /** Note an event (for latency) and ask for a frame. */
  event(seq) {
    const t = performance.now();
    this.received.push(t);
    if (this.drawnSeq && seq != null) (this.pendingSeqs ||= []).push(seq);
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
    if (this.drawnSeq && this.pendingSeqs) {
      const wall = performance.timeOrigin + t1;
      for (const s of this.pendingSeqs) this.drawnSeq[s] = wall;
      this.pendingSeqs.length = 0;
    }
  }

  summary() {
    const pct = (arr, p) => {
      if (!arr.length) return null;
      const s = arr.slice().sort((a, b) => a - b);
      return s[Math.min(s.length - 1, Math.floor(p * s.length))];
    };
    const d = this.metrics.drawMs.values(), g = this.metrics.frameGapMs.values(), l = this.metrics.latencyMs.values();
    return {
      frames: this.metrics.frames,
      drawMsP50: pct(d, 0.5), drawMsP95: pct(d, 0.95), drawMsMax: d.length ? Math.max(...d) : null,
      frameGapMsP50: pct(g, 0.5), frameGapMsP95: pct(g, 0.95),
      latencyMsP50: pct(l, 0.5), latencyMsP95: pct(l, 0.95),
    };
  }

  resetMetrics() {
    this.metrics.drawMs.clear(); this.metrics.frameGapMs.clear(); this.metrics.latencyMs.clear();
  }
}
