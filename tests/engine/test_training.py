"""The loop as well as the layers: init loss, overfitting, determinism, control, divergence."""
import json
import re
import threading

import numpy as np
import pytest

from engine import Control, Model, Trainer, apply_overrides, get_preset
from engine import events as ev
from engine.events import decode_array, encode_array
from engine.schedules import Schedule


def small(preset="mlp", **over):
    base = {"train_limit": 512, "test_limit": 256, "eval_train_size": 128}
    if "iterations" not in over:
        base["epochs"] = 1  # overrides may not give both (the config's rule)
    base.update(over)
    return apply_overrides(get_preset(preset), base)


def collect(config, control=None):
    out = []
    done = Trainer(config, emit=out.append, control=control).run()
    return out, done


def of(events, kind):
    return [e for e in events if e.type == kind]


@pytest.mark.parametrize("preset", ["mlp", "lenet", "student-cnn", "grokking-cnn"])
def test_initial_loss_is_near_ln10(preset):
    cfg = small(preset, iterations=1, batch_size=256, eval_every=0)
    events, _ = collect(cfg)
    first = of(events, "progress")[0].loss
    assert abs(first - np.log(10)) < 0.35, first


def test_overfits_twenty_examples():
    cfg = small("mlp", train_limit=20, batch_size=20, iterations=300, lr=0.1, eval_train_size=20)
    events, done = collect(cfg)
    last_eval = of(events, "eval")[-1]
    assert last_eval.train_accuracy == 1.0
    assert of(events, "progress")[-1].loss < 0.01


def test_cnn_overfits_twenty_examples():
    cfg = small("lenet", train_limit=20, batch_size=20, iterations=150, lr=0.05, eval_train_size=20)
    events, _ = collect(cfg)
    assert of(events, "eval")[-1].train_accuracy == 1.0


def test_same_seed_same_curve_and_other_seed_differs():
    cfg = small("grokking-cnn", train_limit=256, epochs=2, seed=3)
    a = [e.loss for e in of(collect(cfg)[0], "progress")]
    b = [e.loss for e in of(collect(cfg)[0], "progress")]
    c = [e.loss for e in of(collect(small("grokking-cnn", train_limit=256, epochs=2, seed=4))[0],
                           "progress")]
    assert a == b
    assert a != c


def test_training_reduces_loss_and_reports_everything():
    cfg = small("lenet", train_limit=1024, epochs=2, eval_every=8, snapshot_interval=0.0,
                lr=0.01, schedule={"type": "constant"})
    events, done = collect(cfg)
    kinds = [e.type for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    prog = of(events, "progress")
    assert [p.step for p in prog] == list(range(1, len(prog) + 1))
    assert len(prog) == events[0].total_steps == 32
    assert np.mean([p.loss for p in prog[-5:]]) < np.mean([p.loss for p in prog[:5]])
    assert all(p.images_per_sec > 0 and p.lr == pytest.approx(0.01) for p in prog)
    evals = of(events, "eval")
    assert [e.step for e in evals] == [8, 16, 24, 32]
    assert np.array(evals[-1].confusion).sum() == 256
    snap = of(events, "snapshot")[-1]
    assert snap.kernels.shape == (8, 5, 5, 1)
    assert snap.feature_maps.shape == (4, 28, 28, 8)
    assert {n["name"] for n in snap.norms} >= {"0.conv2d.kernel", "9.dense.bias"}
    assert done["status"] == "completed" and done["test_accuracy"] == evals[-1].test_accuracy
    # every event is plain JSON with no NaN
    for e in events:
        json.dumps(e.to_json_dict(), allow_nan=False)


def test_dense_first_layer_kernels_are_images():
    events, _ = collect(small("mlp", iterations=2))
    snap = of(events, "snapshot")[0]
    assert snap.kernels.shape == (64, 28, 28, 1)
    assert snap.feature_maps.shape == (4, 64)


def test_divergence_is_a_result_not_an_exception():
    cfg = small("mlp", lr=1e6, iterations=50)
    events, done = collect(cfg)
    div = of(events, "diverged")
    assert done["status"] == "diverged" and len(div) == 1
    d = div[0]
    assert 1 <= d.step < 50 and f"at step {d.step}" in d.reason
    assert "lower the learning rate" in d.suggestion and "1e+06" in d.suggestion
    assert d.where
    prog = of(events, "progress")
    assert (prog[-1].step if prog else 0) == d.step - 1  # the bad update was not applied
    assert done["step"] == d.step - 1


def test_exploding_but_finite_loss_is_divergence():
    """lr=1e6 takes the loss from 2.24 to ~2.6e11 in one step: finite in float32, caught by the
    explosion rule (Trainer.EXPLODED_FACTOR), before any NaN or inf could appear."""
    events, done = collect(small("mlp", lr=1e6, iterations=30, seed=5))
    (d,) = of(events, "diverged")
    assert done["status"] == "diverged" and d.step == 2
    first = of(events, "progress")[0].loss
    m = re.fullmatch(r"loss exploded to (\S+) at step 2 \(more than 1000x the first step's (\S+)\)",
                     d.reason)
    assert m, d.reason
    exploded = float(m.group(1))
    assert np.isfinite(exploded) and exploded > Trainer.EXPLODED_FACTOR * first
    assert float(m.group(2)) == pytest.approx(first, rel=0.01)
    assert re.fullmatch(r"the loss; the largest gradient is in \d+\.dense\.(kernel|bias)", d.where), d.where
    assert not re.search(r"nan|inf|non-finite|overflow", d.reason + d.where, re.I)
    json.dumps(ev.jsonable(done), allow_nan=False)


def test_control_pause_resume_set_and_stop():
    ctl = Control()
    seen = []

    def emit(e):
        seen.append(e)
        if e.type == "progress" and e.step == 3:
            ctl.pause()
            # resume from another thread, as the server would
            threading.Timer(0.2, lambda: (ctl.set_hparams(lr=0.05, momentum=0.5), ctl.resume())).start()
        if e.type == "progress" and e.step == 10:
            ctl.stop()

    done = Trainer(small("mlp", epochs=5, lr=0.02), emit=emit, control=ctl).run()
    kinds = [e.type for e in seen]
    assert done["status"] == "stopped" and done["step"] == 10
    assert kinds.index("paused") < kinds.index("hparams_changed") < kinds.index("resumed")
    hp = of(seen, "hparams_changed")[0]
    assert hp.changes == {"lr": 0.05, "momentum": 0.5} and hp.previous["lr"] == 0.02
    after = [e for e in of(seen, "progress") if e.step > 3]
    assert all(e.lr == 0.05 for e in after)
    assert seen[-2].type == "snapshot" and of(seen, "eval")[-1].step == 10


def test_control_rejects_unknown_hparams():
    with pytest.raises(ValueError, match="batch_size"):
        Control().set_hparams(batch_size=3)


def test_checkpoint_round_trip(tmp_path):
    cfg = small("lenet", iterations=5)
    t = Trainer(cfg)
    t.run()
    path = tmp_path / "ck.npz"
    t.save_checkpoint(path)
    x = t.data.batch(t.data.x_test, np.arange(16))
    before = t.model.predict_proba(x)
    loaded = Model.load(path)
    assert loaded.get_config() == t.model.get_config()
    assert np.array_equal(loaded.predict_proba(x), before)
    t2 = Trainer(cfg)
    t2.load_checkpoint(path)
    assert t2.step == 5
    assert set(t2.optimizer.state_arrays()) == set(t.optimizer.state_arrays())
    with np.load(path, allow_pickle=False) as data:  # no object arrays inside
        assert all(data[k].dtype != object for k in data.files)


def test_checkpoint_shape_mismatch_is_clear(tmp_path):
    a = Model(get_preset("mlp")["model"])
    path = tmp_path / "a.npz"
    a.save(path)
    spec = get_preset("mlp")["model"]
    spec[1]["units"] = 50
    b = Model(spec)
    _, arrays = Model.read_checkpoint(path)
    with pytest.raises(ValueError, match=r"param.0.*\(784, 100\).*\(784, 50\)"):
        b.load_state_arrays(arrays)


def test_float64_on_request():
    t = Trainer(small("mlp", iterations=2, dtype="float64"))
    assert all(p.value.dtype == np.float64 for p in t.model.params)
    t = Trainer(small("lenet", iterations=2))
    t.run()
    assert all(p.value.dtype == np.float32 for p in t.model.params)


def test_schedules():
    s = Schedule({"type": "step", "gamma": 0.5}, total_steps=100, steps_per_epoch=10)
    assert s(0, 1.0) == 1.0 and s(10, 1.0) == 0.5 and s(25, 1.0) == 0.25
    e = Schedule({"type": "exponential", "gamma": 0.5}, 100, 10)
    assert e(5, 1.0) == pytest.approx(0.5 ** 0.5)
    c = Schedule({"type": "cosine", "min_lr": 0.1}, 100, 10)
    assert c(0, 1.0) == pytest.approx(1.0) and c(100, 1.0) == pytest.approx(0.1)
    assert c(50, 1.0) == pytest.approx(0.55)
    lt = Schedule({"type": "loss", "table": [[1.0, 0.1], [0.3, 0.01]]}, 100, 10)
    assert lt(0, 0.5, None) == 0.5 and lt(0, 0.5, 2.0) == 0.5
    assert lt(0, 0.5, 0.9) == 0.1 and lt(0, 0.5, 0.2) == 0.01


def test_optimizers_all_train():
    for opt, lr in [("sgd", 0.05), ("adam", 0.003), ("rmsprop", 0.002)]:
        cfg = small("mlp", optimizer=opt, lr=lr, momentum=0.9 if opt == "sgd" else 0.0,
                    nesterov=opt == "sgd", weight_decay=1e-4, clip_norm=5.0)
        _, done = collect(cfg)
        assert done["test_accuracy"] > 0.6, (opt, done)


def test_encode_array_round_trip():
    a = np.linspace(-1, 3, 24, dtype=np.float32).reshape(2, 3, 4)
    d = encode_array(a)
    assert d["shape"] == [2, 3, 4] and len(d["b64"]) == 32
    assert np.abs(decode_array(d) - a).max() <= (4 / 255) / 2 + 1e-6
    assert ev.jsonable({"x": float("nan"), "y": np.float32(2)}) == {"x": None, "y": 2.0}


def test_standardised_inputs_travel_with_the_model(tmp_path):
    cfg = small("student-cnn", iterations=5)
    assert cfg["dataset"]["normalize"] == "standard"
    t = Trainer(cfg)
    t.run()
    assert t.model.normalize == ((0.1307,), (0.3081,))    # per channel, from the registry
    x = t.data.batch(t.data.x_test, np.arange(8))  # pixels in [0, 1]
    path = tmp_path / "n.npz"
    t.save_checkpoint(path)
    loaded = Model.load(path)
    assert loaded.normalize == t.model.normalize
    assert np.array_equal(loaded.predict_proba(x), t.model.predict_proba(x))
    # the same net without standardisation sees different inputs
    plain = Model.load(path)
    plain.normalize = None
    assert not np.allclose(plain.predict_proba(x), t.model.predict_proba(x))
    fm = t.model.feature_maps(x[:1])
    assert fm.shape == (1, 28, 28, 4)


def test_backward_stops_at_the_first_layer_with_parameters():
    model = Model(get_preset("mlp")["model"], seed=0)
    flatten, dense = model.layers[0], model.layers[1]
    assert flatten.needs_input_grad and not dense.needs_input_grad
    called = []
    flatten.backward = lambda g: called.append(g)
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    model.zero_grad()
    model.loss_and_grad(x, np.array([1, 2, 3, 4]))
    assert called == [] and np.abs(dense.params[0].grad).sum() > 0
