"""The dashboard in a real browser against a real server (see conftest.py).

No timed assertions: every wait is for a condition, with a generous timeout.
"""
from __future__ import annotations

import copy
import json
import re

import pytest
from playwright.sync_api import expect

from engine.presets import preset_names

@pytest.fixture(autouse=True)
def _artifacts(artifacts):
    _ARTIFACTS[:] = [artifacts]


CANVAS_SIG = """(sel) => {
  const c = document.querySelector(sel);
  if (!c || !c.width || !c.height) return {distinct: 0, hash: 0};
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const seen = new Set(); let hash = 0;
  for (let i = 0; i < d.length; i += 4) {
    const v = (d[i] << 16) | (d[i + 1] << 8) | d[i + 2];
    if (d[i + 3] && seen.size < 64) seen.add(v);
    hash = (Math.imul(hash, 31) + v + d[i + 3]) >>> 0;
  }
  return {distinct: seen.size, hash};
}"""


def info(page) -> dict:
    return page.evaluate("window.__bpl.info()") or {}


def wait_info(page, cond: str, timeout=90_000):
    """Wait until `cond` (JS, over `i` = window.__bpl.info()) holds."""
    page.wait_for_function(f"(() => {{ const i = window.__bpl && window.__bpl.info(); return !!i && ({cond}); }})()",
                           timeout=timeout)
    return info(page)


def canvas(page, sel) -> dict:
    return page.evaluate(CANVAS_SIG, sel)


_ARTIFACTS = []


def shot(page, name):
    page.screenshot(path=str(_ARTIFACTS[0] / f"{name}.png"))


def open_dashboard(page, server, run_id=None):
    page.goto(server.url + "/" + (f"#run={run_id}" if run_id else ""))
    # the first validation answer enables Start: the page is interactive
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled()


def design_mlp(page, train_limit="2000", epochs="1000"):
    """The mlp preset on a small subset, long enough that the test ends it (Stop) itself."""
    page.get_by_label("Preset").select_option("mlp")
    page.get_by_label("Training subset size").fill(train_limit)
    page.get_by_label("Epochs", exact=True).fill(epochs)
    page.get_by_label("Evaluation interval").fill("100")
    page.get_by_label("Snapshot interval").fill("0.2")
    # the design is re-validated after each edit; Start stays enabled for a valid one
    expect(page.locator("#design-summary")).to_contain_text(f"{int(epochs) * -(-int(train_limit) // 64):,} steps")
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled()


def test_every_module_is_preloaded():
    """The template preloads every ES module (one round of requests on first load)."""
    import os
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    html = (root / "templates" / "index.html").read_text()
    preloaded = set(re.findall(r'rel="modulepreload" href="\{\{ static \}\}/js/([^"]+)"', html))
    modules = {str(p.relative_to(root / "static" / "js")) for p in (root / "static" / "js").rglob("*.js")}
    sweeps = {m for m in modules if m.startswith("sweeps/")}
    assert preloaded == modules - {"main.js"} - sweeps
    # the sweeps page preloads what its module imports, transitively
    html = (root / "templates" / "sweeps.html").read_text()
    preloaded = set(re.findall(r'rel="modulepreload" href="\{\{ static \}\}/js/([^"]+)"', html))
    needed, todo = set(), ["sweeps/main.js"]
    while todo:
        m = todo.pop()
        src = (root / "static" / "js" / m).read_text()
        for imp in re.findall(r'^import .* from "([^"]+)";', src, re.M):
            dep = os.path.normpath(str(Path(m).parent / imp))
            if dep not in needed:
                needed.add(dep)
                todo.append(dep)
    assert preloaded == needed


def test_preset_picker_lists_every_engine_preset(page, server):
    open_dashboard(page, server)
    values = page.locator("#preset option").evaluate_all("os => os.map(o => o.value)")
    assert set(preset_names()) <= set(values)
    lenet = next(p for p in server.call("GET", "/api/presets")["presets"] if p["name"] == "lenet")
    page.get_by_label("Preset").select_option("lenet")
    expect(page.get_by_label("Layer 1 type")).to_have_value("conv2d")
    expect(page.get_by_label("Learning rate", exact=True)).to_have_value(str(lenet["config"]["train"]["lr"]))
    expect(page.get_by_label("Batch size")).to_have_value(str(lenet["config"]["train"]["batch_size"]))
    expect(page.locator("li.layer:not(.input-layer)")).to_have_count(len(lenet["config"]["model"]))
    # probe images are chosen from the test set before the run starts
    page.get_by_text("Choose probe images from the test set").click()
    page.get_by_role("button", name="Test image #5", exact=True).click()
    expect(page.get_by_label("Probe images")).to_have_value("0, 1, 2, 3, 5")
    expect(page.get_by_role("button", name="Test image #5", exact=True)).to_have_attribute("aria-pressed", "true")


def test_layer_editor_is_built_from_the_served_spec(page, server):
    """The editor's layer types, fields, ranges and placeholders come from GET /api/spec."""
    real = server.call("GET", "/api/spec")
    served = copy.deepcopy(real)
    served["layers"]["dense"]["units"]["max"] = 4096
    served["layers"]["dense"]["fake_knob"] = {"kind": "int", "required": False, "default": 7,
                                              "min": 1, "max": 9}
    del served["layers"]["batchnorm"]
    served["train"]["lr"]["default"] = 0.125
    page.route("**/api/spec", lambda route: route.fulfill(json=served))
    open_dashboard(page, server)
    expect(page.get_by_label("Layer 2 units")).to_have_attribute("max", "4096")
    expect(page.get_by_label("Layer 2 fake knob")).to_have_attribute("placeholder", "7")
    types = page.locator("#add-layer-type option").evaluate_all("os => os.map(o => o.value)")
    assert types == [t for t in real["layers"] if t != "batchnorm"]
    page.get_by_label("Learning rate", exact=True).fill("")
    expect(page.get_by_label("Learning rate", exact=True)).to_have_attribute("placeholder", "0.125")
    # the real table: every engine layer type, the engine's ranges
    page.unroute("**/api/spec")
    page.reload()
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled()
    types = page.locator("#add-layer-type option").evaluate_all("os => os.map(o => o.value)")
    assert types == list(real["layers"])
    units = real["layers"]["dense"]["units"]
    expect(page.get_by_label("Layer 2 units")).to_have_attribute("max", str(units["max"]))
    expect(page.get_by_label("Layer 2 units")).to_have_attribute("min", str(units["min"]))
    expect(page.get_by_label("Layer 2 fake knob")).to_have_count(0)
    page.get_by_label("New layer type").select_option("conv2d")
    page.get_by_role("button", name="Add layer").click()
    n = page.locator("li.layer:not(.input-layer)").count()
    expect(page.get_by_label(f"Layer {n} kernel size")).to_have_attribute("placeholder", "required")
    expect(page.get_by_label(f"Layer {n} stride")).to_have_attribute(
        "placeholder", str(real["layers"]["conv2d"]["stride"]["default"]))


def test_mlp_run_streams_loss_kernels_and_feature_maps(page, server):
    open_dashboard(page, server)
    design_mlp(page)
    page.get_by_role("button", name="Start", exact=True).click()
    first = wait_info(page, "i.points > 0 && i.snapshots > 0")
    expect(page.get_by_role("status", name="Run status")).to_have_text(re.compile("running|completed"))
    # the loss chart shows points and they grow
    later = wait_info(page, f"i.points > {first['points'] + 20}")
    assert later["points"] > first["points"]
    readout = page.locator("#chart-loss .readout")
    expect(readout).to_contain_text("batch loss")
    # kernels (each first-layer unit as a 28x28 image) and feature maps are drawn...
    k1 = canvas(page, "#kernels canvas")
    f1 = canvas(page, "#feature-maps canvas.tiles")
    assert k1["distinct"] > 8, k1
    assert f1["distinct"] > 2, f1
    # ...and change between snapshots
    snaps = info(page)["snapshots"]
    wait_info(page, f"i.snapshots > {snaps + 1}")
    page.wait_for_function(f"({CANVAS_SIG})('#kernels canvas').hash !== {k1['hash']}")
    page.wait_for_function(f"({CANVAS_SIG})('#feature-maps canvas.tiles').hash !== {f1['hash']}")
    expect(page.locator("#norms tbody tr")).to_have_count(4)   # 2 dense layers x (kernel, bias)
    shot(page, "mlp-running-1280x800")
    # another probe image can be picked
    page.get_by_role("button", name=re.compile(r"Probe: test image #1\b")).click()
    expect(page.locator("#feature-maps p.muted")).to_contain_text("Test image #1")
    # evaluation: confusion matrix and misclassified gallery
    wait_info(page, "i.evals > 0")
    expect(page.locator("#confusion table tbody tr")).to_have_count(10)
    expect(page.locator("#misclassified li").first).to_be_visible()
    page.locator("#t-conf").scroll_into_view_if_needed()
    shot(page, "mlp-evaluation-1280x800")
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_role("status", name="Run status")).to_have_text("stopped")
    # smoothing 0: the smoothed curve is the raw one (TensorBoard's slider)
    page.locator("#main").evaluate("m => m.scrollTop = 0")
    page.get_by_label("Smoothing").fill("0")
    expect(readout).to_have_text(re.compile(r"batch loss (\S+), smoothed \1 "))
    # hover shows values in the legend; the log scale redraws the same points
    plot = page.locator("#chart-loss .u-over")
    box = plot.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    value = page.locator("#chart-loss .u-legend .u-series").nth(1).locator(".u-value")
    expect(value).not_to_have_text("–")
    page.get_by_label("Log scale").first.check()
    expect(page.locator("#chart-loss .u-legend .u-series")).to_have_count(5)
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
    expect(page.locator("#chart-loss .u-legend .u-series").nth(1).locator(".u-value")).not_to_have_text("–")
    shot(page, "mlp-stopped-log-scale-1280x800")


def test_pause_resume_stop_change_the_status(page, server):
    open_dashboard(page, server)
    design_mlp(page)
    page.get_by_role("button", name="Start", exact=True).click()
    status = page.get_by_role("status", name="Run status")
    expect(status).to_have_text("running")
    wait_info(page, "i.points > 0")
    page.get_by_role("button", name="Pause").click()
    expect(status).to_have_text("paused")
    expect(page.get_by_role("button", name="Resume")).to_be_enabled()
    expect(page.get_by_role("button", name="Pause")).to_be_disabled()
    # a hyperparameter changed while paused is drawn as a marker
    page.get_by_label("Live learning rate").fill("0.01")
    page.get_by_role("button", name="Apply").click()
    wait_info(page, "i.markers > 0")
    expect(page.get_by_label("Live learning rate")).to_have_value("0.01")
    shot(page, "paused-with-lr-marker-1280x800")
    page.get_by_role("button", name="Resume").click()
    expect(status).to_have_text("running")
    n = info(page)["points"]
    wait_info(page, f"i.points > {n}")
    expect(page.locator("#chart-lr .readout")).to_contain_text("learning rate 0.01")
    page.get_by_role("button", name="Stop").click()
    expect(status).to_have_text("stopped")
    for name in ("Pause", "Resume", "Stop"):
        expect(page.get_by_role("button", name=name)).to_be_disabled()
    row = page.locator("#run-list tr.watched")
    expect(row).to_contain_text("stopped")


def test_invalid_layer_shows_the_server_message_and_disables_start(page, server):
    open_dashboard(page, server)
    start = page.get_by_role("button", name="Start", exact=True)
    units = page.get_by_label("Layer 2 units")
    units.fill("0")
    msg = page.locator("#layer-1-units-error")
    expect(msg).to_have_text(re.compile(r"layer 2 \(dense\): units must be between 1 and 65536, got 0"))
    expect(start).to_be_disabled()
    expect(units).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#start-why")).to_contain_text("Fix the problem")
    shot(page, "invalid-layer-1280x800")
    # shapes after the broken layer are unknown; fixing it brings them back and enables Start
    units.fill("32")
    expect(msg).to_be_hidden()
    expect(start).to_be_enabled()
    expect(page.locator("li.layer:not(.input-layer)").nth(1).locator(".shape")).to_have_text("→ (32,)")
    # a structural mistake: a dense layer fed an image
    page.get_by_label("Preset").select_option("")                  # custom: flatten, dense 10
    expect(page.locator("li.layer:not(.input-layer)")).to_have_count(2)
    page.get_by_role("button", name="Move layer 1 down").click()    # dense before flatten
    expect(page.locator("#layer-0-error")).to_contain_text("expects a flat input")
    expect(start).to_be_disabled()
    expect(page.get_by_role("button", name="Move layer 2 up")).to_be_focused()
    page.keyboard.press("Enter")                                     # and back, by keyboard
    expect(start).to_be_enabled()


def test_run_refused_by_the_server_shows_its_message_next_to_the_field(page, server):
    """POST /api/runs answers 422 with the same loc style as validation: the page puts the
    message next to the field (the request is altered on its way, so the server refuses it)."""
    open_dashboard(page, server)

    def tamper(route):
        if route.request.method != "POST":
            return route.continue_()
        body = json.loads(route.request.post_data)
        (body["overrides"] if "overrides" in body else body["train"])["lr"] = -1
        route.continue_(post_data=json.dumps(body))
    page.route("**/api/runs", tamper)
    page.expected_errors = [r"responded with a status of 422"]    # Chromium logs the refusal
    before = len(server.call("GET", "/api/runs")["runs"])
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.locator("#hp-lr-error")).to_contain_text("lr")
    expect(page.get_by_label("Learning rate", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#notice")).to_contain_text("Could not start the run")
    assert len(server.call("GET", "/api/runs")["runs"]) == before


def test_reload_and_lost_connection_keep_the_curve_continuous(page, browser, server):
    # batches of 256 keep the stream to ~100 events/s, so even a slow CI machine's tab keeps up
    # (a tab that falls far behind is caught up from storage; this keeps the check about reloads)
    run = server.create_run("mlp", epochs=100, batch_size=256, train_limit=20000, eval_every=200,
                            name="reload-test")
    open_dashboard(page, server, run["id"])
    before = wait_info(page, "i.points > 60")
    page.reload()
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled()
    after = wait_info(page, f"i.points > {before['points']}")
    assert after["runId"] == run["id"]
    # keyboard focus in the run list survives its live updates (rows are updated in place)
    watch_btn = page.get_by_role("button", name=f"Watch reload-test ({run['id']})")
    watch_btn.focus()
    before_step = page.locator(f"#run-list tr[data-run-id='{run['id']}'] td.step").inner_text()
    expect(page.locator(f"#run-list tr[data-run-id='{run['id']}'] td.step")).not_to_have_text(before_step)
    expect(watch_btn).to_be_focused()
    # lose the connection: the stream resumes with after_seq and exponential backoff
    page.evaluate("window.__bpl.kick()")
    wait_info(page, f"i.points > {after['points'] + 20}")
    # a second tab watching the same run
    other = browser.new_page(viewport={"width": 1280, "height": 800})
    other.goto(server.url + f"/#run={run['id']}")
    wait_info(other, "i.points > 0")
    page.get_by_role("button", name="Stop").click()
    final = server.wait_status(run["id"], ("stopped", "completed"))
    for p in (page, other):
        wait_info(p, f"i.lastSeq >= {final['last_seq']}")
    stored = [e["step"] for e in server.stored_events(run["id"]) if e["type"] == "progress"]
    seen = page.evaluate("window.__bpl.points()")
    seen_other = other.evaluate("window.__bpl.points()")
    assert seen == stored, "the reloaded tab's curve differs from the stored events"
    assert seen_other == stored, "the second tab's curve differs from the stored events"
    assert seen == list(range(1, len(seen) + 1)), "gap or duplicate in the steps"
    shot(page, "after-reload-1280x800")
    other.close()


def test_draw_a_digit_returns_probabilities(page, server):
    run = server.create_run("lenet", epochs=1, train_limit=1500, eval_every=0, name="draw-test")
    server.wait_status(run["id"], ("completed",), timeout=180)
    open_dashboard(page, server, run["id"])
    expect(page.locator("#t-draw")).to_have_text("Draw a digit")
    pad = page.get_by_role("img", name=re.compile("Drawing area"))
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    x0, y0, w = box["x"], box["y"], box["width"]
    page.mouse.move(x0 + 0.3 * w, y0 + 0.2 * w)
    page.mouse.down()
    for t in range(1, 21):  # a "1": one vertical stroke
        page.mouse.move(x0 + 0.3 * w + t * 0.01 * w, y0 + (0.2 + t * 0.03) * w)
    page.mouse.up()
    bars = page.locator("ol.probs li")
    expect(bars).to_have_count(10)
    expect(page.locator("#predict-probs p")).to_contain_text("Predicted")
    total = sum(float(t.strip("%")) for t in page.locator("ol.probs li .num").all_inner_texts())
    assert abs(total - 100) < 1.0
    # a conv net: the drawing's first-layer feature maps are shown too
    expect(page.locator("#predict-maps-caption")).to_contain_text("feature maps")
    assert canvas(page, "#predict-maps")["distinct"] > 2
    shot(page, "draw-a-digit-1280x800")
    page.get_by_role("button", name="Clear drawing").click()
    expect(bars).to_have_count(0)


def test_compare_two_runs_overlays_two_curves(page, server):
    a = server.create_run("mlp", epochs=1, train_limit=1500, lr=0.05, eval_every=8, name="compare-a")
    b = server.create_run("mlp", epochs=1, train_limit=1500, lr=0.2, eval_every=8, name="compare-b")
    for r in (a, b):
        server.wait_status(r["id"], ("completed",))
    page.set_viewport_size({"width": 1920, "height": 1080})
    open_dashboard(page, server, a["id"])
    page.get_by_role("checkbox", name=f"Compare compare-a ({a['id']})").check()
    page.get_by_role("checkbox", name=f"Compare compare-b ({b['id']})").check()
    panel = page.locator("#compare")
    expect(panel.locator(".u-legend").first.locator(".u-series")).to_have_count(3)   # step + 2 runs
    # both runs' colours are drawn on the loss chart (the second run's replay may still be
    # arriving when its legend entry appears, so wait for the pixels, then check them)
    count_colours = """() => {
      const c = document.querySelector('#compare canvas');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      const near = (r, g, b) => { let n = 0; for (let i = 0; i < d.length; i += 4)
        if (Math.abs(d[i] - r) < 40 && Math.abs(d[i + 1] - g) < 40 && Math.abs(d[i + 2] - b) < 40 && d[i + 3] > 200) n++; return n; };
      return [near(0, 114, 178), near(213, 94, 0)];
    }"""
    try:
        page.wait_for_function(f"({count_colours})().every(n => n > 20)", timeout=45_000)
    except Exception:
        pass  # the assertion below reports what was drawn
    colours = page.evaluate(count_colours)
    assert all(n > 20 for n in colours), colours
    expect(panel.locator("table.diff")).to_contain_text("train.lr")
    expect(panel.locator("table.diff")).to_contain_text("0.2")
    expect(panel).to_contain_text("Final test accuracy")
    panel.scroll_into_view_if_needed()
    shot(page, "compare-1920x1080")
    # export weights: an .npz (a zip) served by us
    href = page.get_by_role("link", name=f"Export weights of compare-a ({a['id']})").get_attribute("href")
    import urllib.request
    with urllib.request.urlopen(server.url + href, timeout=30) as r:
        assert r.read(2) == b"PK"
    # the URL keeps the comparison: a reload shows the same
    page.reload()
    expect(panel.locator(".u-legend").first.locator(".u-series")).to_have_count(3)
    # delete one run
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name=f"Delete compare-b ({b['id']})").click()
    expect(page.get_by_role("button", name=f"Watch compare-b ({b['id']})")).to_have_count(0)
    assert all(r["id"] != b["id"] for r in server.call("GET", "/api/runs")["runs"])


def test_diverged_run_offers_retry_with_lower_lr(page, server):
    run = server.create_run("mlp", epochs=1, train_limit=640, lr=1e6, name="too-fast")
    open_dashboard(page, server, run["id"])
    banner = page.locator("#banner")
    expect(banner).to_contain_text("Diverged at step")
    expect(page.get_by_role("status", name="Run status")).to_have_text("diverged")
    shot(page, "diverged-1280x800")
    page.get_by_role("button", name="Retry with lr / 10").click()
    page.wait_for_function(f"window.__bpl.watched() && window.__bpl.watched() !== '{run['id']}'")
    new_id = page.evaluate("window.__bpl.watched()")
    retry = server.call("GET", f"/api/runs/{new_id}")
    assert retry["config"]["train"]["lr"] == 1e5
    assert retry["name"].endswith("(lr / 10)")
    # the run's design can be copied back into the form, to change and run again
    page.get_by_role("button", name="Copy this run's design to the form").click()
    expect(page.get_by_label("Learning rate", exact=True)).to_have_value("100000")
    expect(page.get_by_label("Training subset size")).to_have_value("640")
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled()


def test_gradient_check_table(page, server):
    open_dashboard(page, server)
    page.get_by_role("button", name="Check gradients").click()
    table = page.locator("#gradcheck table")
    expect(table.locator("tbody tr")).to_have_count(4)
    expect(page.locator("#gradcheck")).to_contain_text("Largest relative error")


def test_controls_are_reachable_by_keyboard(page, server):
    open_dashboard(page, server)
    page.locator("body").focus()
    names = []
    for _ in range(12):
        page.keyboard.press("Tab")
        names.append(page.evaluate("document.activeElement && (document.activeElement.textContent || document.activeElement.id)"))
    assert "Start" in [n.strip() for n in names if n]
    shot(page, "idle-1280x800")
    page.set_viewport_size({"width": 1920, "height": 1080})
    shot(page, "idle-1920x1080")
