"""The initialiser inputs take their defaults from GET /api/spec (spec.inits), not the page."""
from __future__ import annotations

import copy

from playwright.sync_api import expect

from .test_dashboard import open_dashboard


def test_init_inputs_come_from_the_served_spec(page, server):
    real = server.call("GET", "/api/spec")
    assert real["inits"]["normal"]["std"]["default"] == 0.01
    assert real["inits"]["uniform"]["limit"]["default"] == 0.05
    served = copy.deepcopy(real)
    served["inits"]["normal"]["std"]["default"] = 0.125
    served["inits"]["he"]["limit"] = dict(real["inits"]["uniform"]["limit"], default=0.375)
    page.route("**/api/spec", lambda route: route.fulfill(json=served))
    open_dashboard(page, server)
    init = page.get_by_label("Initialiser", exact=True)
    init.select_option("normal")
    std = page.get_by_label("Init std", exact=True)
    expect(std).to_have_value("0.125")
    std.fill("")
    expect(std).to_have_attribute("placeholder", "0.125")
    expect(page.get_by_label("Init limit", exact=True)).to_have_count(0)
    init.select_option("glorot")
    expect(page.get_by_label("Init std", exact=True)).to_have_count(0)
    expect(page.get_by_label("Init limit", exact=True)).to_have_count(0)
    init.select_option("he")              # a parameter the served table gives "he"
    expect(page.get_by_label("Init limit", exact=True)).to_have_value("0.375")
    init.select_option("uniform")
    expect(page.get_by_label("Init limit", exact=True)).to_have_value("0.05")
