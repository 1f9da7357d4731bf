"""POST /api/gradcheck answers one of three states: agrees, inconclusive (n entries at
ReLU/max-pool kinks, not compared), disagrees."""
from __future__ import annotations

from engine import get_preset
from engine.layers import Dense
from server.inference import gradcheck
from server.schemas import GradcheckOut

TANH = [{"type": "conv2d", "filters": 2, "kernel_size": 3}, {"type": "tanh"},
        {"type": "flatten"}, {"type": "dense", "units": 10}]


def test_a_smooth_net_agrees(api):
    r = api.post("/api/gradcheck", json={"model": TANH, "dataset": {"name": "digits8"}})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "agrees" and out["ok"] and out["at_kinks"] == 0
    assert out["checked"] == sum(row["checked"] for row in out["rows"]) > 0
    assert all(row["at_kinks"] == 0 for row in out["rows"])


def test_lenet_is_inconclusive_with_its_kinks_counted(api):
    """Before: "relative error 1.00e+0", ok false, on right gradients."""
    lenet = get_preset("lenet")
    r = api.post("/api/gradcheck", json={"model": lenet["model"], "dataset": {"name": "mnist"}})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "inconclusive" and out["ok"], out
    assert out["at_kinks"] == sum(row["at_kinks"] for row in out["rows"]) > 0
    assert out["max_rel_error"] < out["threshold"]
    bias = next(row for row in out["rows"] if row["name"] == "0.conv2d.bias")
    assert bias["at_kinks"] == 8 and bias["checked"] == 0 and bias["rel_error"] is None


def test_a_wrong_backward_disagrees(monkeypatch):
    """The same function the endpoint runs, with a test-only wrong Dense backward (the
    server runs in another process, where nothing can be patched)."""
    orig = Dense.backward

    def wrong(self, grad):
        dx = orig(self, grad)
        self.params[0].grad[...] *= 1.01
        return dx
    monkeypatch.setattr(Dense, "backward", wrong)
    out = gradcheck(None, get_preset("lenet")["model"], {"name": "mnist"})
    GradcheckOut.model_validate(out)
    assert out["status"] == "disagrees" and not out["ok"]
    assert out["max_rel_error"] > out["threshold"]


def test_every_preset_agrees_or_is_inconclusive(api):
    for preset in api.get("/api/presets").json()["presets"]:
        if preset.get("task") == "bsde":     # checked by run: tests/server/test_bsde_runs.py
            continue
        cfg = preset["config"]
        r = api.post("/api/gradcheck", json={"model": cfg["model"], "dataset": cfg["dataset"]})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["status"] in ("agrees", "inconclusive"), (preset["name"], out)
        assert (out["status"] == "inconclusive") == (out["at_kinks"] > 0)
