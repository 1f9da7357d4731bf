// Data flows one way, over websockets (server/API.md). A RunStream follows one run's events,
// which arrive as frames holding a JSON array of events, oldest first (at most one frame per
// ~25 ms); the server never thins them (a client that falls behind is sent the rest from
// storage). It reconnects with ?after_seq=<last seq folded> and exponential backoff, so a
// dropped connection or a 1001 server restart resumes with no gap and no duplicate.

import { wsUrl } from "./api.js";

const BACKOFF_MIN = 250, BACKOFF_MAX = 8000;

export class RunStream {
  /**
   * @param {string} runId
   * @param {() => number} lastSeq   the newest seq already folded (read at every (re)connect)
   * @param {(ev: object) => void} onEvent   called once per event, in order
   * @param {(conn: {state: string, retryIn?: number}) => void} onConn
   * @param {(code) => boolean} isDone  true when the run has finished and nothing more will come
   *                                   (the server closes with 1000 after a finished run)
   */
  constructor(runId, { lastSeq, onEvent, onConn = () => {}, isDone = () => false, onRefused = () => {}, base = "/ws/runs/" }) {
    Object.assign(this, { runId, lastSeq, onEvent, onConn, isDone, onRefused, base });   // base "/ws/sweeps/": a sweep's stream
    this.ws = null;
    this.closed = false;
    this.backoff = BACKOFF_MIN;
    this.timer = null;
    this.connect();
  }

  connect() {
    if (this.closed) return;
    const ws = new WebSocket(wsUrl(`${this.base}${encodeURIComponent(this.runId)}?after_seq=${this.lastSeq()}`));
    this.ws = ws;
    this.onConn({ state: "connecting" });
    let opened = false;
    ws.onopen = () => { opened = true; this.onConn({ state: "live" }); };
    ws.onmessage = (msg) => {
      this.backoff = BACKOFF_MIN; // data flowed: the link is healthy again
      let evs;
      try { evs = JSON.parse(msg.data); } catch { return; }
      if (!Array.isArray(evs)) return;   // every frame is an array of events
      for (const ev of evs) if (ev && typeof ev === "object") this.onEvent(ev);
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      // Done when the run has finished (isDone; the server then closes with 1000, or 1011 when
      // its events could not be stored), never on 1013. The server refuses an unknown run, a
      // bad token or Origin at the handshake (HTTP 404/401/403: a close before open, see
      // onRefused) and never sends 4403/4404; 1008 only comes from a server that cannot send
      // such a refusal. Anything else (1013 too slow, 1001 shutdown, a lost link) reconnects.
      if (this.closed || e.code === 1008 || e.code === 4404 || e.code === 4403 || (this.isDone(e.code) && e.code !== 1013)) {
        this.onConn({ state: this.isDone(e.code) ? "done" : "closed", code: e.code });
        return;
      }
      // refused at the handshake (the server answers 404 for an unknown run): let the owner
      // check whether the run still exists; it closes this stream if not
      if (!opened) this.onRefused();
      const wait = Math.min(BACKOFF_MAX, this.backoff) * (0.75 + Math.random() * 0.5);
      this.backoff = Math.min(BACKOFF_MAX, this.backoff * 2);
      this.onConn({ state: "reconnecting", retryIn: wait });
      this.timer = setTimeout(() => this.connect(), wait);
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  /** Drop the connection now and reconnect (used by tests and after the tab wakes). */
  kick() {
    if (this.ws) this.ws.close(4000, "reconnect");
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.ws) { const ws = this.ws; this.ws = null; ws.close(1000); }
  }
}

/** WS /ws/runs: run_created / run_updated / run_deleted for every run, with the same backoff. */
export class RunsFeed {
  constructor({ onMessage, onConn = () => {}, onReconnect = () => {} }) {
    Object.assign(this, { onMessage, onConn, onReconnect });
    this.backoff = BACKOFF_MIN;
    this.ws = null;
    this.everOpened = false;
    this.connect();
  }
  connect() {
    const ws = new WebSocket(wsUrl("/ws/runs"));
    this.ws = ws;
    ws.onopen = () => {
      this.onConn({ state: "live" });
      // Changes made while we were away are not replayed on this socket: refetch the list.
      if (this.everOpened) this.onReconnect();
      this.everOpened = true;
    };
    ws.onmessage = (msg) => {
      this.backoff = BACKOFF_MIN;
      try { this.onMessage(JSON.parse(msg.data)); } catch { /* ignore malformed */ }
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      const wait = Math.min(BACKOFF_MAX, this.backoff) * (0.75 + Math.random() * 0.5);
      this.backoff = Math.min(BACKOFF_MAX, this.backoff * 2);
      this.onConn({ state: "reconnecting", retryIn: wait });
      setTimeout(() => this.connect(), wait);
    };
  }
}
