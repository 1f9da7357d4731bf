"""The page with a dataset that is not MNIST-shaped: 12x12 RGB images in 4 classes (the session
server registers it with BACKPROP_DATASETS, see conftest.py). Nothing on the page may assume 10
classes or 28x28x1 images."""
from __future__ import annotations

import re

import numpy as np
from playwright.sync_api import expect

from tests import synthetic

CNN = [{"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": 1}, {"type": "relu"},
       {"type": "maxpool2d"}, {"type": "flatten"}, {"type": "dense", "units": 4}]

COLOURED = """(sel) => {
  const c = document.querySelector(sel);
  if (!c || !c.width) return 0;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] !== d[i + 1] || d[i + 1] !== d[i + 2]) n++;
  return n;
}"""


def test_rgb_images_and_any_size_drawings(page, server):
    page.goto(server.url + "/")
    out = page.evaluate("""async () => {
      const s = await import('/static/js/samples.js');
      const d = await import('/static/js/ui/drawpad.js');
      const c = document.createElement('canvas');
      // a 1x2 RGB image: red, then blue
      s.drawImage(c, {shape: [1, 2, 3], data: new Float32Array([255, 0, 0, 0, 0, 255])});
      const px = Array.from(c.getContext('2d').getImageData(0, 0, 2, 1).data);
      // ink in the bottom-right quarter of a 224x224 pad -> a 4x4 image lit there only
      const rgba = new Uint8ClampedArray(224 * 224 * 4);
      for (let y = 168; y < 224; y++) for (let x = 168; x < 224; x++) rgba[4 * (y * 224 + x)] = 255;
      const img = Array.from(d.toSize(rgba, 4, 4));
      return {size: [c.width, c.height], px, img, blank: d.toSize(new Uint8ClampedArray(224 * 224 * 4), 4, 4)};
    }""")
    assert out["size"] == [2, 1]
    assert out["px"] == [255, 0, 0, 255, 0, 0, 255, 255]
    want = np.zeros((4, 4))
    want[3, 3] = 1
    np.testing.assert_allclose(out["img"], want.ravel(), atol=1e-6)
    assert out["blank"] is None


def test_a_four_class_rgb_run_on_the_page(page, server, artifacts):
    run = server.call("POST", "/api/runs", {
        "model": CNN, "train": {"batch_size": 16, "epochs": 3, "lr": 0.1},
        "dataset": {"name": synthetic.NAME}, "name": "tiny-rgb-ui"})
    server.wait_status(run["id"], ("completed",), timeout=180)
    page.goto(server.url + f"/#run={run['id']}")
    # the confusion matrix is 4x4 and names the dataset's classes
    rows = page.locator("#confusion table tbody tr")
    expect(rows).to_have_count(4)
    expect(rows.first.locator("td")).to_have_count(4)
    heads = page.locator("#confusion table thead th[title]")
    expect(heads).to_have_count(4)
    assert [heads.nth(i).get_attribute("title") for i in range(4)] == list(synthetic.CLASS_NAMES)
    # first-layer kernels of 3 input channels are drawn in colour
    expect(page.locator("#kernels p.muted")).to_contain_text("in colour")
    page.wait_for_function(f"({COLOURED})('#kernels canvas') > 0")
    # probe thumbnails are the dataset's 12x12 colour images
    thumb = page.locator("#feature-maps .probe canvas").first
    page.wait_for_function("() => { const c = document.querySelector('#feature-maps .probe canvas'); return c && c.width === 12; }")
    assert page.evaluate(COLOURED, "#feature-maps .probe canvas") > 0
    assert thumb.get_attribute("height") == "12"
    # a drawing is sent at 12x12 and answered with 4 probabilities named by class; the card
    # asks for an input, not a digit
    expect(page.locator("#t-draw")).to_have_text("Draw an input")
    expect(page.locator("#predict-probs p")).to_contain_text("Draw an input")
    pad = page.get_by_role("img", name=re.compile("Drawing area"))
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    x0, y0, w = box["x"], box["y"], box["width"]
    page.mouse.move(x0 + 0.7 * w, y0 + 0.7 * w)
    page.mouse.down()
    for t in range(1, 11):
        page.mouse.move(x0 + (0.7 + t * 0.02) * w, y0 + (0.7 + t * 0.02) * w)
    page.mouse.up()
    bars = page.locator("ol.probs li")
    expect(bars).to_have_count(4)
    expect(page.locator("#predict-probs p")).to_contain_text("Predicted")
    assert set(bars.locator(".lbl").all_inner_texts()) == set(synthetic.CLASS_NAMES)
    assert page.evaluate("() => [document.querySelector('.thumb.big').width, document.querySelector('.thumb.big').height]") == [12, 12]
    page.screenshot(path=str(artifacts / "tiny-rgb-draw-1280x800.png"))
    page.locator("#t-conf").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "tiny-rgb-evaluation-1280x800.png"))
