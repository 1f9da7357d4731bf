"""GET /api/spec: the engine's field tables as JSON, and they are the rules validation applies."""
from __future__ import annotations

from engine import spec
from engine.datasets import dataset_names


def rule_of(field: dict) -> spec.Field:
    """A served field back as engine.spec's ``Field``."""
    return spec.Field(field["kind"], spec.MISSING if field["required"] else field["default"],
                      field.get("min"), field.get("max"), tuple(field.get("choices", ())),
                      field.get("help", ""))


def test_spec_serves_the_engine_tables(api):
    r = api.get("/api/spec")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    s = r.json()
    assert list(s["layers"]) == list(spec.LAYER_FIELDS)
    for layer_type, fields in spec.LAYER_FIELDS.items():
        assert {k: rule_of(v) for k, v in s["layers"][layer_type].items()} == fields, layer_type
    assert {k: rule_of(v) for k, v in s["train"].items()} == spec.TRAIN_FIELDS
    for name, fields in spec.SCHEDULE_FIELDS.items():
        assert {k: rule_of(v) for k, v in s["schedules"][name].items()} == fields
    # the dataset fields, less `path` (never taken over HTTP)
    assert {k: rule_of(v) for k, v in s["dataset"].items()} == {
        k: v for k, v in spec.DATASET_FIELDS.items() if k != "path"}
    assert s["layer_aliases"] == spec.LAYER_ALIASES
    assert s["init_types"] == list(spec.INIT_TYPES)
    # each initialiser's parameters, the one table engine.layers.init_array also reads
    assert list(s["inits"]) == list(spec.INIT_TYPES)
    for kind in spec.INIT_TYPES:
        assert {k: rule_of(v) for k, v in s["inits"][kind].items()} == spec.init_fields(kind)
    assert s["inits"]["normal"]["std"]["default"] == 0.01
    assert s["optimizers"] == list(spec.OPTIMIZER_TYPES)
    assert s["datasets"]["mnist"] == {"shape": [28, 28, 1], "num_classes": 10,
                                      "class_names": list("0123456789"),
                                      "train_size": 60_000, "test_size": 10_000}
    assert list(s["datasets"]) == list(dataset_names())     # the registry, not a copy
    assert s["limits"]["max_layers"] == spec.MAX_LAYERS
    units = s["layers"]["dense"]["units"]
    assert units["required"] and units["default"] is None and units["kind"] == "int"


def test_served_ranges_are_what_validation_enforces(api):
    s = api.get("/api/spec").json()
    units = s["layers"]["dense"]["units"]
    rate = s["layers"]["dropout"]["rate"]
    lr = s["train"]["lr"]

    def check(layer: dict, train: dict | None = None) -> dict:
        body = {"model": [{"type": "flatten"}, layer, {"type": "dense", "units": 10}],
                "train": train or {}}
        r = api.post("/api/models/validate", json=body)
        assert r.status_code == 200, r.text
        return r.json()
    assert check({"type": "dropout", "rate": rate["max"]})["valid"]
    bad = check({"type": "dropout", "rate": rate["max"] + 0.005})
    assert not bad["valid"] and bad["errors"][0]["loc"] == ["model", 1, "rate"]
    assert check({"type": "dense", "units": units["min"]})["valid"]
    bad = check({"type": "dense", "units": units["min"] - 1})
    assert not bad["valid"] and f"between {units['min']} and {units['max']}" in bad["errors"][0]["msg"]
    bad = check({"type": "dense"})                     # a required field left out
    assert not bad["valid"] and bad["errors"][0]["loc"] == ["model", 1, "units"]
    assert check({"type": "relu"}, {"lr": lr["max"]})["valid"]
    assert not check({"type": "relu"}, {"lr": lr["min"] - 1})["valid"]
