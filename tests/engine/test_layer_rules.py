"""Each layer class answers its own rules (fields, output shape, parameter count) and the
validated summary built from those answers is what the built model really does."""
import numpy as np
import pytest

from engine import validate_model
from engine.fields import MISSING
from engine.layers import LAYER_ALIASES, LAYER_TYPES, Layer
from engine.model import Model
from engine.spec import LAYER_FIELDS, SpecError

# (layer config, input shape without the batch axis): at least one per layer type
CASES = [
    ({"type": "dense", "units": 7}, (5,)),
    ({"type": "dense", "units": 4, "use_bias": False, "init": {"type": "he"}}, (6,)),
    ({"type": "conv2d", "filters": 3, "kernel_size": 3}, (6, 6, 2)),
    ({"type": "conv2d", "filters": 4, "kernel_size": 3, "stride": 2, "padding": 1}, (7, 7, 3)),
    ({"type": "conv2d", "filters": 2, "kernel_size": 5, "padding": 2, "use_bias": False},
     (6, 5, 6)),
    ({"type": "maxpool2d"}, (7, 5, 2)),
    ({"type": "maxpool2d", "pool_size": 3, "stride": 2}, (7, 7, 2)),
    ({"type": "avgpool2d"}, (6, 6, 3)),
    ({"type": "avgpool2d", "pool_size": 3, "stride": 1}, (5, 5, 2)),
    ({"type": "flatten"}, (3, 4, 2)),
    ({"type": "relu"}, (5,)),
    ({"type": "relu"}, (4, 4, 2)),
    ({"type": "sigmoid"}, (5,)),
    ({"type": "tanh"}, (3, 3, 2)),
    ({"type": "leaky_relu", "alpha": 0.2}, (5,)),
    ({"type": "dropout", "rate": 0.5}, (4, 4, 1)),
    ({"type": "batchnorm"}, (5,)),
    ({"type": "batchnorm", "momentum": 0.5}, (3, 3, 2)),
]


def test_every_layer_type_has_a_case():
    assert {cfg["type"] for cfg, _ in CASES} == set(LAYER_TYPES)


@pytest.mark.parametrize("cfg,shape", CASES, ids=[f"{c['type']}-{i}" for i, (c, _) in enumerate(CASES)])
def test_summary_is_the_built_model(cfg, shape):
    """Output shape and parameter count of every layer: the validated summary (what the
    classes answer before allocating) against the built model run on a batch."""
    layers = [cfg]
    out_shape = LAYER_TYPES[cfg["type"]].from_config(cfg).compute_output_shape(shape)
    if len(out_shape) > 1:
        layers.append({"type": "flatten"})
    layers.append({"type": "dense", "units": 3})
    norm, summary = validate_model(layers, shape, num_classes=3)
    model = Model(layers, input_shape=shape, num_classes=3, dtype="float64", seed=1)
    assert model.get_config() == norm
    assert len(summary["layers"]) == len(model.layers)
    n = 2
    x = np.random.default_rng(0).standard_normal((n,) + shape)
    for row, layer in zip(summary["layers"], model.layers):
        x = layer.forward(x, train=True)
        assert list(x.shape) == [n] + row["output_shape"], layer
        assert sum(p.value.size for p in layer.params) == row["params"], layer
    assert summary["params"] == sum(p.value.size for p in model.params)
    conv = model.layers[0]
    if cfg["type"] == "conv2d":            # the memory estimate's im2col size, per image
        per_image = conv._cols.size // n
        oh, ow = summary["layers"][0]["output_shape"][:2]
        assert per_image == conv.work_size(shape) + oh * ow * conv.use_bias


def test_field_tables_and_aliases_come_from_the_classes():
    assert LAYER_FIELDS == {t: cls.fields for t, cls in LAYER_TYPES.items()}
    assert all(LAYER_TYPES[t].type == t for t in LAYER_TYPES)
    assert set(LAYER_ALIASES.values()) <= set(LAYER_TYPES)
    for t, cls in LAYER_TYPES.items():
        # a config of the required fields round-trips through the class
        cfg = {"type": t, **{k: 3 for k, f in cls.fields.items() if f.default is MISSING}}
        again = cls.from_config(cls.from_config(cfg).get_config()).get_config()
        assert again == cls.from_config(cfg).get_config()
        assert set(again) - {"type"} <= set(cls.fields), t


def test_a_layer_that_does_not_say_its_shape_is_an_error(monkeypatch):
    """No silent fallback: a layer class without compute_output_shape fails validation
    loudly instead of passing its input shape on."""
    class Mystery(Layer):
        type = "mystery"

    monkeypatch.setitem(LAYER_TYPES, "mystery", Mystery)
    with pytest.raises(NotImplementedError, match="Mystery"):
        validate_model([{"type": "flatten"}, {"type": "mystery"}, {"type": "dense", "units": 10}],
                       (4, 4, 1), 10)


def test_unknown_type_is_still_reported_with_its_loc():
    with pytest.raises(SpecError) as info:
        validate_model([{"type": "flatten"}, {"type": "mystery"}], (4, 4, 1), 10)
    assert info.value.errors[0]["loc"] == ["model", 1, "type"]


def test_class_attributes_replace_the_name_lists():
    acts = {t for t, cls in LAYER_TYPES.items() if cls.is_activation}
    assert acts == {"relu", "leaky_relu", "sigmoid", "tanh"}
    assert {t for t, cls in LAYER_TYPES.items() if cls.fresh_output} == \
        {"conv2d", "dense", "maxpool2d", "avgpool2d"}
    assert {t for t, cls in LAYER_TYPES.items() if cls.has_kernel} == {"conv2d", "dense"}
    assert {t for t, cls in LAYER_TYPES.items() if cls.breaks_sharding} == {"batchnorm"}
    assert {t for t, cls in LAYER_TYPES.items() if cls.gains_from_shards} == {"conv2d"}


def test_initialisers_take_their_defaults_from_the_one_table(monkeypatch):
    """init_array fills a parameter left out from engine.fields.INIT_FIELDS, the table that
    validation checks against and GET /api/spec serves."""
    from dataclasses import replace

    from engine import fields
    from engine.layers import init_array, init_bias
    rng = lambda: np.random.default_rng(0)   # noqa: E731
    shape = (200, 50)
    for kind, name in (("normal", "std"), ("uniform", "limit")):
        default = fields.INIT_FIELDS[kind][name].default
        same = init_array({"type": kind, name: default}, shape, 200, 50, rng(), np.float64)
        np.testing.assert_array_equal(init_array({"type": kind}, shape, 200, 50, rng(), np.float64), same)
        monkeypatch.setitem(fields.INIT_FIELDS[kind], name,
                            replace(fields.INIT_FIELDS[kind][name], default=3 * default))
        tripled = init_array({"type": kind}, shape, 200, 50, rng(), np.float64)
        np.testing.assert_allclose(tripled, 3 * same)
    assert not init_bias({"type": "normal"}, (5,), rng(), np.float64).any()


def test_batchnorm_start_draws_gamma_and_beta_only_when_asked():
    """gamma ~ U(gamma_min, gamma_max) and beta ~ N(0, beta_std^2) (the Deep BSDE reference's
    start); the default start (1, 0) draws nothing, so other nets' weights are unchanged."""
    import numpy as np
    from engine import Model
    from engine.spec import SpecError
    plain = [{"type": "dense", "units": 50}, {"type": "batchnorm"}]
    drawn = [{"type": "dense", "units": 50},
             {"type": "batchnorm", "gamma_min": 0.1, "gamma_max": 0.5, "beta_std": 0.1}]
    a, b = Model(plain, (8,), 50, seed=4), Model(drawn, (8,), 50, seed=4)
    assert np.array_equal(a.params[0].value, b.params[0].value)
    assert np.all(a.params[2].value == 1) and np.all(a.params[3].value == 0)
    gamma, beta = b.params[2].value, b.params[3].value
    assert gamma.min() >= 0.1 and gamma.max() <= 0.5 and gamma.std() > 0.05
    assert 0.05 < beta.std() < 0.2
    assert b.get_config()[1]["gamma_min"] == 0.1 and "gamma_min" not in a.get_config()[1]
    with pytest.raises(SpecError) as e:
        validate_model([{"type": "dense", "units": 5},
                        {"type": "batchnorm", "gamma_min": 0.5, "gamma_max": 0.1}], (8,), 5)
    assert e.value.errors[0]["loc"][:2] == ["model", 1] and "gamma_min" in e.value.errors[0]["msg"]
