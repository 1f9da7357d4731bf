"""Issue 12's practitioner charts and form, in Chromium against a real server (see conftest.py):
the x-axis choice, the default smoothing, "Ignore outliers", the accuracy range, the compare
chart's different-losses warning, zoom kept in sync, metrics export, remembered settings and
the Advanced form fields. No timed assertions: every wait is for a condition.
"""
from __future__ import annotations

import csv
import io
import json
import re

import pytest
from playwright.sync_api import expect

from .test_defects import open_dashboard, shot, wait_state

APP = "window.__bpl.app"


@pytest.fixture(scope="module")
def two_runs(server):
    """Two finished mlp runs on 1,500 images (24 steps of 64): cross-entropy and quadratic."""
    a = server.create_run("mlp", epochs=1, train_limit=1500, eval_every=8, name="xent-run")
    b = server.create_run("mlp", epochs=1, train_limit=1500, eval_every=8, loss="mse", name="mse-run")
    for r in (a, b):
        server.wait_status(r["id"], ("completed",), timeout=180)
    return a, b


def chart_x(page, i: int) -> list:
    """The x values the run chart i (0 loss, 1 accuracy, 2 lr) draws."""
    return page.evaluate(f"Array.from({APP}.charts[{i}].u.data[0])")


def feed_spiky_run(page):
    """A page-only run (no server behind it): loss 1 with one spike of 1000, test accuracy
    between 90% and 98%."""
    page.evaluate("""() => {
      const ev = [{type: "run_started", config: {train: {batch_size: 10, lr: 0.1}, model: [], dataset: {name: "mnist"}},
                   summary: {}, total_steps: 200, steps_per_epoch: 20, train_size: 200, test_size: 100,
                   class_names: ["a", "b"], start_step: 0}];
      for (let s = 1; s <= 200; s++) {
        ev.push({type: "progress", step: s, epoch: Math.ceil(s / 20), loss: s === 50 ? 1000 : 1 + 0.01 * (s % 7),
                 accuracy: 0.9 + 0.0004 * s, lr: 0.1, images_per_sec: 1, step_ms: 1, elapsed: s / 10});
        if (s % 20 === 0) ev.push({type: "eval", step: s, epoch: s / 20, train_loss: 1, train_accuracy: 0.9 + 0.0004 * s,
                                   test_loss: 1, test_accuracy: 0.9 + 0.0004 * s, confusion: [[9, 1], [1, 9]], misclassified: []});
      }
      let seq = 0;
      window.__bpl.feed("r-spiky", ev.map((e) => ({...e, seq: ++seq, ts: Date.now() / 1000})));
    }""")
    page.wait_for_function(f"{APP}.charts[0].u.data[0].length === 200 && {APP}.charts[1].u.data[0].length === 200")


def test_x_axis_smoothing_outliers_and_accuracy_range(page, server, artifacts, two_runs):
    a, _ = two_runs
    open_dashboard(page, server, a["id"])
    wait_state(page, "s.status === 'completed' && s.progress.n === 24")
    # the default smoothing shows a smoothed line apart from the raw one, and says why 0.95
    smoothing = page.get_by_label("Smoothing")
    expect(smoothing).to_have_value("0.95")
    expect(smoothing).to_have_attribute("title", re.compile(r"0\.6 applies per logged point.*0\.95 per step"))
    readout = page.locator("#chart-loss .readout")
    expect(readout).to_contain_text("smoothed")
    raw, smooth = re.search(r"batch loss (\S+), smoothed (\S+)", readout.inner_text()).groups()
    assert raw != smooth
    page.wait_for_function(f"{APP}.charts[0].u.data[0].length === 24")
    assert chart_x(page, 0) == list(range(1, 25))

    # x axis: epoch (fraction of the 24 steps of an epoch), images seen, wall time; all charts
    xaxis = page.get_by_label("X axis")
    xaxis.select_option("epoch")
    page.wait_for_function(f"{APP}.charts[0].u.data[0].at(-1) === 1 && {APP}.charts[1].u.data[0].at(-1) === 1")
    assert chart_x(page, 0)[0] == pytest.approx(1 / 24)
    expect(page.locator("#chart-loss .u-legend .u-series").first).to_contain_text("Epoch")
    shot(page, artifacts, "practitioner-epoch-axis")
    xaxis.select_option("images")
    page.wait_for_function(f"{APP}.charts[0].u.data[0].at(-1) === 1500")
    xs = chart_x(page, 0)
    assert xs[0] == 64 and xs[-2] == 23 * 64        # the last batch holds the 28 left over
    xaxis.select_option("time")
    page.wait_for_function(f"{APP}.charts[0].u.data[0][0] < 1 && {APP}.charts[0].u.data[0].at(-1) > 0")
    xs = chart_x(page, 0)
    assert xs == sorted(xs) and xs[0] > 0
    expect(page.locator("#chart-loss .u-legend .u-series").first).to_contain_text("Wall time")
    # the choice is remembered
    xaxis.select_option("epoch")
    page.reload()
    expect(page.get_by_label("X axis")).to_have_value("epoch")
    page.wait_for_function(f"{APP}.charts[0].u.data[0].at(-1) === 1")
    page.get_by_label("X axis").select_option("step")

    # ignore outliers: one spike of 1000 among losses near 1 no longer sets the y range
    feed_spiky_run(page)
    ymax = lambda i: page.evaluate(f"{APP}.charts[{i}].u.scales.y.max")
    assert ymax(0) >= 1000
    # accuracy's range follows the data (90%..98%), not 0..100%
    acc_min = page.evaluate(f"{APP}.charts[1].u.scales.y.min")
    assert 0.8 <= acc_min < 0.9 and ymax(1) <= 1
    page.get_by_label("Ignore outliers").check()
    page.wait_for_function(f"{APP}.charts[0].u.scales.y.max < 2")
    assert page.evaluate(f"{APP}.charts[0].u.scales.y.min") > 0.5
    shot(page, artifacts, "practitioner-ignore-outliers")
    page.get_by_label("Ignore outliers").uncheck()
    page.wait_for_function(f"{APP}.charts[0].u.scales.y.max >= 1000")


def settled_box(page, sel: str) -> dict:
    """The element's box once it has stayed put for 5 animation frames: a card that reflows
    as the run's data arrives (a scrollbar appearing, say) would move a drag's target."""
    page.evaluate("""(sel) => new Promise((done) => {
      let last = "", same = 0;
      const tick = () => {
        const r = document.querySelector(sel).getBoundingClientRect();
        const k = [r.x, r.y, r.width, r.height].join();
        same = k === last ? same + 1 : 0;
        last = k;
        if (same >= 5) done(); else requestAnimationFrame(tick);
      };
      tick();
    })""", sel)
    return page.locator(sel).bounding_box()


def drag(page, sel: str, f0: float, f1: float):
    box = settled_box(page, sel)
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * f0, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * (f0 + f1) / 2, y)
    page.mouse.move(box["x"] + box["width"] * f1, y)
    page.mouse.up()


def test_zoom_is_shared_by_the_run_charts(page, server, artifacts, two_runs):
    a, _ = two_runs
    open_dashboard(page, server, a["id"])
    wait_state(page, "s.progress.n === 24 && !!s.finished")
    page.wait_for_function(f"{APP}.charts.every(c => c.u.data[0].length === 24)")
    drag(page, "#chart-loss .u-over", 0.3, 0.7)
    page.wait_for_function(f"{APP}.charts.every(c => c.u.data[0].length > 0 && c.u.data[0].length < 24)")
    ranges = [chart_x(page, i) for i in range(3)]
    assert ranges[0] == ranges[1] == ranges[2] and 1 < ranges[0][0] and ranges[0][-1] < 24
    for c in ("#chart-loss", "#chart-accuracy", "#chart-lr"):
        expect(page.locator(c).get_by_role("button", name="Reset zoom")).to_be_visible()
    # Reset on the accuracy chart resets every chart
    page.locator("#chart-accuracy").get_by_role("button", name="Reset zoom").click()
    page.wait_for_function(f"{APP}.charts.every(c => c.u.data[0].length === 24)")
    for c in ("#chart-loss", "#chart-accuracy", "#chart-lr"):
        expect(page.locator(c).get_by_role("button", name="Reset zoom")).to_be_hidden()


def test_compare_warns_when_the_losses_differ(page, server, artifacts, two_runs):
    a, b = two_runs
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.goto(server.url + f"/#run={a['id']}&compare={a['id']}")
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled()
    warn = page.locator("#compare .warn-note")
    expect(page.locator("#compare .u-legend").first.locator(".u-series")).to_have_count(2)
    expect(warn).to_be_hidden()
    page.get_by_role("checkbox", name=f"Compare mse-run ({b['id']})").check()
    expect(warn).to_be_visible()
    expect(warn).to_contain_text("different losses")
    expect(warn).to_contain_text("quadratic (MSE): mse-run")
    expect(warn).to_contain_text("cross-entropy: xent-run")
    # the compare charts follow the x axis too
    page.get_by_label("X axis").select_option("epoch")
    page.wait_for_function(f"{APP}.compareView.acc.u.data[0].at(-1) === 1 && {APP}.compareView.loss.u.data[0].at(-1) === 1")
    page.locator("#t-compare").scroll_into_view_if_needed()
    shot(page, artifacts, "practitioner-compare-losses")


def test_download_metrics_as_csv_and_json(page, server, artifacts, two_runs):
    a, _ = two_runs
    stored = server.stored_events(a["id"])
    progress = [e for e in stored if e["type"] == "progress"]
    evals = [e for e in stored if e["type"] == "eval"]
    open_dashboard(page, server, a["id"])
    wait_state(page, f"s.status === 'completed' && s.progress.n === {len(progress)} && s.evals.n === {len(evals)}")
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download metrics as CSV").click()
    assert dl.value.suggested_filename == f"xent-run-{a['id']}-metrics.csv"
    rows = list(csv.DictReader(io.StringIO(open(dl.value.path()).read())))
    assert list(rows[0]) == ["kind", "step", "epoch", "images", "wall_time_s", "loss", "accuracy", "lr",
                             "train_loss", "train_accuracy", "test_loss", "test_accuracy"]
    steps = [r for r in rows if r["kind"] == "step"]
    ev_rows = [r for r in rows if r["kind"] == "eval"]
    assert [int(r["step"]) for r in steps] == [e["step"] for e in progress]
    assert [float(r["loss"]) for r in steps] == pytest.approx([e["loss"] for e in progress])
    assert [float(r["lr"]) for r in steps] == pytest.approx([e["lr"] for e in progress])
    assert [float(r["wall_time_s"]) for r in steps] == pytest.approx([e["elapsed"] for e in progress])
    assert [int(r["images"]) for r in steps][-1] == 1500 and int(steps[0]["images"]) == 64
    assert {r["epoch"] for r in steps} == {"1"}
    assert [int(r["step"]) for r in ev_rows] == [e["step"] for e in evals]
    assert [float(r["test_accuracy"]) for r in ev_rows] == pytest.approx([e["test_accuracy"] for e in evals])
    assert all(r["loss"] == "" for r in ev_rows) and all(r["test_loss"] == "" for r in steps)
    # each evaluation row follows its step's row
    kinds = [(r["kind"], r["step"]) for r in rows]
    for r in ev_rows:
        assert kinds[kinds.index(("eval", r["step"])) - 1] == ("step", r["step"])
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download metrics as JSON").click()
    data = json.loads(open(dl.value.path()).read())
    assert data["run_id"] == a["id"] and data["config"]["train"]["batch_size"] == 64
    assert [s["accuracy"] for s in data["steps"]] == pytest.approx([e["accuracy"] for e in progress])
    assert [e["train_loss"] for e in data["evals"]] == pytest.approx([e["train_loss"] for e in evals])
    assert set(data["evals"][0]) == {"step", "epoch", "images", "wall_time_s", "train_loss", "train_accuracy",
                                     "test_loss", "test_accuracy"}


def test_reload_keeps_the_design_and_chart_settings(page, server, artifacts, two_runs):
    a, _ = two_runs
    open_dashboard(page, server, a["id"])
    page.get_by_label("Preset").select_option("lenet")
    page.get_by_label("Learning rate", exact=True).fill("0.0123")
    page.get_by_label("Layer 1 filters").fill("7")
    page.get_by_label("Run name").fill("my lenet")
    page.get_by_label("Smoothing").fill("0.5")
    page.get_by_role("checkbox", name="Log scale (loss)").check()
    expect(page.locator("#design-summary")).to_contain_text("parameters")
    page.reload()
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled()
    expect(page.get_by_label("Preset")).to_have_value("lenet")
    expect(page.get_by_label("Learning rate", exact=True)).to_have_value("0.0123")
    expect(page.get_by_label("Layer 1 filters")).to_have_value("7")
    expect(page.get_by_label("Run name")).to_have_value("my lenet")
    expect(page.get_by_label("Smoothing")).to_have_value("0.5")
    expect(page.get_by_role("checkbox", name="Log scale (loss)")).to_be_checked()
    expect(page.get_by_role("checkbox", name="Log scale (learning rate)")).not_to_be_checked()
    page.wait_for_function(f"{APP}.charts[0].u.scales.y.distr === 3")      # drawn on a log scale
    # the restored design starts as edited (its lr, its 7 filters, its name)
    page.get_by_role("button", name="Start", exact=True).click()
    page.wait_for_function(f"window.__bpl.watched() !== '{a['id']}'")
    new_id = page.evaluate("window.__bpl.watched()")
    run = server.call("GET", f"/api/runs/{new_id}")
    server.call("POST", f"/api/runs/{new_id}/stop")
    assert run["name"] == "my lenet" and run["config"]["train"]["lr"] == 0.0123
    assert run["config"]["model"][0]["filters"] == 7
    # another preset does not carry the run name over, and is what a reload shows
    page.get_by_label("Preset").select_option("mlp")
    expect(page.get_by_label("Run name")).to_have_value("")
    page.reload()
    expect(page.get_by_label("Preset")).to_have_value("mlp")
    expect(page.get_by_label("Run name")).to_have_value("")


def test_no_two_checkboxes_share_a_name(page, server, two_runs):
    a, b = two_runs
    page.goto(server.url + f"/#run={a['id']}&compare={a['id']},{b['id']}")
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled()
    expect(page.get_by_role("checkbox", name=f"Compare mse-run ({b['id']})")).to_be_checked()
    expect(page.get_by_role("checkbox", name="Log scale", exact=True)).to_have_count(0)
    names = re.findall(r'checkbox "([^"]*)"', page.locator("body").aria_snapshot())
    assert "Log scale (loss)" in names and "Log scale (learning rate)" in names
    assert len(names) == len(set(names)), sorted(names)


def test_advanced_form_fields_insert_below_and_the_watching_summary(page, server, artifacts):
    open_dashboard(page, server)
    page.get_by_label("Preset").select_option("mlp")
    loss = page.get_by_label("Loss function")
    expect(loss).to_be_hidden()                        # under the closed "Advanced"
    page.get_by_text("Advanced", exact=True).click()
    expect(loss).to_be_visible()
    assert loss.locator("option").all_inner_texts() == ["Cross-entropy", "Quadratic (MSE)"]
    loss.select_option("mse")
    page.get_by_label("Clip norm").fill("5")
    page.get_by_label("Nesterov momentum").check()      # SGD with momentum 0.9
    page.get_by_label("Schedule", exact=True).select_option("step")
    expect(page.get_by_label("Schedule gamma")).to_be_visible()   # Advanced stays open
    page.get_by_label("Schedule every").fill("2")
    expect(page.get_by_label("Adam beta1")).to_have_count(0)
    page.get_by_label("Optimizer").select_option("adam")
    expect(page.get_by_label("Nesterov momentum")).to_have_count(0)
    page.get_by_label("Adam beta2").fill("0.99")
    page.get_by_label("Weight decay", exact=True).fill("0.0001")
    # Insert below: a layer of the chosen type right under layer 1, its type select focused
    n = page.locator("li.layer:not(.input-layer)").count()
    page.get_by_label("New layer type").select_option("dropout")
    page.get_by_role("button", name="Insert a layer below layer 1").click()
    expect(page.locator("li.layer:not(.input-layer)")).to_have_count(n + 1)
    expect(page.get_by_label("Layer 2 type")).to_have_value("dropout")
    expect(page.get_by_label("Layer 2 type")).to_be_focused()
    expect(page.get_by_label("Layer 3 type")).to_have_value("dense")
    page.get_by_label("Training subset size").fill("640")
    page.get_by_label("Epochs", exact=True).fill("1")
    expect(page.locator("#design-summary")).to_contain_text("10 steps")
    shot(page, artifacts, "practitioner-layer-insert")
    page.locator("#hparams").screenshot(path=str(artifacts / "practitioner-advanced-form.png"))
    # the run this Start created (the shared server's page may be watching an older one)
    with page.expect_response(lambda r: r.url.endswith("/api/runs") and r.request.method == "POST") as made:
        page.get_by_role("button", name="Start", exact=True).click()
    rid = made.value.json()["id"]
    page.wait_for_function(f"window.__bpl.watched() === '{rid}'")
    run = server.call("GET", f"/api/runs/{rid}")
    t = run["config"]["train"]
    assert (t["loss"], t["clip_norm"], t["optimizer"], t["beta2"], t["weight_decay"]) == ("mse", 5, "adam", 0.99, 0.0001)
    assert t["schedule"]["type"] == "step" and t["schedule"]["every_epochs"] == 2
    assert [layer["type"] for layer in run["config"]["model"]][:3] == ["flatten", "dropout", "dense"]
    info = page.locator("#run-info")
    expect(info).to_contain_text("weight decay 0.0001")
    expect(info).to_contain_text("step schedule: x0.95 every 2 epochs")
    expect(info).to_contain_text("adam lr 0.05, betas 0.9/0.99, weight decay 0.0001")
    expect(info).to_contain_text("quadratic (MSE) loss")
    expect(info).to_contain_text("gradient norm clipped at 5")
    server.wait_status(run["id"], ("completed",), timeout=180)
    # an error in a field under a closed "Advanced" opens it (a reload closes it)
    page.get_by_label("Clip norm").fill("-1")
    page.reload()
    expect(page.get_by_label("Clip norm")).to_be_visible()
    expect(page.locator("#hp-clip_norm-error")).to_contain_text("clip_norm")
    expect(page.get_by_label("Clip norm")).to_have_attribute("aria-invalid", "true")


def test_x_scales_images_and_quantiles(page, server):
    """The pure logic behind the x axes and Ignore outliers (static/js/ui/series.js)."""
    page.goto(server.url + "/")
    out = page.evaluate("""async () => {
      const m = await import('/static/js/ui/series.js');
      const r = await import('/static/js/reducer.js');
      const img = (o) => [1, 2, 3, 4, 7].map((s) => m.imagesAt(s, o));
      // 10 images in batches of 4: 3 steps an epoch (4, 4, 2), or 2 with drop_last
      const shuffle = img({stepsPerEpoch: 3, trainSize: 10, batch: 4});
      const dropLast = img({stepsPerEpoch: 2, trainSize: 10, batch: 4, perStep: true});
      let s = r.initialRunState("r-x");
      const evs = [{type: "run_started", seq: 1, config: {train: {batch_size: 4}}, summary: {}, total_steps: 9,
                    steps_per_epoch: 3, train_size: 10, test_size: 1, class_names: []}];
      for (let k = 1; k <= 6; k++) evs.push({type: "progress", seq: 1 + k, step: k, epoch: Math.ceil(k / 3), loss: 1, accuracy: 1, lr: 1, elapsed: k / 2});
      // a continue from step 4: the new worker's elapsed starts again at 0
      evs.push({type: "continued", seq: 8, step: 4, epoch: 2, total_steps: 9});
      evs.push({type: "progress", seq: 9, step: 5, epoch: 2, loss: 1, accuracy: 1, lr: 1, elapsed: 0.25});
      for (const e of evs) s = r.reduceRun(s, e);
      const xs = (mode) => { const x = m.xScale(s, mode); return {mode: x.mode, at: [0, 1, 2, 3, 4].map(x.at), lower: x.lower(1.5), upper: x.upper(1), step5: x.atStep(5)}; };
      const bare = m.xScale(r.initialRunState("r-y"), "epoch").mode;
      return {shuffle, dropLast, step: xs("step"), epoch: xs("epoch"), images: xs("images"), time: xs("time"), bare,
              q: m.quantileRange([[5, 1, 2, 3, 4, null, NaN], [1000]], 0.2), none: m.quantileRange([[null]])};
    }""")
    assert out["shuffle"] == [4, 8, 10, 14, 24]
    assert out["dropLast"] == [4, 8, 12, 16, 28]
    assert out["step"] == {"mode": "step", "at": [1, 2, 3, 4, 5], "lower": 1, "upper": 1, "step5": 5}
    assert out["epoch"]["at"] == pytest.approx([1 / 3, 2 / 3, 1, 4 / 3, 5 / 3])
    assert out["epoch"]["lower"] == 4 and out["epoch"]["upper"] == 3
    assert out["images"]["at"] == [4, 8, 10, 14, 18]
    assert out["time"]["at"] == [0.5, 1, 1.5, 2, 2.25] and out["time"]["step5"] == 2.25
    assert out["time"]["lower"] == 2 and out["time"]["upper"] == 2
    assert out["bare"] == "step"         # no run_started yet: no steps per epoch, the step axis
    assert out["q"] == [2, 5] and out["none"] is None

