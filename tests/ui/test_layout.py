"""The page's layout at 800, 1280 and 1920 px in Chromium, with a finished LeNet run loaded:
no horizontal overflow anywhere (the document, the chart column, every card and the design
panel), wide tables scroll inside their cards, and below 1000 px the design panel is a drawer
opened by a button. Screenshots of each width go to the artifacts folder.
"""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .test_defects import shot, wait_state

OVERFLOW = """() => {
  const out = {doc: document.documentElement.scrollWidth - innerWidth, boxes: []};
  for (const el of document.querySelectorAll('main, .card, aside.design, .topbar')) {
    if (el.getClientRects().length && el.scrollWidth > el.clientWidth + 1)
      out.boxes.push(`${el.tagName.toLowerCase()}.${el.className} "${(el.querySelector('h2') || {}).textContent || ''}": ${el.scrollWidth} > ${el.clientWidth}`);
  }
  return out;
}"""


@pytest.fixture(scope="module")
def lenet_run(server):
    """A finished LeNet run (conv kernels, feature maps, norms and confusion tables to lay out)
    and a second run, so the run list and the compare tables have two columns of data."""
    a = server.create_run("lenet", epochs=1, train_limit=640, eval_every=5,
                          name="a LeNet run with a rather long name for the layout")
    b = server.create_run("mlp", epochs=1, train_limit=640, name="layout-mlp")
    for r in (a, b):
        server.wait_status(r["id"], ("completed",), timeout=240)
    return a, b


def no_overflow(page):
    o = page.evaluate(OVERFLOW)
    assert o["doc"] <= 0, f"the document is {o['doc']} px wider than the window"
    assert not o["boxes"], o["boxes"]


@pytest.mark.parametrize("width,height", [(800, 1000), (1280, 800), (1920, 1080)])
def test_no_horizontal_overflow(page, server, artifacts, lenet_run, width, height):
    a, b = lenet_run
    page.set_viewport_size({"width": width, "height": height})
    page.goto(server.url + f"/#run={a['id']}&compare={a['id']},{b['id']}")
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled()
    wait_state(page, "s.status === 'completed' && s.evals.n > 0 && s.snapshots > 0")
    expect(page.locator("#compare table.diff")).to_be_visible()
    expect(page.locator("#norms tbody tr").first).to_be_visible()
    no_overflow(page)
    shot(page, artifacts, f"layout-{width}")
    # the run list and the compare tables: a table wider than its card scrolls inside it
    page.locator("#t-runs").scroll_into_view_if_needed()
    no_overflow(page)
    wrap = page.locator("#run-list .table-wrap")
    sizes = wrap.evaluate("w => [w.scrollWidth, w.clientWidth, w.closest('.card').clientWidth]")
    assert sizes[1] <= sizes[2]
    if width == 800:
        assert sizes[0] > sizes[1], "at 800 px the run table is expected to scroll inside its card"
    shot(page, artifacts, f"layout-{width}-runs")
    page.locator("#t-compare").scroll_into_view_if_needed()
    no_overflow(page)
    shot(page, artifacts, f"layout-{width}-compare")
    toggle = page.get_by_role("button", name="Design", exact=True)
    preset = page.get_by_label("Preset")
    if width < 1000:
        # the design panel is a drawer: hidden until its button opens it
        expect(toggle).to_be_visible()
        expect(toggle).to_have_attribute("aria-expanded", "false")
        expect(preset).to_be_hidden()
        toggle.click()
        expect(preset).to_be_visible()
        expect(preset).to_be_focused()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        no_overflow(page)
        shot(page, artifacts, f"layout-{width}-drawer")
        page.keyboard.press("Escape")
        expect(preset).to_be_hidden()
        expect(toggle).to_be_focused()
        toggle.click()
        page.get_by_role("button", name="Close the design panel").click()
        expect(preset).to_be_hidden()
    else:
        expect(toggle).to_be_hidden()
        expect(preset).to_be_visible()
