"""Look back and look deeper, in Chromium: the time-lapse scrubber redraws the kernels as at an
earlier snapshot and marks that step on the charts; the layer picker shows a second conv
layer's maps with its shape and kernels; the saliency is drawn over the image (a probe and a
drawing); the per-class chart has one line per class. Screenshots at 1280 and 800 px."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .test_dashboard import canvas, open_dashboard


@pytest.fixture(scope="module")
def lenet_done(server):
    run = server.create_run("lenet", epochs=1, train_limit=1500, test_limit=500, eval_every=10,
                            name="lookback-test")
    return server.wait_status(run["id"], ("completed",), timeout=240)


def state(page, expr: str):
    return page.evaluate(f"(() => {{ const s = window.__bpl.app.state(window.__bpl.watched()); return {expr}; }})()")


def test_scrubber_moves_kernels_and_marks_the_charts(page, server, lenet_done, artifacts):
    open_dashboard(page, server, lenet_done["id"])
    page.wait_for_function("(() => { const a = window.__bpl.app; const s = a.states.get(window.__bpl.watched());"
                           " return s && s.finished && s.history.length >= 2; })()")
    n = state(page, "s.history.length")
    first_step, last_step = state(page, "s.history[0].step"), state(page, "s.history[s.history.length - 1].step")
    assert first_step == 0 and last_step > 0
    slider = page.locator("#timelapse-slider")
    expect(slider).to_be_enabled()
    expect(page.locator("#timelapse-readout")).to_contain_text("live")
    expect(page.locator("#kernels")).to_contain_text(f"step {last_step:,}")
    live = canvas(page, "#kernels canvas")
    slider.fill("0")                                   # back to the first snapshot
    expect(page.locator("#timelapse-readout")).to_contain_text(f"snapshot 1 of {n}")
    expect(page.locator("#kernels")).to_contain_text("step 0")
    expect(page.locator("#norms")).to_contain_text("At step 0")
    then = canvas(page, "#kernels canvas")
    assert then["hash"] != live["hash"] and then["distinct"] > 2
    # the loss chart marks step 0
    page.wait_for_function("window.__bpl.app.charts[0].markers.some(m => m.mark && m.step === 0)")
    page.locator(".timelapse-card").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "timelapse-1280.png"))
    # Live releases it: the newest snapshot again, and no mark
    page.get_by_role("button", name="Back to live").click()
    expect(page.locator("#timelapse-readout")).to_contain_text("live")
    expect(page.locator("#kernels")).to_contain_text(f"step {last_step:,}")
    page.wait_for_function("!window.__bpl.app.charts[0].markers.some(m => m.mark)")
    # Play steps through to the end and comes back to live
    page.get_by_role("button", name="Play time-lapse").click()
    expect(page.get_by_role("button", name="Pause time-lapse")).to_be_visible()
    expect(page.get_by_role("button", name="Play time-lapse")).to_be_visible(timeout=60_000)
    expect(page.locator("#timelapse-readout")).to_contain_text("live")


def test_layer_picker_saliency_and_per_class(page, server, lenet_done, artifacts):
    open_dashboard(page, server, lenet_done["id"])
    layers = lenet_done["summary"]["layers"]
    second = [layer for layer in layers if layer["type"] == "conv2d"][1]
    shape = "(" + ", ".join(str(v) for v in second["output_shape"]) + ")"
    card = page.locator(".layers-card")
    card.scroll_into_view_if_needed()
    expect(page.locator("#layers-status")).to_contain_text("predicted")
    page.get_by_label("Layer to show", exact=True).select_option(str(second["index"]))
    caption = page.locator("#layers-out-caption")
    expect(caption).to_contain_text(f"Layer {second['index'] + 1} (conv2d) output {shape}")
    expect(caption).to_contain_text(f"{second['output_shape'][-1]} maps")
    assert canvas(page, "#layers-out")["distinct"] > 2
    expect(page.locator("#layers-w-caption")).to_contain_text(f"Layer {second['index'] + 1} (conv2d) weights")
    assert canvas(page, "#layers-weights")["distinct"] > 2
    # a dense layer: its activations as a strip of units
    dense = next(layer for layer in layers if layer["type"] == "dense")
    page.get_by_label("Layer to show", exact=True).select_option(str(dense["index"]))
    expect(caption).to_contain_text(f"({dense['output_shape'][0]},)")
    expect(caption).to_contain_text("unit activations")
    # saliency over the probe: grey image plus blue/orange
    expect(page.locator("#layers-sal-caption")).to_contain_text("Saliency of")
    assert canvas(page, "#layers-saliency")["distinct"] > 4
    card.screenshot(path=str(artifacts / "layers-1280.png"))
    # per-class accuracy: one line per class
    page.wait_for_function("window.__bpl.app.perclass.series === 10")
    expect(page.locator("#perclass")).to_contain_text("weakest class")
    # draw a digit: the view switches to the drawing
    pad = page.get_by_role("img", name=re.compile("Drawing area"))
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    x0, y0, w = box["x"], box["y"], box["width"]
    page.mouse.move(x0 + 0.5 * w, y0 + 0.2 * w)
    page.mouse.down()
    for t in range(1, 21):
        page.mouse.move(x0 + 0.5 * w, y0 + (0.2 + t * 0.03) * w)
    page.mouse.up()
    expect(page.locator("#layers-status")).to_contain_text("Your drawing")
    expect(page.locator("#layers-sal-caption")).to_contain_text("Saliency of")
    card.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "layers-drawing-1280.png"))


def test_lookback_at_800px_has_no_overflow(browser, server, lenet_done, artifacts):
    ctx = browser.new_context(viewport={"width": 800, "height": 900})
    page = ctx.new_page()
    try:
        open_dashboard(page, server, lenet_done["id"])
        expect(page.locator("#layers-status")).to_contain_text("predicted")
        page.wait_for_function("window.__bpl.app.perclass.series === 10")
        for sel in (".timelapse-card", ".layers-card", "#perclass"):
            over = page.evaluate(f"(() => {{ const e = document.querySelector('{sel}'); return e.scrollWidth - e.clientWidth; }})()")
            assert over <= 1, (sel, over)
        page.locator(".timelapse-card").scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / "timelapse-800.png"))
        page.locator(".layers-card").scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / "layers-800.png"))
        page.locator("#perclass").scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / "perclass-800.png"))
    finally:
        ctx.close()
