"""The dashboard's speed in a real browser (Debian's Chromium driven by Playwright).

    python -m benchmarks.bench_page                 # starts its own server; about 3 minutes
    python -m benchmarks.bench_page --points 5000   # a shorter streaming run
    python -m benchmarks.bench_page --url http://127.0.0.1:8000   # against a running server

Three numbers:

1. **Load to interactive**: from navigation start to the page's `bpl-interactive` mark (presets,
   datasets and runs fetched, the default preset's design validated by the server, Start
   enabled), in a fresh browser context each time (nothing cached), median of `--loads`.
2. **Frame time while streaming** a `lenet` run (batch 1, so ~200 steps/s reach the page) until
   the loss chart holds `--points` points (default 20,000): the page's requestAnimationFrame
   timing (`window.__bpl.metrics()`): our drawing work per frame, and the interval between
   frames while frames are requested continuously (the whole frame: script, layout, paint).
   Measured over the last 2,000 points before the target, then the run is stopped.
3. **Event-to-pixel latency**: from the engine emitting a `progress` event (its `ts`, stamped
   in the worker) to the end of the animation frame that drew it; p50 and p95 over the same
   window. Also the page-only part (websocket message received -> drawn).

Needs /usr/bin/chromium and `pip install playwright` (browsers are never downloaded).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def call(url, method="GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
        return json.loads(raw) if raw else None


def start_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = Path(tempfile.mkdtemp(prefix="bench-page-"))
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--port", str(port),
                             "--data-dir", str(tmp / "data"), "--max-workers", "1"],
                            cwd=ROOT, stdout=open(tmp / "server.log", "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            call(url + "/api/health")
            return url, proc, tmp
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start: " + (tmp / "server.log").read_text()[-2000:])


def load_to_interactive(browser, url, loads):
    out = []
    for _ in range(loads):
        ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        page = ctx.new_page()
        page.goto(url + "/")
        page.wait_for_function("window.__bpl && window.__bpl.interactiveAt() !== null", timeout=30000)
        t = page.evaluate("""() => {
            const nav = performance.getEntriesByType('navigation')[0];
            const res = performance.getEntriesByType('resource');
            return {interactive: window.__bpl.interactiveAt(),
                    dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
                    bytes: nav.transferSize + res.reduce((a, r) => a + (r.transferSize || 0), 0),
                    requests: 1 + res.length};
        }""")
        out.append(t)
        ctx.close()
    return out


def stream(browser, url, points, out_png):
    run = call(url + "/api/runs", "POST", {
        "preset": "lenet", "name": "bench-page",
        "overrides": {"iterations": points + 4000, "batch_size": 1, "train_limit": 20000,
                      "test_limit": 500, "eval_every": 2000, "schedule": {"type": "constant"},
                      "lr": 0.005}})
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    page.goto(f"{url}/#run={run['id']}")
    window_start = max(0, points - 2000)
    t0 = time.monotonic()
    page.wait_for_function(f"(window.__bpl.info() || {{points: 0}}).points >= {window_start}",
                           timeout=1_800_000, polling=500)
    page.evaluate("window.__bpl.resetMetrics()")
    t1 = time.monotonic()
    page.wait_for_function(f"window.__bpl.info().points >= {points}", timeout=600_000, polling=500)
    t2 = time.monotonic()
    m = page.evaluate("window.__bpl.metrics()")
    info = page.evaluate("window.__bpl.info()")
    page.screenshot(path=str(out_png))
    call(f"{url}/api/runs/{run['id']}/stop", "POST")
    ctx.close()
    return {"metrics": m, "info": info, "rate": 2000 / (t2 - t1) if t2 > t1 else None,
            "seconds_to_window": t1 - t0}


SYNTHETIC = """async ([start, snap, evalEv, points, rate]) => {
  // the page alone: events generated in the page at `rate` per second, no server, no training
  const id = 'r-synthetic';
  let seq = 0, step = 0;
  const feed = (evs) => window.__bpl.feed(id, evs.map((e) => ({...e, seq: ++seq, ts: Date.now() / 1000})));
  const progress = () => { step++; return {type: 'progress', step, epoch: 1 + Math.floor(step / 938),
      loss: 2.3 * Math.exp(-step / 3000) + 0.1 * Math.random(), accuracy: Math.min(1, 0.1 + step / 20000 + 0.05 * Math.random()),
      lr: 0.01, images_per_sec: 500, step_ms: 2, elapsed: step / 500}; };
  feed([start, snap]);
  const pre = Math.max(0, points - 2000);
  while (step < pre) {
    const chunk = [];
    for (let i = 0; i < 1000 && step < pre; i++) { chunk.push(progress()); if (step % 2000 === 0) chunk.push({...evalEv, step}); }
    feed(chunk);
    await new Promise((r) => requestAnimationFrame(r));
  }
  await new Promise((r) => setTimeout(r, 500));
  window.__bpl.resetMetrics();
  let lastSnap = performance.now();
  await new Promise((resolve) => {
    const t0 = performance.now();
    const timer = setInterval(() => {
      const due = Math.floor((performance.now() - t0) / 1000 * rate) - (step - pre);
      const evs = [];
      for (let i = 0; i < due && step < points; i++) { evs.push(progress()); if (step % 2000 === 0) evs.push({...evalEv, step}); }
      if (performance.now() - lastSnap > 250) { evs.push({...snap, step}); lastSnap = performance.now(); }
      if (evs.length) feed(evs);
      if (step >= points) { clearInterval(timer); setTimeout(resolve, 200); }
    }, 4);
  });
  return window.__bpl.metrics();
}"""


def synthetic(browser, url, points, rate=500):
    """Frame time with the page alone: lenet-shaped events generated in the page."""
    sys.path.insert(0, str(ROOT))
    from engine import Trainer, apply_overrides, get_preset
    got = []
    cfg = apply_overrides(get_preset("lenet"), {"iterations": 2, "train_limit": 256,
                                                "test_limit": 256, "schedule": {"type": "constant"}})
    Trainer(cfg, emit=lambda e: got.append(e.to_json_dict())).run()
    first = {t: next(e for e in got if e["type"] == t) for t in ("run_started", "snapshot", "eval")}
    first["run_started"]["total_steps"] = points
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    page.goto(url + "/")
    page.wait_for_function("window.__bpl && window.__bpl.interactiveAt() !== null", timeout=30000)
    m = page.evaluate(SYNTHETIC, [first["run_started"], first["snapshot"], first["eval"], points, rate])
    ctx.close()
    return m


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", help="a running server (default: start one with a temporary data dir)")
    ap.add_argument("--points", type=int, default=20000)
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--chromium", default=os.environ.get("BACKPROP_CHROMIUM", "/usr/bin/chromium"))
    ap.add_argument("--out", default=os.environ.get("BACKPROP_ARTIFACTS", tempfile.gettempdir()))
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    proc = tmp = None
    load_before = os.getloadavg()[0]
    url = args.url
    if not url:
        url, proc, tmp = start_server()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            loads = load_to_interactive(browser, url, args.loads)
            png = Path(args.out) / "bench-page-stream.png"
            s = stream(browser, url, args.points, png)
            syn = synthetic(browser, url, args.points)
            browser.close()
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=20)
            shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()[0]
    med = lambda k: statistics.median(x[k] for x in loads)  # noqa: E731
    print(f"machine: {os.cpu_count()} cores, load average {load_before:.1f} before, "
          f"{load_after:.1f} after (the browser, the server and the training worker share them)")
    m = s["metrics"]
    print(f"load to interactive: median {med('interactive'):.0f} ms over {len(loads)} cold loads "
          f"(DOMContentLoaded {med('dcl'):.0f} ms, load {med('load'):.0f} ms, "
          f"{loads[0]['requests']} requests, {loads[0]['bytes'] / 1024:.0f} KiB)")
    print(f"streaming lenet, {s['info']['points']:,} points on the chart "
          f"(window: the last 2,000 points, {s['rate']:.0f} points/s arriving):")
    print(f"  drawing work per frame: p50 {m['drawMsP50']:.2f} ms, p95 {m['drawMsP95']:.2f} ms, "
          f"max {m['drawMsMax']:.1f} ms ({m['frames']} frames)")
    print(f"  frame interval:         p50 {m['frameGapMsP50']:.1f} ms, p95 {m['frameGapMsP95']:.1f} ms")
    print(f"  event-to-pixel (engine emit -> drawn): p50 {m['e2eMsP50']:.0f} ms, "
          f"p95 {m['e2eMsP95']:.0f} ms ({m['e2eSamples']} events)")
    print(f"  page only (message received -> drawn): p50 {m['latencyMsP50']:.1f} ms, "
          f"p95 {m['latencyMsP95']:.1f} ms")
    print("  p95 per part of a draw (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in m["partsMsP95"].items()))
    print(f"the page alone ({args.points:,} lenet-shaped points generated in the page at 500/s, "
          f"no server or training competing for the cores):")
    print(f"  drawing work per frame: p50 {syn['drawMsP50']:.2f} ms, p95 {syn['drawMsP95']:.2f} ms, "
          f"max {syn['drawMsMax']:.1f} ms ({syn['frames']} frames in {syn['seconds']:.1f} s)")
    print(f"  frame interval:         p50 {syn['frameGapMsP50']:.1f} ms, p95 {syn['frameGapMsP95']:.1f} ms")
    print(f"  event-to-pixel:         p50 {syn['e2eMsP50']:.1f} ms, p95 {syn['e2eMsP95']:.1f} ms")
    print(f"  screenshot: {png}")
    print(json.dumps({"loads": loads, "stream": s, "synthetic": syn}, default=str))


if __name__ == "__main__":
    main()
