"""A dataset that is not MNIST-shaped (12x12 RGB, 4 classes), registered in the server's and
its workers' processes with BACKPROP_DATASETS, end to end: listing, samples, validation, a run
with a 4x4 confusion matrix, predict with 4 probabilities, and gradient check."""
from __future__ import annotations

import asyncio
import base64

import numpy as np
import pytest

from tests import synthetic

from .conftest import TERMINAL, Server, collect, create, wait_status

CNN = [{"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": 1}, {"type": "relu"},
       {"type": "maxpool2d"}, {"type": "flatten"}, {"type": "dense", "units": 4}]
RUN = {"model": CNN, "train": {"batch_size": 16, "epochs": 2, "lr": 0.1},
       "dataset": {"name": synthetic.NAME}, "name": "tiny rgb"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("datasets")
    synthetic.write_npz(d)
    return d


@pytest.fixture(scope="module")
def server(tmp_path_factory, folder):
    s = Server(tmp_path_factory.mktemp("srv") / "data", env={"BACKPROP_DATASETS": str(folder)})
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def done_run(api):
    run = create(api, RUN)
    return wait_status(api, run["id"], TERMINAL)


def test_listed_with_its_record(api):
    entry = next(d for d in api.get("/api/datasets").json()["datasets"]
                 if d["name"] == synthetic.NAME)
    assert entry["available"] and entry["input_shape"] == [12, 12, 3]
    assert entry["num_classes"] == 4 and entry["class_names"] == list(synthetic.CLASS_NAMES)
    assert (entry["train_size"], entry["test_size"]) == (96, 32)
    assert len(entry["mean"]) == len(entry["std"]) == 3
    spec = api.get("/api/spec").json()["datasets"][synthetic.NAME]
    assert spec["shape"] == [12, 12, 3] and spec["class_names"] == list(synthetic.CLASS_NAMES)
    enum = api.get("/openapi.json").json()["components"]["schemas"]
    assert synthetic.NAME in str(enum)


def test_samples_have_three_channels(api):
    r = api.get(f"/api/datasets/{synthetic.NAME}/samples", params={"indices": "0,5"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["shape"] == [12, 12, 3] and out["channels"] == 3
    assert out["class_names"] == list(synthetic.CLASS_NAMES)
    want = synthetic.make_arrays()
    for item in out["items"]:
        px = np.frombuffer(base64.b64decode(item["pixels"]["b64"]), np.uint8)
        assert item["pixels"]["shape"] == [12, 12, 3]
        assert np.array_equal(px.reshape(12, 12, 3), want["x_test"][item["index"]])
        assert item["label"] == want["y_test"][item["index"]]
    # MNIST keeps its (H, W) samples
    mn = api.get("/api/datasets/mnist/samples", params={"count": 1}).json()
    assert mn["shape"] == [28, 28] and mn["channels"] == 1


def test_validation_uses_the_class_count(api):
    body = {"model": CNN[:-1] + [{"type": "dense", "units": 10}],
            "dataset": {"name": synthetic.NAME}}
    out = api.post("/api/models/validate", json=body).json()
    assert not out["valid"] and "4 classes" in out["errors"][0]["msg"]
    out = api.post("/api/models/validate", json={"model": CNN,
                                                 "dataset": {"name": synthetic.NAME}}).json()
    assert out["valid"], out
    assert out["summary"]["input_shape"] == [12, 12, 3] and out["summary"]["output_shape"] == [4]


def test_a_run_end_to_end(server, done_run):
    assert done_run["status"] == "completed", done_run
    events, _ = asyncio.run(collect(f"{server.ws_url}/ws/runs/{done_run['id']}"))
    started = next(e for e in events if e["type"] == "run_started")
    assert started["class_names"] == list(synthetic.CLASS_NAMES)
    evals = [e for e in events if e["type"] == "eval"]
    assert evals and all(np.array(e["confusion"]).shape == (4, 4) for e in evals)
    assert sum(map(sum, evals[-1]["confusion"])) == 32
    snap = [e for e in events if e["type"] == "snapshot"][-1]
    assert snap["kernels"]["shape"] == [4, 3, 3, 3]               # RGB first-layer kernels


def test_predict_gives_one_probability_per_class(api, done_run):
    url = f"/api/runs/{done_run['id']}/predict"
    image = np.zeros((12, 12))
    image[7:11, 7:11] = 1.0                        # a bright bottom-right square, greyscale
    r = api.post(url, json={"image": image.tolist()})
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["probabilities"]) == 4 and abs(sum(out["probabilities"]) - 1) < 1e-4
    assert out["feature_maps"]["shape"] == [12, 12, 4]
    r = api.post(url, json={"image": [[0.0] * 28] * 28})
    assert r.status_code == 422 and "12 x 12" in r.text


def test_gradcheck_of_a_three_channel_model(api):
    r = api.post("/api/gradcheck", json={"model": CNN, "dataset": {"name": synthetic.NAME}})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["ok"], out
    assert out["rows"][0]["shape"] == [3, 3, 3, 4]


def test_a_run_whose_dataset_is_gone(make_server, folder):
    """Restarted without BACKPROP_DATASETS, the server keeps the run but cannot rebuild its
    model: predict says why (409), never a 500."""
    s = make_server(env={"BACKPROP_DATASETS": str(folder)}).start()
    with s.client() as c:
        run = wait_status(c, create(c, RUN)["id"], TERMINAL)
    s.stop()
    s2 = make_server(data_dir=s.data_dir).start()
    with s2.client() as c:
        r = c.post(f"/api/runs/{run['id']}/predict", json={"image": [[0.0] * 12] * 12})
        assert r.status_code == 409, r.text
        assert r.json()["detail"][0]["loc"] == ["path", "run_id"]
        assert "BACKPROP_DATASETS" in r.text
        assert c.get(f"/api/runs/{run['id']}").status_code == 200
