"""docs/reliability.md 10-19: every bad input gets a 4xx naming the field; never a 500."""
from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from .conftest import SHORT, TERMINAL, create, events_of, wait_status

MLP = [{"type": "flatten"}, {"type": "dense", "units": 32}, {"type": "relu"},
       {"type": "dense", "units": 10}]


def post_run(api, body) -> tuple[int, list[dict]]:
    r = api.post("/api/runs", json=body)
    assert r.status_code != 500
    return r.status_code, r.json().get("detail", []) if r.status_code >= 400 else []


def named(detail: list[dict], *words: str) -> bool:
    """Some error names every word, in its loc or its message."""
    return any(all(w in (json.dumps(d["loc"]) + " " + d["msg"]) for w in words) for d in detail)


def with_layer(i: int, **changes) -> dict:
    model = [dict(layer) for layer in MLP]
    model[i].update(changes)
    return {"model": model, "train": {"epochs": 1}, "dataset": {"train_limit": 500}}


# 10. malformed JSON, over the size limit, nested 100,000 levels


def test_malformed_json(api):
    r = api.post("/api/runs", content=b'{"preset": "mlp",', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.text
    r = api.post("/api/runs", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_body_over_the_limit_is_413(api):
    big = b'{"name": "' + b"x" * (2 << 20) + b'"}'
    r = api.post("/api/runs", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["detail"][0]["loc"] == []     # the body as a whole


def test_body_over_the_limit_without_content_length_is_413(api):
    def chunks():
        for _ in range(40):
            yield b" " * 65536
    r = api.post("/api/models/validate", content=chunks(),
                 headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_json_nested_100000_levels(api):
    r = api.post("/api/runs", content=b"[" * 100_000 + b"]" * 100_000,
                 headers={"content-type": "application/json"})
    assert r.status_code == 422 and "nest" in r.text
    deep = {"model": [{"type": "dense", "units": json.loads("[" * 500 + "]" * 500)}]}
    r = api.post("/api/models/validate", json=deep)
    assert r.status_code == 422 and "nest" in r.text


# 11. unknown layer type; missing type; unknown extra fields


def test_unknown_missing_type_and_extra_fields(api):
    code, d = post_run(api, with_layer(1, type="dense9"))
    assert code == 422 and named(d, "model", "type", "dense9")
    model = [{"units": 10}]
    code, d = post_run(api, {"model": model})
    assert code == 422 and named(d, "type is required")
    code, d = post_run(api, with_layer(1, colour="red"))
    assert code == 422 and named(d, "colour")
    code, d = post_run(api, {"preset": "mlp", "flavour": 1})
    assert code == 422 and named(d, "flavour")
    code, d = post_run(api, {"model": MLP, "train": {"learning_rate": 0.1}})
    assert code == 422 and named(d, "learning_rate")


@pytest.mark.parametrize("kind", [{}, [], ["dense"]], ids=repr)
def test_layer_type_that_is_an_object_or_a_list(api, kind):
    """Not a 500 (the engine once looked such a type up in a dict): the same error, with
    its loc, from every endpoint that takes a model."""
    body = {"model": [{"type": kind}]}
    answers = [api.post(path, json=body)
               for path in ("/api/runs", "/api/models/validate", "/api/gradcheck")]
    assert [r.status_code for r in answers] == [422, 200, 422], [r.text for r in answers]
    assert not answers[1].json()["valid"]
    assert [locs(r) for r in answers] == [[["model", 0, "type"]]] * 3
    code, d = post_run(api, {"preset": "mlp", "overrides": {"optimizer": kind, "dataset": kind}})
    assert code == 422 and sorted(e["loc"] for e in d) == [["dataset", "name"], ["train", "optimizer"]]


# 12. sizes of 0, negative, a string, a float


@pytest.mark.parametrize("value", [0, -3, "8", 2.5, None, True])
@pytest.mark.parametrize("layer,field", [(1, "units"), ("conv", "filters"),
                                         ("conv", "kernel_size"), ("conv", "stride"),
                                         ("train", "batch_size")])
def test_bad_sizes(api, layer, field, value):
    if layer == "train":
        body = {"model": MLP, "train": {field: value}}
    elif layer == "conv":
        conv = {"type": "conv2d", "filters": 4, "kernel_size": 3, field: value}
        body = {"model": [conv, {"type": "flatten"}, {"type": "dense", "units": 10}]}
    else:
        body = with_layer(layer, **{field: value})
    code, d = post_run(api, body)
    if value is None and field == "stride":
        # null is refused like any other field whose default is not null (the page leaves an
        # empty field out); only a pool's stride defaults to null, meaning "= pool_size"
        assert code == 422 and [e["loc"] for e in d] == [["model", 0, "stride"]], d
        return
    assert code == 422 and named(d, field), d


def test_null_pool_stride_means_pool_size(api):
    r = api.post("/api/models/validate", json={"model": [
        {"type": "maxpool2d", "pool_size": 2, "stride": None},
        {"type": "avgpool2d", "pool_size": 7, "stride": None},
        {"type": "flatten"}, {"type": "dense", "units": 10}]})
    res = r.json()
    assert r.status_code == 200 and res["valid"], res
    assert [layer["output_shape"] for layer in res["summary"]["layers"][:2]] == [[14, 14, 1], [2, 2, 1]]


# 13. sizes that would need gigabytes


def test_gigabyte_sizes_are_refused_before_allocation(api):
    code, d = post_run(api, with_layer(1, units=10**9))
    assert code == 422 and named(d, "units") and "GiB" in json.dumps(d)
    code, d = post_run(api, {"model": [{"type": "relu"}] * 10_000})
    assert code == 422 and named(d, "model", "10000 layers")
    big = [{"type": "flatten"}, {"type": "dense", "units": 65536}, {"type": "dense", "units": 65536},
           {"type": "dense", "units": 10}]
    code, d = post_run(api, {"model": big})
    assert code == 422 and "GiB" in json.dumps(d)
    r = api.post("/api/models/validate", json={"model": [{"type": "relu"}] * 10_001})
    assert r.status_code == 422 and "model" in r.text


# 14. shapes that do not fit


def test_shapes_that_do_not_fit(api):
    conv = {"type": "conv2d", "filters": 4, "kernel_size": 40}
    code, d = post_run(api, {"model": [conv, {"type": "flatten"}, {"type": "dense", "units": 10}]})
    assert code == 422 and named(d, "kernel_size", "larger than its input")
    code, d = post_run(api, {"model": [{"type": "dense", "units": 10}]})
    assert code == 422 and named(d, "flatten")
    code, d = post_run(api, {"model": [{"type": "flatten"}, {"type": "dense", "units": 7}]})
    assert code == 422 and named(d, "10 classes")
    r = api.post("/api/models/validate", json={"model": [{"type": "flatten"},
                                                         {"type": "dense", "units": 7}]})
    assert r.status_code == 200 and r.json()["valid"] is False
    assert r.json()["summary"]["layers"][0]["output_shape"] == [784]


# 15. lr NaN, Infinity, 1e309, below 0; epochs 10**9


@pytest.mark.parametrize("raw", [b"NaN", b"Infinity", b"-Infinity", b"1e309", b"-0.1", b"0",
                                 b'"fast"'])
def test_bad_learning_rates(api, raw):
    body = b'{"preset": "mlp", "overrides": {"lr": ' + raw + b"}}"
    r = api.post("/api/runs", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert "lr" in r.text


def test_epochs_too_many(api):
    code, d = post_run(api, {"preset": "mlp", "overrides": {"epochs": 10**9}})
    assert code == 422 and named(d, "epochs")
    code, d = post_run(api, {"model": MLP, "train": {"iterations": 10**12}})
    assert code == 422 and named(d, "iterations")


# 16. run names


def test_run_names(api):
    code, d = post_run(api, {**SHORT, "name": "x" * (1 << 20)})
    assert code in (413, 422) and (code == 413 or named(d, "name"))
    code, d = post_run(api, {**SHORT, "name": "x" * 201})
    assert code == 422 and named(d, "name")
    code, d = post_run(api, {**SHORT, "name": "bad\x00name\x1b[31m"})
    assert code == 422 and named(d, "name")
    code, d = post_run(api, {**SHORT, "name": 42})
    assert code == 422 and named(d, "name")
    # a name is only a label: `../` is kept as text and never used in a path
    run = create(api, {**SHORT, "name": "  ../../etc/passwd  "})
    assert run["name"] == "../../etc/passwd" and run["id"].startswith("r-")
    wait_status(api, run["id"], TERMINAL)


# 17. dataset or file names with ../, absolute paths, %2e%2e, NUL


@pytest.mark.parametrize("name", ["../mnist", "/etc/passwd", "%2e%2e", "mnist\x00", "MNIST",
                                  ["mnist"], {"name": "mnist"}])
def test_bad_dataset_names(api, name):
    code, d = post_run(api, {"model": MLP, "dataset": {"name": name}})
    assert code == 422 and named(d, "dataset", "name")


@pytest.mark.parametrize("path", ["../../etc", "/etc", "%2e%2e/%2e%2e", "a\x00b"])
def test_dataset_paths_are_refused_over_http(api, path):
    code, d = post_run(api, {"model": MLP, "dataset": {"name": "mnist", "path": path}})
    assert code == 422 and named(d, "path")
    code, d = post_run(api, {"preset": "mlp", "overrides": {"path": path}})
    assert code == 422 and named(d, "path")
    r = api.post("/api/gradcheck", json={"model": MLP, "dataset": {"path": path}})
    assert r.status_code == 422 and "path" in r.text


@pytest.mark.parametrize("url", ["/api/datasets/..%2f..%2fetc/samples",
                                 "/api/datasets/%2e%2e/samples", "/api/datasets/mnist%00/samples",
                                 "/api/runs/..%2f..%2fetc", "/api/runs/%2e%2e/weights",
                                 "/api/runs/r-0000000000/weights", "/static/..%2f..%2fpyproject.toml"])
def test_path_tricks_in_urls(api, url):
    r = api.get(url)
    assert r.status_code in (404, 422), (url, r.status_code)
    assert "[project]" not in r.text


# 18 is in test_models.py (uploaded .npz files)

# 19. unknown run, stop twice, websocket frames


def test_unknown_run_and_stop_twice(api):
    for method, path in [("post", "/api/runs/r-0123456789/stop"), ("get", "/api/runs/nope"),
                         ("delete", "/api/runs/r-0123456789"), ("patch", "/api/runs/r-012")]:
        r = getattr(api, method)(path, **({"json": {"lr": 0.1}} if method == "patch" else {}))
        assert r.status_code == 404, (path, r.text)
        assert r.json()["detail"][0]["loc"] == ["path", "run_id"]
    run = create(api, SHORT)
    wait_status(api, run["id"], TERMINAL)
    for _ in range(2):
        r = api.post(f"/api/runs/{run['id']}/stop")
        assert r.status_code == 200 and r.json()["status"] == "completed"


def test_websocket_bad_requests_and_frames(server, api):
    run = create(api, SHORT)
    wait_status(api, run["id"], TERMINAL)
    url = f"{server.ws_url}/ws/runs/{run['id']}"

    async def status_of(u):
        try:
            async with websockets.connect(u):
                return 101
        except websockets.InvalidStatus as e:
            return e.response.status_code
    assert asyncio.run(status_of(f"{url}?after_seq=-1")) == 422
    assert asyncio.run(status_of(f"{url}?after_seq=abc")) == 422
    assert asyncio.run(status_of(f"{server.ws_url}/ws/runs/r-9999999999")) == 404
    assert asyncio.run(status_of(f"{server.ws_url}/ws/runs/..%2f..")) in (403, 404)

    live = create(api, {"preset": "mlp", "overrides": {"iterations": 10**6, "train_limit": 500}})

    async def close_code(frame):
        async with websockets.connect(f"{server.ws_url}/ws/runs/{live['id']}",
                                      max_size=None) as ws:
            await ws.send(frame)
            try:
                for _ in range(100_000):
                    await asyncio.wait_for(ws.recv(), 30)
            except websockets.ConnectionClosed:
                pass
            return ws.close_code
    assert asyncio.run(close_code(b"\x00\x01")) == 1003          # binary
    assert asyncio.run(close_code("x" * (1 << 20))) == 1009      # oversized
    # an unknown text frame is ignored: the stream goes on and ends normally
    async def ignored():
        async with websockets.connect(f"{server.ws_url}/ws/runs/{live['id']}",
                                      max_size=None) as ws:
            await ws.send('{"type": "hello"}')
            msgs = events_of(await asyncio.wait_for(ws.recv(), 30))
            await asyncio.to_thread(api.post, f"/api/runs/{live['id']}/stop")
            try:
                while True:
                    msgs += events_of(await asyncio.wait_for(ws.recv(), 30))
            except websockets.ConnectionClosed:
                return msgs, ws.close_code
    msgs, code = asyncio.run(ignored())
    assert code == 1000 and msgs[-1]["status"] == "stopped"
    assert [m["seq"] for m in msgs if not m.get("transient")] == list(range(1, len(
        [m for m in msgs if not m.get("transient")]) + 1))
    assert api.get("/api/health").json()["ok"]


# One location style (server/API.md "Errors"): the path inside the JSON body, as the engine
# writes it; [] for the body as a whole; query and path parameters keep their prefix.


def locs(r) -> list:
    d = r.json()
    return [e["loc"] for e in (d["errors"] if "errors" in d else d["detail"])]


def test_the_same_bad_field_has_the_same_loc_on_every_endpoint(api):
    bad = [{"type": "flatten"}, {"type": "dense", "units": 0}, {"type": "dense", "units": 10}]
    answers = [api.post("/api/runs", json={"model": bad, "train": {"epochs": 1}}),
               api.post("/api/models/validate", json={"model": bad}),
               api.post("/api/gradcheck", json={"model": bad})]
    assert [r.status_code for r in answers] == [422, 200, 422]
    assert [locs(r) for r in answers] == [[["model", 1, "units"]]] * 3
    # a training field, given as a config, as a preset override, or to validate
    answers = [api.post("/api/runs", json={"model": MLP, "train": {"lr": -1, "epochs": 1}}),
               api.post("/api/runs", json={"preset": "mlp", "overrides": {"lr": -1}}),
               api.post("/api/models/validate", json={"model": MLP, "train": {"lr": -1}})]
    assert [r.status_code for r in answers] == [422, 422, 200]
    assert [locs(r) for r in answers] == [[["train", "lr"]]] * 3
    # a wrong type caught at the edge, before the engine sees it
    answers = [api.post(path, json={"model": "abc"})
               for path in ("/api/runs", "/api/models/validate", "/api/gradcheck")]
    assert [r.status_code for r in answers] == [422] * 3
    assert all(locs(r) == [["model"]] and "model" in r.json()["detail"][0]["msg"]
               for r in answers), [r.text for r in answers]
    answers = [api.post(path, json={"model": MLP, "dataset": {"path": "/etc"}})
               for path in ("/api/runs", "/api/models/validate", "/api/gradcheck")]
    assert [locs(r) for r in answers] == [[["dataset", "path"]]] * 3
    # the body as a whole: malformed JSON, a wrong top-level type, too deep
    for content in (b'{"model": [', b"[1, 2]", b"[" * 1000 + b"]" * 1000):
        for path in ("/api/runs", "/api/models/validate", "/api/gradcheck"):
            r = api.post(path, content=content, headers={"content-type": "application/json"})
            assert r.status_code == 422 and locs(r) == [[]], (path, content[:20], r.text)
    # parameters outside the body keep their prefix
    r = api.get("/api/datasets/mnist/samples", params={"count": 100_000})
    assert r.status_code == 422 and locs(r) == [["query", "count"]]
    assert locs(api.get("/api/runs/r-0123456789")) == [["path", "run_id"]]


def test_patch_locates_its_own_fields_without_a_prefix(server, api):
    run = create(api, {"preset": "mlp", "overrides": {"iterations": 10**6, "train_limit": 500}})
    wait_status(api, run["id"], "running")
    try:
        for body in ({"lr": -1}, {"lr": "fast"}):       # the engine's rule; the edge's type
            r = api.patch(f"/api/runs/{run['id']}", json=body)
            assert r.status_code == 422 and locs(r) == [["lr"]], r.text
        r = api.patch(f"/api/runs/{run['id']}", json={"epochs": 3})
        assert r.status_code == 422 and locs(r) == [["epochs"]], r.text
    finally:
        api.post(f"/api/runs/{run['id']}/stop")


# ------------------------------------------------------------------ bodies JSON cannot hold
# (issue 8: a 5,000-digit number and a body that is not UTF-8 were a 400 naming nothing)

LONG = b"1" * 5000
JSON_HEADERS = {"content-type": "application/json"}


def body_problem(r, *words: str) -> bool:
    return (r.status_code == 422 and locs(r) == [[]]
            and all(w in r.json()["detail"][0]["msg"] for w in words))


def test_a_number_with_too_many_digits_or_a_body_not_utf8_is_named(server, api):
    run = create(api, {"preset": "mlp", "overrides": {"iterations": 10**6, "train_limit": 500}})
    try:
        cases = [("post", "/api/runs", b'{"preset": "mlp", "overrides": {"epochs": ' + LONG + b"}}"),
                 ("post", "/api/models/validate", b'{"model": [{"type": "dense", "units": '
                  + LONG + b"}]}"),
                 ("post", "/api/gradcheck", b'{"model": [{"type": "dense", "units": ' + LONG
                  + b"}]}"),
                 ("patch", f"/api/runs/{run['id']}", b'{"lr": ' + LONG + b"}")]
        for method, path, content in cases:
            r = api.request(method, path, content=content, headers=JSON_HEADERS)
            assert body_problem(r, "number", "digits"), (path, r.status_code, r.text)
        latin1 = "caf\u00e9".encode("latin-1")                    # 0xe9 alone: not UTF-8
        for method, path, content in [
                ("post", "/api/runs", b'{"preset": "mlp", "name": "' + latin1 + b'"}'),
                ("post", "/api/models/validate", b'{"model": [{"type": "' + latin1 + b'"}]}'),
                ("patch", f"/api/runs/{run['id']}", b'{"lr": 0.1, "x": "' + latin1 + b'"}')]:
            r = api.request(method, path, content=content, headers=JSON_HEADERS)
            assert body_problem(r, "UTF-8"), (path, r.status_code, r.text)
        wait_status(api, run["id"], "running")
        r = api.patch(f"/api/runs/{run['id']}", content=b'{"lr": NaN}', headers=JSON_HEADERS)
        assert r.status_code == 422 and locs(r) == [["lr"]], r.text
    finally:       # a body that is not JSON, to an operation that reads none: ignored
        r = api.post(f"/api/runs/{run['id']}/stop", content=b"\xff\xfe\xfa" + LONG,
                     headers={"content-type": "application/octet-stream"})
        assert r.status_code == 200, r.text


def test_nan_and_infinity_literals_and_deep_nesting_are_named(server, api):
    """Python's parser takes NaN and Infinity (JSON has neither): the engine's rules name the
    field that holds one, on every endpoint."""
    dense = b'[{"type": "flatten"}, {"type": "dense", "units": 10}]'
    for method, path, content, loc in [
            ("post", "/api/runs", b'{"preset": "mlp", "overrides": {"lr": NaN}}', ["train", "lr"]),
            ("post", "/api/runs", b'{"model": ' + dense + b', "train": {"lr": -Infinity}}',
             ["train", "lr"]),
            ("post", "/api/models/validate", b'{"model": ' + dense + b', "train": {"lr": NaN}}',
             ["train", "lr"]),
            ("post", "/api/gradcheck", b'{"model": [{"type": "flatten"}, {"type": "dropout", '
             b'"rate": NaN}, {"type": "dense", "units": 10}]}', ["model", 1, "rate"]),
            ("post", "/api/gradcheck", b'{"model": ' + dense + b', "dataset": {"train_limit": '
             b"Infinity}}", ["dataset", "train_limit"])]:
        r = api.request(method, path, content=content, headers=JSON_HEADERS)
        assert r.status_code in (200, 422) and loc in locs(r), (path, r.text)
        if r.status_code == 200:
            assert r.json()["valid"] is False
    for path in ("/api/runs", "/api/models/validate", "/api/gradcheck"):
        r = api.post(path, content=b'{"model": ' + b"[" * 50 + b"]" * 50 + b"}",
                     headers=JSON_HEADERS)
        assert body_problem(r, "nest"), (path, r.text)


# ------------------------------------------------------------------ overrides: one rule
# (issue 8: overrides {"lr": null} was accepted while train.lr: null is refused; epochs with
# iterations was accepted, the last one given silently winning)


def test_a_null_override_means_what_null_means_in_the_config(api):
    code, d = post_run(api, {"preset": "mlp", "overrides": {"lr": None}})
    assert code == 422 and [e["loc"] for e in d] == [["train", "lr"]], d
    code, full = post_run(api, {"model": MLP, "train": {"lr": None}})
    assert code == 422 and full == d
    code, d = post_run(api, {"preset": "mlp", "overrides": {"dataset": None}})
    assert code == 422 and [e["loc"] for e in d] == [["dataset", "name"]], d


def test_epochs_with_iterations_in_overrides_is_refused_as_in_a_config(api):
    for over in ({"epochs": 1, "iterations": 5}, {"iterations": 5, "epochs": 1}):
        code, d = post_run(api, {"preset": "mlp", "overrides": over})
        assert code == 422 and [e["loc"] for e in d] == [["train", "iterations"]], d
        assert "not both" in d[0]["msg"]
    run = create(api, {"preset": "mlp", "overrides": {"iterations": 3, "train_limit": 300,
                                                      "test_limit": 100}})
    assert run["config"]["train"]["iterations"] == 3 and run["config"]["train"]["epochs"] is None
    wait_status(api, run["id"], TERMINAL)
