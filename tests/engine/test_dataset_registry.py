"""The dataset registry: one record per dataset, and a dataset that is not MNIST-shaped
(12x12 RGB, 4 classes) working through validation, building, training, evaluation and predict."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import engine.datasets as ds
from engine import Model, SpecError, Trainer, validate_config
from engine.datasets import (DatasetError, dataset_info, dataset_names, list_datasets,
                             load_dataset, register_arrays, register_npz, unregister_dataset)
from tests import synthetic

ROOT = Path(__file__).resolve().parents[2]

CNN = [{"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": 1}, {"type": "relu"},
       {"type": "maxpool2d"}, {"type": "flatten"}, {"type": "dense", "units": 4}]


@pytest.fixture
def tiny():
    """The synthetic dataset registered in memory for one test (then removed again)."""
    a = synthetic.make_arrays()
    info = register_arrays(synthetic.NAME, a["x_train"], a["y_train"], a["x_test"], a["y_test"],
                           class_names=synthetic.CLASS_NAMES)
    yield info
    unregister_dataset(synthetic.NAME)


def config(model=CNN, **train):
    return {"model": model, "train": {"batch_size": 16, "epochs": 1, "lr": 0.1, **train},
            "dataset": {"name": synthetic.NAME}}


def test_builtin_records():
    m = dataset_info("mnist")
    assert m.input_shape == (28, 28, 1) and m.num_classes == 10
    assert (m.train_size, m.test_size) == (60000, 10000)
    assert m.mean == (0.1307,) and m.std == (0.3081,)        # one channel: one value each
    assert dataset_info("digits8").input_shape == (8, 8, 1)
    assert dataset_info("fashion-mnist").class_names[-1] == "Ankle boot"


@pytest.mark.parametrize("name", [["mnist"], {"a": 1}, None, 3, "nope"])
def test_dataset_info_refuses_other_values(name):
    with pytest.raises(DatasetError, match="dataset name must be one of mnist"):
        dataset_info(name)


def test_record_of_registered_arrays(tiny):
    assert tiny.input_shape == (12, 12, 3) and tiny.num_classes == 4
    assert tiny.class_names == synthetic.CLASS_NAMES
    assert (tiny.train_size, tiny.test_size) == (96, 32)
    x = synthetic.make_arrays()["x_train"] / 255
    assert len(tiny.mean) == len(tiny.std) == 3
    np.testing.assert_allclose(tiny.mean, x.mean(axis=(0, 1, 2)), atol=1e-4)
    np.testing.assert_allclose(tiny.std, x.std(axis=(0, 1, 2)), atol=1e-4)
    assert synthetic.NAME in dataset_names()
    entry = next(e for e in list_datasets() if e["name"] == synthetic.NAME)
    assert entry["input_shape"] == [12, 12, 3] and entry["num_classes"] == 4
    assert entry["class_names"] == list(synthetic.CLASS_NAMES) and entry["available"] is True
    json.dumps(entry)


def test_registering_twice_needs_replace(tiny):
    a = synthetic.make_arrays()
    with pytest.raises(DatasetError, match="already registered"):
        register_arrays(synthetic.NAME, a["x_train"], a["y_train"], a["x_test"], a["y_test"])
    register_arrays(synthetic.NAME, a["x_train"], a["y_train"], a["x_test"], a["y_test"],
                    class_names=synthetic.CLASS_NAMES, replace=True)


@pytest.mark.parametrize("name", ["", "Upper", "a/b", "../x", "a b", "x" * 65, 3])
def test_bad_registered_names(name):
    a = synthetic.make_arrays(n_train=4, n_test=4)
    with pytest.raises(DatasetError, match="dataset name must be"):
        register_arrays(name, a["x_train"], a["y_train"], a["x_test"], a["y_test"])


def test_too_few_class_names():
    a = synthetic.make_arrays(n_train=8, n_test=4)
    with pytest.raises(DatasetError, match="labels go up to 3 but there are only 2 class names"):
        register_arrays("two", a["x_train"], a["y_train"], a["x_test"], a["y_test"],
                        class_names=("a", "b"))
    assert "two" not in dataset_names()


def test_load_registered(tiny):
    d = load_dataset(synthetic.NAME, train_limit=10)
    assert d.x_train.shape == (10, 12, 12, 3) and d.x_test.shape == (32, 12, 12, 3)
    assert d.num_classes == 4 and d.input_shape == (12, 12, 3)
    assert d.batch(d.x_test, slice(0, 2)).shape == (2, 12, 12, 3)
    with pytest.raises(DatasetError, match="held in memory"):
        load_dataset(synthetic.NAME, path=str(ROOT))


def test_validate_uses_the_record(tiny):
    cfg, summary = validate_config(config())
    assert summary["input_shape"] == [12, 12, 3] and summary["output_shape"] == [4]
    assert summary["layers"][0]["params"] == 3 * 3 * 3 * 4 + 4        # 3 input channels
    assert summary["total_steps"] == 96 // 16
    bad = config(model=CNN[:-1] + [{"type": "dense", "units": 10}])
    with pytest.raises(SpecError) as e:
        validate_config(bad)
    assert e.value.errors[0]["loc"] == ["model", 4]
    assert "4 classes" in e.value.errors[0]["msg"]


@pytest.mark.parametrize("name", [["mnist"], {"name": "mnist"}, 7, "tiny-rgb-missing"])
def test_unknown_or_unhashable_dataset_name(name):
    with pytest.raises(SpecError) as e:
        validate_config({"model": [{"type": "flatten"}, {"type": "dense", "units": 10}],
                         "dataset": {"name": name}})
    assert [err["loc"] for err in e.value.errors] == [["dataset", "name"]]


def test_model_from_config_per_channel_normalisation(tiny):
    cfg, _ = validate_config({**config(), "dataset": {"name": synthetic.NAME,
                                                      "normalize": "standard"}})
    m = Model.from_config(cfg)
    assert m.input_shape == (12, 12, 3) and m.num_classes == 4
    x = np.random.default_rng(0).random((2, 12, 12, 3)).astype(np.float32)
    want = (x - np.array(tiny.mean, np.float32)) / np.array(tiny.std, np.float32)
    np.testing.assert_allclose(m._standardise(x), want, rtol=1e-5, atol=1e-5)
    p = m.predict_proba(x)
    assert p.shape == (2, 4)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)


def test_scalar_normalisation_of_old_checkpoints_is_unchanged(tmp_path):
    """Checkpoints saved before the registry hold normalize as [mean, std] scalars; both forms
    give exactly the old arithmetic (same seed, same curves)."""
    spec = [{"type": "flatten"}, {"type": "dense", "units": 10}]
    old = Model(spec, (8, 8, 1), 10, normalize=(0.1777, 0.2826))
    new = Model(spec, (8, 8, 1), 10, normalize=((0.1777,), (0.2826,)))
    assert old.normalize == new.normalize == ((0.1777,), (0.2826,))
    x = np.random.default_rng(1).random((3, 8, 8, 1)).astype(np.float32)
    before = (x - np.float32(0.1777)) * np.float32(1.0 / 0.2826)     # the pre-registry formula
    assert np.array_equal(new._standardise(x), before)
    new.save(tmp_path / "m.npz")
    spec_d, arrays = Model.read_checkpoint(tmp_path / "m.npz")
    spec_d["normalize"] = [0.1777, 0.2826]
    arrays["__spec__"] = np.array(json.dumps(spec_d))
    np.savez(tmp_path / "old.npz", **arrays)
    loaded = Model.load(tmp_path / "old.npz")
    assert loaded.normalize == new.normalize
    assert np.array_equal(loaded.predict_proba(x), new.predict_proba(x))


def test_train_a_few_steps(tiny):
    events = []
    done = Trainer(config(snapshot_interval=0.0), emit=events.append).run()
    assert done["status"] == "completed" and done["step"] == 6
    started = next(e for e in events if e.type == "run_started")
    assert started.class_names == list(synthetic.CLASS_NAMES)
    assert (started.train_size, started.test_size) == (96, 32)
    ev = [e for e in events if e.type == "eval"][-1]
    conf = np.array(ev.confusion)
    assert conf.shape == (4, 4) and conf.sum() == 32
    assert all(0 <= m["label"] < 4 and 0 <= m["predicted"] < 4 for m in ev.misclassified)
    snap = [e for e in events if e.type == "snapshot"][-1]
    assert snap.kernels.shape == (4, 3, 3, 3)                  # (F, kh, kw, C): RGB kernels
    assert snap.feature_maps.shape == (4, 12, 12, 4)


def test_dense_first_layer_kernels_have_the_image_shape(tiny):
    events = []
    model = [{"type": "flatten"}, {"type": "dense", "units": 5}, {"type": "relu"},
             {"type": "dense", "units": 4}]
    Trainer(config(model=model, iterations=2, epochs=None), emit=events.append).run()
    snap = [e for e in events if e.type == "snapshot"][-1]
    assert snap.kernels.shape == (5, 12, 12, 3)


def test_a_dataset_passed_to_the_trainer_must_match_the_record(tiny):
    mnist_cfg = {**config(model=[{"type": "flatten"}, {"type": "dense", "units": 10}]),
                 "dataset": {"name": "mnist"}}
    with pytest.raises(DatasetError, match=r"\(12, 12, 3\) in 4 classes, but mnist"):
        Trainer(mnist_cfg, dataset=load_dataset(synthetic.NAME))


# --------------------------------------------------------------------------- .npz files


def test_register_npz(tmp_path):
    path = synthetic.write_npz(tmp_path)
    try:
        info = register_npz(path)
        assert info.name == synthetic.NAME and info.input_shape == (12, 12, 3)
        assert info.class_names == synthetic.CLASS_NAMES and "generated" in info.description
        assert info.source() == str(path)
        d = load_dataset(synthetic.NAME)
        assert d.x_train.shape == (96, 12, 12, 3) and not d.x_train.flags.writeable
        # dataset.path: another folder holding <name>.npz of the same shape
        other = synthetic.write_npz(tmp_path / "other", n_train=8, n_test=4, seed=1)
        assert len(load_dataset(synthetic.NAME, path=str(other.parent)).x_train) == 8
        with pytest.raises(DatasetError, match="no tiny-rgb.npz"):
            load_dataset(synthetic.NAME, path=str(tmp_path / "other" / ".."  / ".."))
        small = synthetic.write_npz(tmp_path / "small", size=8)
        with pytest.raises(DatasetError, match=r"\(8, 8, 3\).*input shape is \(12, 12, 3\)"):
            load_dataset(synthetic.NAME, path=str(small.parent))
    finally:
        unregister_dataset(synthetic.NAME)


def _npz(tmp_path, **arrays):
    a = synthetic.make_arrays(n_train=8, n_test=4)
    a.update(arrays)
    a = {k: v for k, v in a.items() if v is not None}
    path = tmp_path / "bad.npz"
    np.savez(path, **a)
    return path


@pytest.mark.parametrize("arrays, match", [
    ({"x_train": None}, "missing array 'x_train'"),
    ({"extra": np.zeros(2)}, "unknown array 'extra'"),
    ({"x_test": np.zeros((4, 12, 12, 3), np.float32)}, "x_test must be non-empty uint8"),
    ({"y_train": np.zeros(3, np.int64)}, "y_train must be 8 integer labels"),
    ({"y_test": np.full(4, -1)}, "labels must be 0 or more"),
    ({"x_test": np.zeros((4, 10, 10, 3), np.uint8)}, "x_train images are"),
    ({"class_names": np.array([1, 2, 3, 4])}, "class_names must be a 1-d array of strings"),
    ({"mean": np.zeros(2)}, "mean must be 3 finite numbers"),
    ({"class_names": np.array(["a", "b"])}, "labels go up to 3 but there are only 2"),
    ({"class_names": np.array([{"a": 1}, None], dtype=object)}, "cannot read"),   # pickle
])
def test_bad_npz_files(tmp_path, arrays, match):
    with pytest.raises(DatasetError, match=match):
        register_npz(_npz(tmp_path, **arrays), name="bad")
    assert "bad" not in dataset_names()


def test_not_an_npz(tmp_path):
    p = tmp_path / "junk.npz"
    p.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="junk.npz"):
        register_npz(p)


def test_environment_folder_registers_npz_files(tmp_path):
    """BACKPROP_DATASETS is how a server and its workers (other processes) get a dataset."""
    synthetic.write_npz(tmp_path)
    (tmp_path / "broken.npz").write_bytes(b"nope")
    code = ("import json, warnings; warnings.simplefilter('always');"
            "from engine.datasets import dataset_info, dataset_names;"
            "i = dataset_info('tiny-rgb');"
            "print(json.dumps([list(dataset_names()), list(i.input_shape), i.num_classes]))")
    env = {**os.environ, ds.DATASETS_ENV: str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    names, shape, classes = json.loads(out.stdout)
    assert names == ["mnist", "fashion-mnist", "digits8", "tiny-rgb"]
    assert shape == [12, 12, 3] and classes == 4
    assert "broken.npz is not registered" in out.stderr       # skipped, with a warning
