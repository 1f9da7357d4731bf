"""The run list: search, sortable columns, config columns, multi-select with Compare and
Delete, and 500 runs, in Chromium against a real server."""
from __future__ import annotations

from playwright.sync_api import expect

from .test_defects import open_dashboard, shot

FAKE = """(n) => {
  const app = window.__bpl.app, now = Date.now() / 1000;
  for (let i = 0; i < n; i++) {
    const id = 'r-' + (0xf000000000 + i).toString(16);
    app.runs.set(id, {id, name: i === 7 ? 'needle-7' : 'fake-' + i, preset: i % 2 ? 'mlp' : 'lenet',
      status: 'completed', error: null, created_at: now - i * 60, started_at: now - i * 60,
      finished_at: now - i * 60 + 5, last_seq: 1, latest: null, weights_step: 1,
      final: {test_accuracy: 0.5 + (i % 50) / 100, test_loss: 1 - (i % 50) / 100, step: 10, train_seconds: 5},
      best_test_accuracy: null, summary: {total_steps: 10},
      config: {train: {optimizer: i % 3 ? 'sgd' : 'adam', lr: 0.001 * (1 + (i * 37) % 500), batch_size: 32}, dataset: {name: 'mnist'}}});
  }
  app.runListDirty = true; app.frame.request();
}"""


def test_search_sort_select_compare_and_delete(page, server, artifacts):
    a = server.create_run("mlp", epochs=1, train_limit=640, test_limit=100, name="pick-a")
    b = server.create_run("mlp", epochs=1, train_limit=640, test_limit=100, lr=0.01, name="pick-b")
    for r in (a, b):
        server.wait_status(r["id"], "completed")
    open_dashboard(page, server)
    page.evaluate(FAKE, 500)
    rows = page.locator("#run-list tbody tr")
    expect(page.locator(".run-tools")).to_contain_text("runs")
    wait = "document.querySelectorAll('#run-list tbody tr').length >= 502"
    page.wait_for_function(wait)
    # search
    page.get_by_label("Search runs").fill("needle")
    expect(rows).to_have_count(1)
    expect(page.locator(".run-tools")).to_contain_text("1 of")
    page.get_by_label("Search runs").fill("pick")
    expect(rows).to_have_count(2)
    # the config columns
    row_b = page.locator(f"#run-list tr[data-run-id='{b['id']}']")
    expect(row_b).to_contain_text("mlp")
    expect(row_b).to_contain_text("sgd")
    expect(row_b.locator("td").nth(7)).to_have_text("0.01")
    # sort by lr, ascending after a second click
    page.get_by_label("Search runs").fill("")
    page.get_by_role("button", name="Sort by lr", exact=True).click()      # descending
    expect(page.locator("th[aria-sort='descending']")).to_have_count(1)
    page.get_by_role("button", name="Sort by lr", exact=True).click()      # ascending
    first_lrs = [float(t) for t in rows.locator("td:nth-child(8)").all_inner_texts()[:5]]
    assert first_lrs == sorted(first_lrs) and first_lrs[0] == 0.001
    page.get_by_role("button", name="Sort by lr", exact=True).click()      # back to newest first
    expect(page.locator("th[aria-sort]")).to_have_count(0)
    # select the two real runs; Compare selected overlays them
    page.get_by_label("Search runs").fill("pick")
    page.get_by_role("checkbox", name=f"Select pick-a ({a['id']})").check()
    page.get_by_role("checkbox", name=f"Select pick-b ({b['id']})").check()
    expect(page.get_by_role("button", name="Delete selected (2)")).to_be_enabled()
    page.get_by_role("button", name="Compare selected").click()
    page.wait_for_function(f"window.__bpl.app.compare.length === 2")
    shot(page, artifacts, "runlist-500-search")
    # Delete selected removes both (after the confirmation)
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete selected (2)").click()
    expect(rows).to_have_count(0)
    listed = {r["id"] for r in server.call("GET", "/api/runs")["runs"]}
    assert a["id"] not in listed and b["id"] not in listed


def test_notes_and_tags_are_saved_shown_and_searched(page, server, artifacts):
    run = server.create_run("mlp", iterations=5, train_limit=200, test_limit=50, name="noted-run")
    other = server.create_run("mlp", iterations=5, train_limit=200, test_limit=50, name="baseline-named")
    for r in (run, other):
        server.wait_status(r["id"], "completed")
    page.goto(server.url + f"/#run={run['id']}")
    page.get_by_text("Notes and tags").click()
    page.get_by_label("Run notes").fill("lr 0.05 was too high: loss plateaus after step 3")
    page.get_by_label("Tags").fill("baseline, too-high ")
    page.get_by_role("button", name="Save notes").click()
    expect(page.locator("#notes-box")).to_contain_text("Saved.")
    stored = server.call("GET", f"/api/runs/{run['id']}")
    assert stored["tags"] == ["baseline", "too-high"] and stored["notes"].startswith("lr 0.05")
    row = page.locator(f"#run-list tr[data-run-id='{run['id']}']")
    expect(row.locator(".tag")).to_have_text(["baseline", "too-high"])
    # "#baseline" is the tag, not a word in a name; plain words search the notes too
    rows = page.locator("#run-list tbody tr")
    page.get_by_label("Search runs").fill("#baseline")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-run-id", run["id"])
    page.get_by_label("Search runs").fill("plateaus")
    expect(rows).to_have_count(1)
    page.get_by_label("Search runs").fill("")
    page.locator("#run-list").screenshot(path=str(artifacts / "runlist-notes-tags.png"))
    # a bad tag is refused with its field named, and nothing changes
    page.expected_errors = [r"status of 422"]          # the refused save, on purpose
    page.get_by_label("Tags").fill("x" * 41)
    page.get_by_role("button", name="Save notes").click()
    expect(page.locator("#notes-box")).to_contain_text("Not saved: tags.0")
    assert server.call("GET", f"/api/runs/{run['id']}")["tags"] == ["baseline", "too-high"]
    # after a reload the notes are there
    page.reload()
    page.get_by_text("Notes and tags (baseline, too-high)").click()
    expect(page.get_by_label("Run notes")).to_have_value("lr 0.05 was too high: loss plateaus after step 3")
