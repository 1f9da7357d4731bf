"""Fork from here, lineage and the fork from before a divergence, in Chromium."""
from __future__ import annotations

from playwright.sync_api import expect

from .test_defects import open_dashboard, set_live_lr, shot, wait_state

APP = "window.__bpl.app"


def click_chart_at(page, selector, fraction):
    over = page.locator(f"{selector} .u-over")
    over.scroll_into_view_if_needed()
    box = over.bounding_box()
    x, y = box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.move(x + 1, y)
    page.mouse.click(x + 1, y)


def test_fork_from_a_chart_point_then_a_fork_of_the_fork(page, server, artifacts):
    parent = server.create_run("mlp", epochs=3, train_limit=2000, test_limit=300, eval_every=20,
                               name="parent")
    server.wait_status(parent["id"], "completed")
    open_dashboard(page, server, parent["id"])
    wait_state(page, "s.status === 'completed' && s.evals.n >= 5")
    click_chart_at(page, "#chart-loss", 0.5)
    dialog = page.locator("dialog.fork-dialog")
    expect(dialog).to_be_visible()
    step = int(page.locator("#fork-step").input_value())
    evals = page.evaluate(f"{APP}.states.get('{parent['id']}').evals.step")
    assert step in evals and 0 < step < 96
    expect(page.locator("#fork-lr")).to_have_value("0.05")        # the parent's values
    page.locator("#fork-lr").fill("0.01")
    shot(page, artifacts, "fork-dialog")
    dialog.get_by_role("button", name="Fork").click()
    expect(dialog).to_be_hidden()
    page.wait_for_function(f"window.__bpl.watched() && window.__bpl.watched() !== '{parent['id']}'")
    child_id = page.evaluate("window.__bpl.watched()")
    child = server.call("GET", f"/api/runs/{child_id}")
    assert child["parent_id"] == parent["id"] and child["fork_step"] == step
    assert child["config"]["train"]["lr"] == 0.01
    wait_state(page, "s.status === 'completed'")
    first = page.evaluate(f"{APP}.states.get('{child_id}').progress.step.get(0)")
    assert first == step + 1
    # the parent's points up to the fork are drawn before the child's, faded
    wait_state(page, f"{APP}.lineage('loss').step.length === {step}")
    # the run list shows the child under its parent
    rows = page.locator("#run-list tbody tr")
    ids = rows.evaluate_all("trs => trs.map(t => t.dataset.runId)")
    assert ids.index(child_id) == ids.index(parent["id"]) + 1
    expect(page.locator(f"#run-list tr[data-run-id='{child_id}']")).to_contain_text(
        f"fork of parent at step {step}")
    shot(page, artifacts, "fork-child-watched")
    # a fork of the fork, from the accuracy chart
    click_chart_at(page, "#chart-accuracy", 0.9)
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Fork").click()
    page.wait_for_function(f"window.__bpl.watched() !== '{child_id}'")
    grand = server.call("GET", f"/api/runs/{page.evaluate('window.__bpl.watched()')}")
    assert grand["parent_id"] == child_id and grand["fork_step"] > step
    wait_state(page, "s.status === 'completed'")
    wait_state(page, f"{APP}.lineage('loss').step.length === {grand['fork_step']}")


def test_a_diverged_run_forks_from_its_last_good_checkpoint(page, server, artifacts):
    run = server.create_run("mlp", epochs=1000, train_limit=2000, test_limit=300, eval_every=20,
                            lr=0.1, name="to-diverge")
    open_dashboard(page, server, run["id"])
    wait_state(page, "s.evals.n >= 2")
    set_live_lr(page, "1000000")
    fork = page.get_by_role("button", name="Fork from step")
    expect(fork).to_contain_text("with lr / 10 (1.00e+5)")
    d = next(e for e in server.stored_events(run["id"]) if e["type"] == "diverged")
    fork.click()
    page.wait_for_function(f"window.__bpl.watched() !== '{run['id']}'")
    child = server.call("GET", f"/api/runs/{page.evaluate('window.__bpl.watched()')}")
    assert child["parent_id"] == run["id"] and child["fork_step"] < d["step"]
    assert child["config"]["train"]["lr"] == 1e5
    server.call("POST", f"/api/runs/{child['id']}/stop")
