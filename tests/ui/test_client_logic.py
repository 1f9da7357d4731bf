"""The page's pure logic, run in the browser through its own ES modules: the event fold, the
TensorBoard smoothing, the decimation, the MNIST-style preprocessing of a drawing."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine.events import encode_array


@pytest.fixture
def mod(page, server):
    page.goto(server.url + "/")   # same origin as the modules (each test has its own page)

    def run(module: str, body: str, *args):
        return page.evaluate(f"async (args) => {{ const m = await import('/static/js/{module}'); {body} }}",
                             list(args))
    return run


def test_fold_ignores_duplicates_and_replays(mod):
    events = [{"type": "run_started", "seq": 1, "config": {"train": {"lr": 0.1, "momentum": 0.9,
               "weight_decay": 0}}, "summary": {}, "total_steps": 3, "steps_per_epoch": 3,
               "train_size": 10, "test_size": 10, "class_names": list("0123456789")}]
    events += [{"type": "progress", "seq": 1 + i, "step": i, "epoch": 1, "loss": 2.0 / i,
                "accuracy": 0.1 * i, "lr": 0.1} for i in (1, 2, 3)]
    # a reconnect replays 2..4 again, then a transient snapshot reuses the newest seq
    replay = events[1:] + [{"type": "snapshot", "seq": 4, "transient": True, "step": 3, "epoch": 1,
                            "layer": 0, "kernels": None, "feature_maps": None,
                            "probe_indices": [], "probe_labels": [], "norms": []},
                           {"type": "status", "seq": 5, "status": "completed", "error": None}]
    out = mod("reducer.js", """
        let s = m.initialRunState("r-x");
        for (const e of args[0]) s = m.reduceRun(s, e);
        for (const e of args[1]) s = m.reduceRun(s, e);
        return {steps: Array.from(s.progress.step.view()), lastSeq: s.lastSeq,
                snapshots: s.snapshots, status: s.status, hp: s.hparams};""", events, replay)
    assert out["steps"] == [1, 2, 3]
    assert out["lastSeq"] == 5
    assert out["snapshots"] == 1
    assert out["status"] == "completed"
    assert out["hp"] == {"lr": 0.1, "momentum": 0.9, "weight_decay": 0}


def test_continued_voids_the_points_after_its_checkpoint(mod):
    """A worker killed after step 4 with a checkpoint at step 3: the continued run's events
    replace steps 4.. and its eval at step 3 replaces the one already shown."""
    start = {"type": "run_started", "seq": 1, "config": {"train": {"lr": 0.1}}, "summary": {},
             "total_steps": 6, "steps_per_epoch": 3, "train_size": 9, "test_size": 9,
             "class_names": list("0123456789")}
    prog = lambda seq, step, loss: {"type": "progress", "seq": seq, "step": step, "epoch": 1,
                                    "loss": loss, "accuracy": 0.5, "lr": 0.1}
    ev = lambda seq, step, acc: {"type": "eval", "seq": seq, "step": step, "test_accuracy": acc,
                                 "test_loss": 1.0, "train_loss": None, "train_accuracy": None}
    events = [start, prog(2, 1, 9), prog(3, 2, 8), prog(4, 3, 7), ev(5, 3, 0.5), prog(6, 4, 99),
              {"type": "status", "seq": 7, "status": "interrupted", "error": "worker died"},
              {"type": "continued", "seq": 8, "step": 3, "epoch": 1, "total_steps": 6},
              ev(9, 3, 0.5), prog(10, 4, 6), prog(11, 5, 5)]
    out = mod("reducer.js", """
        let s = m.initialRunState("r-x");
        for (const e of args[0]) s = m.reduceRun(s, e);
        return {steps: Array.from(s.progress.step.view()), loss: Array.from(s.progress.loss.view()),
                evals: s.evals.step, marks: s.continuations, status: s.status};""", events)
    assert out["steps"] == [1, 2, 3, 4, 5]
    assert out["loss"] == [9, 8, 7, 6, 5]
    assert out["evals"] == [3]
    assert out["marks"] == [{"step": 3}]
    assert out["status"] == "running"


def test_smoothing_is_tensorboards_debiased_ema(mod):
    rng = np.random.default_rng(0)
    ys = (2 * np.exp(-np.arange(500) / 100) + 0.1 * rng.random(500)).tolist()
    w = 0.9
    got = mod("ui/series.js", "const s = new m.Smoother(); return Array.from(s.extend(args[0], args[0].length, args[1]).subarray(0, args[0].length));", ys, w)
    last, ref = 0.0, []
    for k, v in enumerate(ys, 1):   # TensorBoard's vz_line_chart smoothing
        last = last * w + (1 - w) * v
        ref.append(last / (1 - w ** k))
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_decimation_keeps_every_extreme_and_the_last_point(mod):
    rng = np.random.default_rng(1)
    y = rng.normal(size=20000)
    y[12345] = 50.0      # a spike must survive
    y[777] = -50.0
    idx = mod("ui/series.js", "return m.decimate(args[0], 0, args[0].length, 1000, [5000]);", y.tolist())
    assert len(idx) <= 1003
    assert idx == sorted(set(idx))
    assert {12345, 777, 5000, 19999} <= set(idx)


def test_drawing_is_centred_like_mnist(mod):
    # a bar in the top-left corner of the 224x224 pad ends up centred in 28x28, in 20x20
    out = mod("ui/drawpad.js", """
        const S = 224, rgba = new Uint8ClampedArray(S * S * 4);
        for (let y = 10; y < 90; y++) for (let x = 10; x < 30; x++) rgba[4 * (y * S + x)] = 255;
        return Array.from(m.toMnist(rgba, S));""")
    img = np.array(out).reshape(28, 28)
    ys, xs = np.nonzero(img > 0.5)
    assert ys.max() - ys.min() + 1 == 20                 # the longer side is scaled to 20 px
    cy, cx = (np.array(np.nonzero(img)) * img[img > 0]).sum(1) / img.sum()
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1   # centre of mass in the middle


def test_encoded_arrays_decode_like_the_engine(mod):
    a = np.linspace(-1.5, 2.5, 24).reshape(2, 3, 4)
    enc = json.loads(json.dumps(encode_array(a)))
    got = mod("codec.js", "const d = m.decodeArray(args[0]); return {shape: d.shape, data: Array.from(d.data)};", enc)
    assert got["shape"] == [2, 3, 4]
    np.testing.assert_allclose(np.array(got["data"]).reshape(2, 3, 4), a, atol=4.0 / 255)
