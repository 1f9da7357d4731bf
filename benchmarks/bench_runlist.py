"""The run list with many runs, in a real browser (issue 12: "fast with 500 runs").

    python -m benchmarks.bench_runlist          # about 20 seconds

Injects N synthetic finished runs into the page's run table (the same objects GET /api/runs
returns) and times, median of 15 each, in one browser: the first render (rows built), an update
render (rows kept, values refreshed, as twice a second while runs train), a search keystroke
and a sort, for N = 50 and 500 side by side, with the ratio.
"""
from __future__ import annotations

import statistics

from benchmarks.bench_page import CHROMIUM_ARGS, start_server
from tests.ui.test_runlist import FAKE

TIMED = """([n, what]) => {
  const app = window.__bpl.app, list = app.runList;
  const runs = [...app.runs.values()].sort((a, b) => b.created_at - a.created_at);
  const t0 = performance.now();
  if (what === 'first') { for (const r of list.rows.values()) r.tr.remove(); list.rows.clear(); list.render(runs, null, []); }
  else if (what === 'update') list.render(runs.map((r) => ({...r})), null, []);
  else if (what === 'search') { list.query = 'fake-4'; list.rerender(); list.query = ''; }
  else if (what === 'sort') { list.sortBy('lr'); }
  return performance.now() - t0;
}"""


def main() -> None:
    from playwright.sync_api import sync_playwright
    url, proc, _ = start_server()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            rows = {}
            for n in (50, 500):
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(url + "/")
                page.wait_for_function("window.__bpl && window.__bpl.app && window.__bpl.app.runList")
                page.evaluate(FAKE, n)
                page.wait_for_function(f"document.querySelectorAll('#run-list tbody tr').length >= {n}")
                rows[n] = {w: statistics.median(page.evaluate(TIMED, [n, w]) for _ in range(15))
                           for w in ("first", "update", "search", "sort")}
                page.close()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"{'render (ms, median of 15)':<28}{'50 runs':>10}{'500 runs':>10}{'ratio':>8}")
    for w in ("first", "update", "search", "sort"):
        a, b = rows[50][w], rows[500][w]
        print(f"{w:<28}{a:>10.2f}{b:>10.2f}{b / a if a else float('nan'):>8.1f}")


if __name__ == "__main__":
    main()
