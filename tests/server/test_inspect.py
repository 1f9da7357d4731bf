"""POST /api/runs/{id}/inspect and GET /api/runs/{id}/snapshots on a real server.

A short lenet run (two conv layers) trains to completion; inspect answers every layer's
output with the shapes of the run's summary, every weighted layer's kernels and a saliency
for a probe and for a drawn digit; the snapshots list names every stored snapshot and
``?step=K`` answers the one at or before K.
"""
from __future__ import annotations

import base64

import numpy as np
import pytest

from .conftest import TERMINAL, create, wait_status

LENET = {"preset": "lenet", "overrides": {"epochs": 1, "train_limit": 640, "test_limit": 100,
                                          "batch_size": 32}}


def decode(d: dict) -> np.ndarray:
    q = np.frombuffer(base64.b64decode(d["b64"]), np.uint8).reshape(d["shape"])
    return d["min"] + q * ((d["max"] - d["min"]) / 255.0)


@pytest.fixture(scope="module")
def lenet_run(api):
    run = create(api, LENET)
    return wait_status(api, run["id"], TERMINAL, timeout=120)


def test_inspect_a_probe_every_layer(api, lenet_run):
    assert lenet_run["status"] == "completed"
    r = api.post(f"/api/runs/{lenet_run['id']}/inspect",
                 json={"image": 3, "what": ["outputs", "weights", "saliency"]})
    assert r.status_code == 200, r.text
    out = r.json()
    summary = lenet_run["summary"]["layers"]
    assert [layer["shape"] for layer in out["layers"]] == [s["output_shape"] for s in summary]
    assert [layer["output"]["shape"] for layer in out["layers"]] == [s["output_shape"]
                                                                    for s in summary]
    assert all(layer["name"] == f"{layer['index']}.{layer['type']}" for layer in out["layers"])
    convs = [w for w in out["weights"] if w["type"] == "conv2d"]
    assert len(convs) >= 2
    kh, kw, c, f = convs[1]["shape"]
    assert convs[1]["kernels"]["shape"] == [min(f, 64), kh, kw, c] and c > 1
    assert out["label"] is not None and out["predicted"] == int(np.argmax(out["probabilities"]))
    sal = out["saliency"]
    assert sal["cls"] == out["predicted"] and sal["gradient"]["shape"] == [28, 28, 1]
    assert sal["abs_max"] > 0
    assert out["image"]["shape"] == [28, 28, 1] and out["step"] == lenet_run["weights_step"]
    # the image is the test set's: the same as the samples endpoint gives
    item = api.get("/api/datasets/mnist/samples?split=test&indices=3").json()["items"][0]
    assert item["label"] == out["label"]


def test_inspect_a_drawn_digit(api, lenet_run):
    px = np.zeros((28, 28))
    px[6:22, 13:15] = 1.0                           # a "1"
    r = api.post(f"/api/runs/{lenet_run['id']}/inspect",
                 json={"pixels": px.ravel().tolist(), "what": ["saliency"], "cls": 7})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["label"] is None and out["layers"] is None and out["saliency"]["cls"] == 7
    np.testing.assert_allclose(decode(out["image"])[..., 0], px, atol=1e-9)


@pytest.mark.parametrize("body,field", [
    ({"image": 100}, "image"),                      # test_limit 100: indices 0..99
    ({"image": -1}, "image"),
    ({"image": "a"}, "image"),
    ({"pixels": [0.0] * 783}, "pixels"),
    ({"pixels": [2.0] * 784}, "pixels"),
    ({"pixels": [0.0] * 784, "image": 1}, "image"),
    ({}, "image"),
    ({"image": 1, "what": ["everything"]}, "what"),
    ({"image": 1, "what": []}, "what"),
    ({"image": 1, "cls": 10, "what": ["saliency"]}, "cls"),
    ({"image": 1, "extra": 1}, "extra"),
])
def test_inspect_bad_input_names_the_field(api, lenet_run, body, field):
    r = api.post(f"/api/runs/{lenet_run['id']}/inspect", json=body)
    assert r.status_code == 422, (body, r.text)
    assert field in r.json()["detail"][0]["loc"], r.text


def test_inspect_unknown_run(api):
    r = api.post("/api/runs/r-0123456789/inspect", json={"image": 0})
    assert r.status_code == 404


def test_snapshots_list_and_step(api, lenet_run):
    rid = lenet_run["id"]
    r = api.get(f"/api/runs/{rid}/snapshots")
    assert r.status_code == 200, r.text
    snaps = r.json()["snapshots"]
    assert len(snaps) >= 2                          # the first and the final one at least
    steps = [s["step"] for s in snaps]
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == lenet_run["weights_step"]
    assert snaps[-1]["test_accuracy"] is not None and snaps[0]["test_accuracy"] is None
    last = api.get(f"/api/runs/{rid}/snapshots?step={steps[-1]}").json()
    assert last["type"] == "snapshot" and last["step"] == steps[-1] and last["seq"] == snaps[-1]["seq"]
    assert last["kernels"]["__array__"] == "uint8"
    first = api.get(f"/api/runs/{rid}/snapshots?step=0").json()
    assert first["step"] == 0 and first["seq"] == snaps[0]["seq"]
    if len(snaps) > 2:                              # at or before: never a later one
        mid = snaps[1]
        got = api.get(f"/api/runs/{rid}/snapshots?step={mid['step']}").json()
        assert got["step"] <= mid["step"] and got["seq"] >= mid["seq"]
    for bad in (steps[-1] + 1, -1, "x"):
        r = api.get(f"/api/runs/{rid}/snapshots?step={bad}")
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"][-1] == "step"
    assert api.get("/api/runs/r-0123456789/snapshots").status_code == 404
