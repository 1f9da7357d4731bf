"""GET /openapi.json says what the server does: the statuses each operation answers, and
request bodies of the shape the server takes (issue 8: five operations answered an unlisted
409, and the bodies of runs, gradcheck, predict and weights allowed far more)."""
from __future__ import annotations

import pytest

from engine import BSDE_PRESETS, PRESETS

RUN = "/api/runs/{run_id}"
BODY_OPS = [("post", "/api/runs"), ("patch", RUN), ("post", "/api/models/validate"),
            ("post", RUN + "/predict"), ("post", RUN + "/weights"), ("post", "/api/gradcheck"),
            ("post", "/api/sweeps"), ("post", "/api/sweeps/{sweep_id}/extend"),
            ("post", RUN + "/fork"), ("post", RUN + "/tempo"), ("post", RUN + "/step"),
            ("post", RUN + "/inspect"), ("post", RUN + "/notes")]
CONFLICTS = [("patch", RUN), ("post", RUN + "/pause"), ("post", RUN + "/resume"),
             ("post", RUN + "/weights"), ("post", "/api/gradcheck"), ("post", RUN + "/predict"),
             ("post", RUN + "/continue"), ("post", RUN + "/tempo"), ("post", RUN + "/step"),
             ("post", RUN + "/inspect")]


@pytest.fixture(scope="module")
def doc(api):
    r = api.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


def op(doc, method, path) -> dict:
    return doc["paths"][path][method]


def codes(doc, method, path) -> set[str]:
    return set(op(doc, method, path)["responses"])


def resolve(doc, schema: dict) -> dict:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].split("/")[-1]]
    return schema


def body(doc, method, path) -> dict:
    content = op(doc, method, path)["requestBody"]["content"]
    return resolve(doc, content["application/json"]["schema"])


@pytest.mark.parametrize("method,path", CONFLICTS)
def test_every_409_is_listed(doc, method, path):
    assert "409" in codes(doc, method, path)


def test_statuses_are_listed_where_they_happen(doc):
    every = [(m, p) for p, ops in doc["paths"].items() for m in ops]
    for m, p in every:
        got = codes(doc, m, p)
        assert {"400", "401"} <= got, (m, p)          # Host and token: the guard, everywhere
        assert ("403" in got) == (m in ("post", "patch", "delete")), (m, p)     # Origin
        assert ("413" in got) == ((m, p) in BODY_OPS), (m, p)
        assert ("404" in got) == ("{" in p or p == "/api/gradcheck"), (m, p)
    for m, p in [("get", "/api/runs"), ("get", "/api/presets"), ("get", "/api/spec"),
                 ("get", "/api/health"), ("get", RUN), ("delete", RUN), ("post", RUN + "/stop")]:
        assert "409" not in codes(doc, m, p) and "422" not in codes(doc, m, p), (m, p)
    assert "503" in codes(doc, "post", "/api/runs") and "503" in codes(doc, "delete", RUN)


def test_errors_have_the_one_shape(doc):
    """``{"detail": [{"loc", "msg"}]}``, never FastAPI's HTTPValidationError (which has
    ``type`` and a ``body`` prefix the server never sends)."""
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for p, ops in doc["paths"].items():
        for m, o in ops.items():
            for status, resp in o["responses"].items():
                if status.startswith("4") or status.startswith("5"):
                    schema = resolve(doc, resp["content"]["application/json"]["schema"])
                    item = resolve(doc, schema["properties"]["detail"]["items"])
                    assert set(item["properties"]) == {"loc", "msg"}, (m, p, status)


def test_create_run_body_is_a_preset_or_a_config(doc):
    s = body(doc, "post", "/api/runs")
    assert {"model", "train", "dataset", "preset", "overrides", "name", "start_paused", "where",
            "task", "equation", "subnet", "y_init_range"} == set(s["properties"])
    assert s["additionalProperties"] is False
    assert s["properties"]["preset"]["enum"] == list(PRESETS) + list(BSDE_PRESETS)
    shapes = {tuple(alt["required"]): alt for alt in s["oneOf"]}
    assert set(shapes) == {("preset",), ("model",), ("equation",)}
    assert all(shapes[("preset",)]["properties"][k] is False for k in ("model", "train", "dataset",
                                                                       "equation"))
    assert all(shapes[("model",)]["properties"][k] is False for k in ("preset", "overrides",
                                                                      "equation"))
    assert all(shapes[("equation",)]["properties"][k] is False for k in ("model", "dataset"))
    over = s["properties"]["overrides"]
    assert over["type"] == "object" and over["additionalProperties"] is False
    assert {"lr", "epochs", "iterations", "batch_size", "train_limit", "test_limit", "dataset",
            "normalize"} <= set(over["properties"]) and "path" not in over["properties"]
    assert over["not"] == {"required": ["epochs", "iterations"]}
    train = s["properties"]["train"]
    assert train["properties"]["lr"]["exclusiveMinimum"] == 0
    assert train["not"] == {"required": ["epochs", "iterations"]}
    schedules = train["properties"]["schedule"]["oneOf"]
    kinds = {"constant", "step", "exponential", "cosine", "loss"}
    assert {alt["properties"]["type"]["const"] for alt in schedules[1:]} == kinds
    assert set(schedules[0]["enum"]) == kinds                     # or just its name
    layers = s["properties"]["model"]["items"]["oneOf"]
    dense = next(alt for alt in layers if alt["properties"]["type"]["const"] == "dense")
    assert "oneOf" in dense["properties"]["init"]       # an init type and its own fields
    for k in ("model", "train", "dataset", "preset", "overrides"):
        assert "anyOf" not in s["properties"][k], k     # null is not a shape the docs offer


def test_gradcheck_predict_patch_and_weights_bodies(doc):
    s = body(doc, "post", "/api/gradcheck")
    assert {tuple(alt["required"]) for alt in s["oneOf"]} == {("run_id",), ("model",)}
    image = body(doc, "post", RUN + "/predict")["properties"]["image"]
    pixel = image["items"]["items"]
    assert pixel["minimum"] == 0 and pixel["maximum"] == 1
    patch = body(doc, "patch", RUN)
    assert patch["minProperties"] == 1 and patch["additionalProperties"] is False
    assert patch["properties"]["lr"]["exclusiveMinimum"] == 0
    assert patch["properties"]["momentum"]["maximum"] < 1
    weights = op(doc, "post", RUN + "/weights")["requestBody"]["content"]
    assert list(weights) == ["application/octet-stream"]
    assert ".npz" in weights["application/octet-stream"]["schema"]["description"]
