"""Predict, weights export/import (and hostile .npz files), gradcheck, validate, presets,
datasets, samples, the page and the OpenAPI schema."""
from __future__ import annotations

import base64
import io
import zipfile

import numpy as np
import pytest

from .conftest import SHORT, TERMINAL, create, wait_status


@pytest.fixture(scope="module")
def done_run(api):
    run = create(api, SHORT)
    return wait_status(api, run["id"], TERMINAL)


def digit(api, index: int = 0) -> tuple[list[list[float]], int]:
    r = api.get(f"/api/datasets/mnist/samples?split=test&indices={index}")
    item = r.json()["items"][0]
    px = np.frombuffer(base64.b64decode(item["pixels"]["b64"]), np.uint8).reshape(28, 28)
    return (px / 255.0).tolist(), item["label"]


def test_predict(api, done_run):
    assert done_run["status"] == "completed" and done_run["weights_step"] == 32
    right = 0
    for i in range(10):
        image, label = digit(api, i)
        r = api.post(f"/api/runs/{done_run['id']}/predict", json={"image": image})
        assert r.status_code == 200, r.text
        out = r.json()
        assert len(out["probabilities"]) == 10 and abs(sum(out["probabilities"]) - 1) < 1e-4
        assert out["predicted"] == int(np.argmax(out["probabilities"]))
        assert out["step"] == 32
        assert out["feature_maps"]["__array__"] == "uint8"
        assert out["feature_maps"]["shape"] == [100]         # mlp: the first dense layer
        right += out["predicted"] == label
    assert right >= 6


def test_predict_bad_images(api, done_run):
    url = f"/api/runs/{done_run['id']}/predict"
    for image, why in [([[0.0] * 28] * 27, "28 x 28"), ([[0.0] * 27] * 28, "28 x 28"),
                       ([[2.0] * 28] * 28, "0..1"), ([["a"] * 28] * 28, "image"),
                       ([[0.0] * 28] * 100, "image"), ([], "image")]:
        r = api.post(url, json={"image": image})
        assert r.status_code == 422, (why, r.text)
        assert why in r.text and r.json()["detail"][0]["loc"][:1] == ["image"]
    r = api.post(url, content=b'{"image": [[NaN]]}', headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = api.post("/api/runs/r-0123456789/predict", json={"image": [[0.0] * 28] * 28})
    assert r.status_code == 404


def test_weights_export_and_import(api, done_run):
    rid = done_run["id"]
    r = api.get(f"/api/runs/{rid}/weights")
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    with np.load(io.BytesIO(r.content), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    # named as the page names them (layers from 1), no optimizer state
    assert sorted(arrays) == ["layer2.dense.bias", "layer2.dense.kernel", "layer4.dense.bias",
                              "layer4.dense.kernel"]
    assert arrays["layer2.dense.kernel"].shape == (784, 100)
    image, _ = digit(api, 0)
    before = api.post(f"/api/runs/{rid}/predict", json={"image": image}).json()
    # import zeroed weights: every class equally likely afterwards
    zeroed = {k: np.zeros_like(v) for k, v in arrays.items()}
    buf = io.BytesIO()
    np.savez(buf, **zeroed)
    r = api.post(f"/api/runs/{rid}/weights", content=buf.getvalue(),
                 headers={"content-type": "application/octet-stream"})
    assert r.status_code == 200 and r.json() == {"ok": True}
    after = api.post(f"/api/runs/{rid}/predict", json={"image": image}).json()
    assert after["probabilities"] == pytest.approx([0.1] * 10, abs=1e-6)
    assert after["step"] is None
    # named arrays are checked by name: a wrong shape, a missing or an unknown one
    wrong = dict(zeroed, **{"layer4.dense.kernel": np.zeros((100, 9), np.float32)})
    r = upload(api, rid, npz(**wrong))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["layer4.dense.kernel"], r.text
    r = upload(api, rid, npz(**{k: v for k, v in zeroed.items() if k != "layer2.dense.bias"}))
    assert r.status_code == 422 and "layer2.dense.bias" in r.text, r.text
    r = upload(api, rid, npz(**dict(zeroed, **{"layer9.dense.kernel": np.zeros(3, np.float32)})))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["layer9.dense.kernel"], r.text
    # and back: the exported file loads as is
    r = api.post(f"/api/runs/{rid}/weights", content=r_content(api, rid, arrays))
    assert r.status_code == 200
    again = api.post(f"/api/runs/{rid}/predict", json={"image": image}).json()
    assert again["probabilities"] == pytest.approx(before["probabilities"], abs=1e-6)


def r_content(api, rid, arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def upload(api, rid, data: bytes):
    r = api.post(f"/api/runs/{rid}/weights", content=data,
                 headers={"content-type": "application/octet-stream"})
    assert r.status_code != 500
    return r


def npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_hostile_uploads_are_refused(api, done_run):
    rid = done_run["id"]
    ok = {"param.0": np.zeros((784, 100), np.float32), "param.1": np.zeros(100, np.float32),
          "param.2": np.zeros((100, 10), np.float32), "param.3": np.zeros(10, np.float32)}
    # object dtype (would need pickle)
    bad = dict(ok, **{"param.3": np.array([{"x": 1}] * 10, dtype=object)})
    buf = io.BytesIO()
    np.savez(buf, **bad)
    r = upload(api, rid, buf.getvalue())
    assert r.status_code == 422 and "object" in r.text and "param.3" in r.text
    # a shape that does not match the model names the array
    r = upload(api, rid, npz(**dict(ok, **{"param.2": np.zeros((100, 9), np.float32)})))
    assert r.status_code == 422 and "param.2" in r.text
    # a missing array
    r = upload(api, rid, npz(**{"param.0": ok["param.0"]}))
    assert r.status_code == 422 and "param.1" in r.text
    # integer weights
    r = upload(api, rid, npz(**dict(ok, **{"param.1": np.zeros(100, np.int64)})))
    assert r.status_code == 422 and "param.1" in r.text
    # not a zip at all, and an empty body
    assert upload(api, rid, b"hello").status_code == 422
    assert upload(api, rid, b"").status_code == 422
    # a huge declared shape over a few bytes
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
    header["shape"] = (10**6, 10**6)
    raw = io.BytesIO()
    np.lib.format.write_array_header_1_0(raw, header)
    raw.write(b"\x00" * 16)
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("param.0.npy", raw.getvalue())
    r = upload(api, rid, zbuf.getvalue())
    assert r.status_code == 422 and "declares shape" in r.text
    # a zip bomb: 1 GB of zeros deflated to about 1 MB
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("param.0.npy", "w", force_zip64=True) as f:
            chunk = b"\x00" * (1 << 20)
            for _ in range(1024):
                f.write(chunk)
    r = upload(api, rid, bomb.getvalue())
    assert r.status_code == 422 and "decompressed" in r.text
    # a member name with a path
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("../param.0.npy", b"x")
    r = upload(api, rid, zbuf.getvalue())
    assert r.status_code == 422 and "name" in r.text
    # the run still predicts with its own weights
    image, _ = digit(api, 0)
    assert api.post(f"/api/runs/{rid}/predict", json={"image": image}).status_code == 200


def test_weights_of_a_running_run_cannot_be_replaced(api):
    run = create(api, {"preset": "mlp", "overrides": {"iterations": 10**6, "train_limit": 500}})
    wait_status(api, run["id"], "running")
    r = upload(api, run["id"], npz(x=np.zeros(1)))
    assert r.status_code == 409
    api.post(f"/api/runs/{run['id']}/stop")
    wait_status(api, run["id"], TERMINAL)


def test_gradcheck_spec_and_run(api, done_run):
    spec = [{"type": "conv2d", "filters": 2, "kernel_size": 3}, {"type": "tanh"},
            {"type": "flatten"}, {"type": "dense", "units": 10}]
    r = api.post("/api/gradcheck", json={"model": spec, "dataset": {"name": "digits8"}})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["ok"] and out["max_rel_error"] < 1e-6
    assert [row["shape"] for row in out["rows"]] == [[3, 3, 1, 2], [2], [72, 10], [10]]
    r = api.post("/api/gradcheck", json={"run_id": done_run["id"]})
    assert r.status_code == 200 and len(r.json()["rows"]) == 4
    for body, field in [({}, "model"), ({"model": spec, "run_id": done_run["id"]}, "model"),
                        ({"run_id": "r-0000000000"}, "run_id"),
                        ({"model": [{"type": "dense", "units": 0}]}, "units")]:
        r = api.post("/api/gradcheck", json=body)
        assert r.status_code in (404, 422) and field in r.text, (body, r.text)


def test_validate(api):
    lenet = api.get("/api/presets").json()["presets"]
    spec = next(p for p in lenet if p["name"] == "lenet")["config"]["model"]
    r = api.post("/api/models/validate", json={"model": spec})
    out = r.json()
    assert r.status_code == 200 and out["valid"] and out["errors"] == []
    assert out["summary"]["layers"][0]["output_shape"] == [28, 28, 8]
    assert out["summary"]["params"] > 0 and out["summary"]["memory_bytes"] > 0
    bad = spec[:3] + [{"type": "conv2d", "filters": 0, "kernel_size": 5}] + spec[4:]
    out = api.post("/api/models/validate", json={"model": bad}).json()
    assert not out["valid"] and out["errors"][0]["loc"] == ["model", 3, "filters"]
    assert "layer 4 (conv2d)" in out["errors"][0]["msg"]
    assert len(out["summary"]["layers"]) == 3            # up to the first invalid layer
    r = api.post("/api/models/validate", json={"model": "dense"})
    assert r.status_code == 422
    r = api.post("/api/models/validate", json={"model": spec, "dataset": {"path": "/etc"}})
    assert r.json()["valid"] is False and r.json()["errors"][0]["loc"] == ["dataset", "path"]


def test_presets_datasets_and_samples(api):
    presets = api.get("/api/presets").json()["presets"]
    names = [p["name"] for p in presets]
    assert "lenet" in names and "mlp" in names
    assert all({"title", "description", "reference", "target", "config"} <= set(p) for p in presets)
    datasets = api.get("/api/datasets").json()["datasets"]
    mnist = next(d for d in datasets if d["name"] == "mnist")
    assert mnist["available"] and mnist["input_shape"] == [28, 28, 1]
    r = api.get("/api/datasets/mnist/samples?split=test&start=5&count=3")
    out = r.json()
    assert r.status_code == 200 and out["shape"] == [28, 28]
    assert [it["index"] for it in out["items"]] == [5, 6, 7]
    px = base64.b64decode(out["items"][0]["pixels"]["b64"])
    assert len(px) == 784 and max(px) > 200
    r = api.get("/api/datasets/digits8/samples?indices=3,17,42")
    assert [it["index"] for it in r.json()["items"]] == [3, 17, 42] and r.json()["shape"] == [8, 8]
    for q, field in [("count=0", "count"), ("count=257", "count"), ("split=val", "split"),
                     ("start=-1", "start"), ("start=99999", "start"), ("indices=1,x", "indices"),
                     ("indices=10000", "indices"), ("indices=" + ",".join(["1"] * 300), "indices")]:
        r = api.get(f"/api/datasets/mnist/samples?{q}")
        assert r.status_code == 422 and field in r.text, (q, r.text)
    assert api.get("/api/datasets/nope/samples").status_code == 404


def test_page_static_and_openapi(server, api):
    r = api.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "Backprop Lab" in r.text
    spec = api.get("/openapi.json").json()
    body = spec["paths"]["/api/runs"]["post"]["requestBody"]["content"]["application/json"]
    ref = body["schema"]["$ref"].split("/")[-1]
    create_schema = spec["components"]["schemas"][ref]
    layers = create_schema["properties"]["model"]
    kinds = [alt["properties"]["type"]["const"] for alt in layers["items"]["oneOf"]]
    assert "conv2d" in kinds and "dense" in kinds
    assert "lr" in create_schema["properties"]["train"]["properties"]
    assert api.get("/docs").status_code == 200
    assert api.get("/static/does-not-exist.js").status_code == 404


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_weights_that_are_not_finite_are_refused(api, done_run, value):
    """NaN or infinite weights once loaded, and predict then answered ten nulls."""
    rid = done_run["id"]
    r = api.get(f"/api/runs/{rid}/weights")
    with np.load(io.BytesIO(r.content), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    image, _ = digit(api, 0)
    before = api.post(f"/api/runs/{rid}/predict", json={"image": image}).json()
    bad = dict(arrays)
    bad["layer4.dense.kernel"] = arrays["layer4.dense.kernel"].copy()
    bad["layer4.dense.kernel"][3, 4] = value
    r = upload(api, rid, npz(**bad))
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["layer4.dense.kernel"] and "finite" in r.text
    after = api.post(f"/api/runs/{rid}/predict", json={"image": image}).json()
    assert after["probabilities"] == before["probabilities"]       # the weights are unchanged
