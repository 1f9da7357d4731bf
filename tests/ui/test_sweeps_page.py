"""The Sweeps page in Chromium against a real server: build a small sweep in the builder,
watch its trials appear and finish, brush a parallel-coordinates axis, open a trial's run;
and the page's pure logic (the sweep fold, Spearman, trial counts)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from playwright.sync_api import expect
from scipy.stats import spearmanr

from .test_defects import shot

SP = "window.__bplSweeps"


@pytest.fixture
def logic(page, server):
    page.goto(server.url + "/sweeps")

    def run(module, body, *args):
        return page.evaluate(f"async (args) => {{ const m = await import('/static/js/sweeps/{module}'); {body} }}", list(args))
    return run


def test_spearman_matches_scipy_with_ties(logic):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 20).tolist()
    y = (np.array(x) * 0.3 + rng.random(20)).tolist()
    got = logic("state.js", "return m.spearman(args[0], args[1]);", x, y)
    assert got == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert logic("state.js", "return m.spearman([1,1,1,1], [1,2,3,4]);") is None


def test_the_fold_and_the_trial_count(logic):
    evs = [{"type": "sweep_started", "seq": 1, "budget": 3},
           {"type": "trial_queued", "seq": 2, "number": 1, "params": {"train.lr": 0.1}, "run_id": "r-1"},
           {"type": "trial_started", "seq": 3, "number": 1, "params": {"train.lr": 0.1}},
           {"type": "trial_eval", "seq": 4, "number": 1, "eval": 1, "step": 5, "epoch": 1,
            "test_accuracy": 0.8, "test_loss": 0.5, "train_accuracy": None, "train_loss": None},
           {"type": "trial_eval", "seq": 4, "number": 1, "eval": 1, "step": 5, "epoch": 1,
            "test_accuracy": 0.8, "test_loss": 0.5, "train_accuracy": None, "train_loss": None},
           {"type": "trial_finished", "seq": 5, "number": 1, "status": "completed", "objective": 0.8,
            "params": {"train.lr": 0.1}, "run_id": "r-1"},
           {"type": "sweep_finished", "seq": 6, "status": "finished", "wall_seconds": 3, "counts": {}, "best": None}]
    out = logic("state.js", """let s = m.initialSweepState('s-x');
        for (const e of args[0]) s = m.reduceSweep(s, e);
        const t = s.trials.get(1);
        return {status: s.status, budget: s.budget, evals: t.evals.length, obj: m.objectiveOf(s, t), best: m.ranked(s)[0].number, last: s.lastSeq};""", evs)
    assert out == {"status": "finished", "budget": 3, "evals": 1, "obj": 0.8, "best": 1, "last": 6}
    counts = logic("builder.js", """return [
        m.trialCount({method: 'grid', parameters: {a: {values: [1, 2, 3]}, b: {values: [1, 2]}}}),
        m.trialCount({method: 'grid', parameters: {a: {min: 1, max: 2}}}),
        m.trialCount({method: 'random', max_trials: 7, parameters: {a: {min: 1, max: 2}}}),
        m.parseValues('0.01, adam, true, "x"')];""")
    assert counts == [6, None, 7, [0.01, "adam", True, "x"]]


def test_build_watch_brush_and_open_a_trial(page, server, artifacts):
    page.set_viewport_size({"width": 1280, "height": 900})
    page.expected_errors = [r"status of 422"]          # the bad range below, on purpose
    page.goto(server.url + "/sweeps")
    expect(page.get_by_label("Base preset")).to_have_value("mlp")
    page.get_by_label("Name").fill("ui-grid")
    page.get_by_label("Overrides").fill(json.dumps({"epochs": 1, "train_limit": 640, "test_limit": 100,
                                                    "eval_every": 5}))
    page.get_by_label("Parameter 1 values").fill("0.01, 0.05, 0.1")
    page.get_by_role("button", name="Add parameter").click()
    page.get_by_label("Parameter 2 path").fill("train.momentum")
    page.get_by_label("Parameter 2 values").fill("0.5, 0.9")
    expect(page.locator("#sb-count")).to_contain_text("6 trials, 2 at a time")
    # a bad range is shown next to its parameter
    page.get_by_label("Parameter 2 kind").select_option("range")
    page.get_by_label("Parameter 2 min").fill("0.9")
    page.get_by_label("Parameter 2 max").fill("0.5")
    page.get_by_label("Method").select_option("random")
    page.get_by_label("Max trials").fill("6")
    page.get_by_role("button", name="Start sweep").click()
    expect(page.locator(".sweep-param").nth(1)).to_contain_text("min")
    page.get_by_label("Parameter 2 kind").select_option("values")
    page.get_by_label("Method").select_option("grid")
    page.get_by_label("Max trials").fill("")
    page.get_by_role("button", name="Start sweep").click()
    page.wait_for_function("location.hash.startsWith('#id=s-')")
    expect(page.locator("#sweep-title")).to_have_text("ui-grid")
    rows = page.locator("table.trials tbody tr")
    expect(rows).to_have_count(6, timeout=120_000)           # trials appear as they are queued
    expect(page.get_by_role("status", name="Sweep status")).to_have_text("finished", timeout=180_000)
    expect(page.locator("table.trials tbody tr.best")).to_have_count(1)
    expect(page.locator(".importance table tr")).to_have_count(2)   # 6 completed >= 5
    shot(page, artifacts, "sweep-finished-1280")
    # brush the lr axis (the first) over its lower half: only lr 0.01 and 0.05 stay
    page.locator("canvas.pcoords").scroll_into_view_if_needed()
    axes = json.loads(page.locator("canvas.pcoords").get_attribute("data-axes"))
    box = page.locator("canvas.pcoords").bounding_box()
    ax = axes[0]
    assert ax["key"] == "train.lr"
    x = box["x"] + ax["x"]
    page.mouse.move(x, box["y"] + ax["top"] + ax["height"] * 0.45)
    page.mouse.down()
    page.mouse.move(x, box["y"] + ax["top"] + ax["height"] * 0.75, steps=5)
    page.mouse.move(x, box["y"] + ax["top"] + ax["height"] + 2, steps=5)
    page.mouse.up()
    expect(page.locator("#brush-note")).to_contain_text("inside the brushed ranges")
    lrs = {float(t) for t in rows.locator("td:nth-child(4)").all_inner_texts()}
    assert lrs and lrs < {0.01, 0.05, 0.1}, lrs
    shot(page, artifacts, "sweep-brushed-1280")
    # open a trial: the dashboard watches its run
    link = page.get_by_role("link", name="Open trial 1's run")
    href = link.get_attribute("href")
    run_id = href.split("#run=")[1]
    link.click()
    page.wait_for_function(f"window.__bpl && window.__bpl.watched() === '{run_id}'")
    expect(page.locator("#run-name")).to_contain_text("ui-grid")


def test_a_report_sub_sweep_shows_the_reports_numbers_beside_ours(page, server):
    """A sweep named as one of student-report's sub-sweeps (here "momentum", on a tiny base so
    it runs in seconds) gets a table of each value's loss, accuracy and time next to the
    report's own (REFERENCE-RESULTS.md: momentum 0.80 -> 96.8%, 0.90 -> 97.2%)."""
    sw = server.call("POST", "/api/sweeps", {
        "name": "momentum", "method": "grid", "max_parallel": 2,
        "base": {"preset": "digits8-mlp", "overrides": {"epochs": 1, "train_limit": 200, "test_limit": 100}},
        "parameters": {"train.momentum": {"values": [0.8, 0.9]}}})
    page.goto(server.url + f"/sweeps#id={sw['id']}")
    expect(page.get_by_role("status", name="Sweep status")).to_have_text("finished", timeout=120_000)
    card = page.locator("section:has(#t-report)")
    expect(card).to_be_visible()
    rows = card.locator("tbody tr")
    expect(rows).to_have_count(3)                      # the report's three momentum values
    expect(rows.nth(0)).to_contain_text("train.momentum = 0.8")
    expect(rows.nth(0)).to_contain_text("96.8%")
    expect(rows.nth(2)).to_contain_text("97.2%")
    ours = rows.nth(0).locator("td").nth(2).inner_text()
    assert ours.endswith("%") and ours != "–"          # our trial's accuracy beside theirs
    assert rows.nth(1).locator("td").nth(2).inner_text() == "–"   # 0.85 was not in this sweep
    # an ordinary sweep has no such card
    other = server.call("POST", "/api/sweeps", {
        "name": "other", "method": "grid", "max_parallel": 1,
        "base": {"preset": "digits8-mlp", "overrides": {"epochs": 1, "train_limit": 200, "test_limit": 100}},
        "parameters": {"train.momentum": {"values": [0.8]}}})
    page.goto(server.url + f"/sweeps#id={other['id']}")
    expect(page.get_by_role("status", name="Sweep status")).to_have_text("finished", timeout=120_000)
    expect(page.locator("section:has(#t-report)")).to_be_hidden()


def test_trial_one_can_be_the_base_design(page, server, artifacts):
    """The builder's "Trial 1 is the base design" box: a random search over lr from the mlp
    preset (lr 0.05) runs lr 0.05 first."""
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(server.url + "/sweeps")
    expect(page.get_by_label("Base preset")).to_have_value("mlp")
    page.get_by_label("Name").fill("from-base")
    page.get_by_label("Overrides").fill(json.dumps({"epochs": 1, "train_limit": 320, "test_limit": 100}))
    page.get_by_label("Parameter 1 kind").select_option("range")
    page.get_by_label("Parameter 1 min").fill("0.001")
    page.get_by_label("Parameter 1 max").fill("0.3")
    page.get_by_label("Method").select_option("random")
    page.get_by_label("Max trials").fill("2")
    page.get_by_label("Trial 1 is the base design").check()
    shot(page, artifacts, "sweep-builder-from-base-1280")
    page.get_by_role("button", name="Start sweep").click()
    page.wait_for_function("location.hash.startsWith('#id=s-')")
    expect(page.get_by_role("status", name="Sweep status")).to_have_text("finished", timeout=120_000)
    sid = page.evaluate("location.hash").split("=")[1]
    sweep = server.call("GET", f"/api/sweeps/{sid}")
    assert sweep["spec"]["start_from_base"] is True
    first = next(t for t in sweep["trials"] if t["number"] == 1)
    assert first["params"] == {"train.lr": 0.05}
    # the table marks it as the base design
    expect(page.locator("table.trials tbody tr[data-trial='1']")).to_contain_text("(base)")
    expect(page.locator("table.trials tbody tr[data-trial='2']")).not_to_contain_text("(base)")
    page.locator("table.trials").scroll_into_view_if_needed()
    shot(page, artifacts, "sweep-from-base-trials-1280")
