"""The run form's Where choice on a server started with --dask local, in Chromium."""
from __future__ import annotations

from playwright.sync_api import expect

from ..server.conftest import Server


def test_the_page_offers_dask_for_a_single_run(browser, tmp_path):
    s = Server(tmp_path / "data", args=["--dask", "local"],
               env={"BACKPROP_DASK_LOCAL_WORKERS": "1"}).start()
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(s.url + "/")
        where = page.get_by_label("Where the run trains")
        expect(where).to_be_visible()
        page.get_by_label("Training subset size").fill("640")
        page.get_by_label("Epochs", exact=True).fill("1")
        where.select_option("dask")
        expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled()
        page.get_by_role("button", name="Start", exact=True).click()
        page.wait_for_function("window.__bpl.watched()")
        rid = page.evaluate("window.__bpl.watched()")
        with s.client() as api:
            assert api.get(f"/api/runs/{rid}").json()["where"] == "dask"
        page.wait_for_function(f"window.__bpl.app.states.get('{rid}').status === 'completed'", timeout=180_000)
        expect(page.locator(f"#run-list tr[data-run-id='{rid}']")).to_contain_text("dask")
        page.close()
    finally:
        s.stop()


def test_a_server_without_dask_does_not_offer_it(page, server):
    page.goto(server.url + "/")
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled()
    expect(page.locator("#where-label")).to_be_hidden()
