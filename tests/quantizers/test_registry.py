"""The registry: a quantizer is configured by one sub-dict (`config.model.quantizer`), every
option of every module is reachable from it, and the flat arguments of older exports translate
to the sub-dict they meant."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from nlq_jax import models, quantizers
from nlq_jax.models import nlq
from nlq_jax.quantizers.codebook import STATE

# The options without a default, and a value for each.
REQUIRED = {"codebook_size": 16, "num_stages": 2, "groups": 2}
# Options whose values are names: another name than the default.
OTHER_NAME = {"distance": "cosine", "gradient": "rotation", "commitment": "total"}
D = 8  # the model's latent_dim


def other_value(name: str, default):
    """A value of option `name` that is not its default (of the default's type)."""
    if name in OTHER_NAME:
        return OTHER_NAME[name]
    if name == "axis_name":
        return "batch"
    if name == "levels":
        return (5, 3)
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 3
    if isinstance(default, float):
        return default / 2 + 0.125
    raise AssertionError(f"no test value for option {name}={default!r}")


def sub_dicts():
    """(quantizer, option, sub-dict setting that option to a non-default value), for every
    option of every registered quantizer."""
    for name, cls in quantizers.QUANTIZERS.items():
        fields = {f.name: f for f in dataclasses.fields(cls)}
        base = {k: v for k, v in REQUIRED.items() if k in fields}
        for option in quantizers.option_names(name):
            f = fields[option]
            default = REQUIRED.get(option, f.default)
            if f.default is dataclasses.MISSING:
                value = other_value(option, default)
            else:
                value = other_value(option, f.default)
            yield name, option, {"name": name, **base, option: value}


@pytest.mark.parametrize(("name", "option", "options"), list(sub_dicts()))
def test_every_option_of_every_quantizer_is_reachable_from_a_sub_dict(name, option, options):
    for model_name, field in (("nlq", "latent_quantizer"), ("vqvae2", "quantizer_top")):
        model = models.get_model(model_name, N=16, latent_dim=D, quantizer=options)
        built = nlq.build_quantizer(model)
        assert type(built) is quantizers.QUANTIZERS[name]
        assert getattr(built, option) == options[option], (model_name, field)
        assert built.dim == D  # the model supplies the latent size
        hash(model)  # a Flax module's fields must hash


def test_option_names_are_the_module_fields():
    assert quantizers.option_names("vq") == (
        "codebook_size", "beta", "ema", "decay", "eps", "distance", "gradient", "kmeans_init",
        "kmeans_iters", "restart_dead", "dead_threshold", "axis_name",
    )  # fmt: skip
    assert "dim" not in quantizers.option_names("fsq")


def test_unknown_options_and_bare_names_are_refused():
    with pytest.raises(ValueError, match="no option 'bogus'"):
        quantizers.get_quantizer("vq", codebook_size=4, bogus=1)
    with pytest.raises(ValueError, match="unknown quantizer"):
        quantizers.get_quantizer("vqq", codebook_size=4)
    with pytest.raises(TypeError, match="from_legacy_kwargs"):
        models.get_model("nlq", quantizer="rvq")
    # A model refuses a sub-dict it could not build when it is made, not when first called.
    for bad, match in (
        ({"name": "vq", "codebook_sze": 4}, "no option 'codebook_sze'"),
        ({"name": "vq", "codebook_size": 4, "dim": 8}, "no option 'dim'"),  # latent_dim's
        ({"codebook_size": 4}, "unknown quantizer None"),
    ):
        with pytest.raises(ValueError, match=match):
            models.get_model("nlq", quantizer=bad)
    assert models.get_model("nlq", quantizer={"name": "vq", "codebook_size": 4, "ema_decay": 0.9})


def test_cosine_distance_and_rotation_trick_from_the_model_config():
    """Options no flat config could set: a cosine-distance VQ codes unit vectors (VQGAN-style
    l2-normalised lookup), and its training gradient is the rotation trick's, not the identity."""
    vq = {"name": "vq", "codebook_size": 8, "distance": "cosine", "gradient": "rotation"}
    model = models.get_model("nlq", N=16, latent_dim=D, attention=False, quantizer=vq)
    x = np.random.default_rng(0).uniform(size=(1, 32, 32, 3)).astype(np.float32)
    rngs = {k: jax.random.PRNGKey(i) for i, k in enumerate(("params", "quantizer"))}
    variables = model.init(rngs, x, training=True)

    def quantize(m, x, train):
        return m.latent_quantizer(m.g_a(x), training=train)[0]

    z_q = model.apply(variables, x, False, method=quantize)
    np.testing.assert_allclose(np.linalg.norm(z_q, axis=-1), 1.0, rtol=1e-5)
    # ∂Σz_q/∂z of an l2 VQ: all ones for the identity (ste), not for the rotation trick.
    z = jax.random.normal(jax.random.PRNGKey(3), (5, D))
    for gradient, identity in (("ste", True), ("rotation", False)):
        q = quantizers.get_quantizer("vq", codebook_size=8, dim=D, gradient=gradient)
        qv = q.init(jax.random.PRNGKey(0), z, training=False)
        grad = jax.grad(lambda z, q=q, qv=qv: q.apply(qv, z, training=True)[0].sum())(z)
        assert np.allclose(grad, 1.0) is identity, gradient


def test_only_rvq_is_prefix_decodable():
    for name, cls in quantizers.QUANTIZERS.items():
        assert cls.prefix_decodable is (name == "rvq"), name
    for options, stages in (
        ({"name": "rvq", "codebook_size": 8, "num_stages": 4}, 4),
        ({"name": "pvq", "codebook_size": 8, "groups": 4}, 0),
        ({"name": "fsq"}, 0),
    ):
        model = models.get_model("nlq", latent_dim=D, quantizer=options)
        assert nlq.prefix_stages(model) == stages
        assert nlq.progressive(model) is (stages > 0)


def test_restarts_need_a_positive_dead_threshold():
    """restart_dead follows dead_threshold inside the module: at 0 nothing is restarted,
    whether or not restart_dead is set, so a training call needs no random key."""
    z = jax.random.normal(jax.random.PRNGKey(1), (64, 4)) * 3
    states = []
    for restart in (True, False):
        q = quantizers.get_quantizer(
            "vq", codebook_size=32, dim=4, kmeans_init=False, restart_dead=restart,
            dead_threshold=0.0,
        )  # fmt: skip
        variables = q.init(jax.random.PRNGKey(0), z, training=False)
        _, state = q.apply(variables, z, training=True, mutable=[STATE])  # no rng
        states.append(state)
    for a, b in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1]), strict=True):
        np.testing.assert_array_equal(a, b)


LEGACY = [
    # (model, flat kwargs, the sub-dict they meant: written from the old flat defaults)
    (
        "nlq",
        {"quantizer": "rvq", "codebook_size": 32, "num_stages": 2, "stage_dropout": 0.5,
         "rvq_commitment": "total", "dead_code_threshold": 0.0, "ema_decay": 0.9},
        {"name": "rvq", "codebook_size": 32, "num_stages": 2, "beta": 0.25, "decay": 0.9,
         "dead_threshold": 0.0, "kmeans_init": True, "dropout": True, "dropout_rate": 0.5,
         "commitment": "total"},
    ),
    (
        "nlq",
        {"quantizer": "vq"},
        {"name": "vq", "codebook_size": 8192, "beta": 0.25, "decay": 0.99,
         "dead_threshold": 1.0, "kmeans_init": True},
    ),
    ("nlq", {"quantizer": "fsq", "levels": [5, 5, 3]}, {"name": "fsq", "levels": (5, 5, 3)}),
    ("nlq", {"quantizer": "scalar", "levels": (7,)}, {"name": "scalar", "levels": 7}),
    (
        "nlq",
        {"quantizer": "scalar", "latent_dim": 2, "levels": (7, 5)},
        {"name": "scalar", "levels": (7, 5)},
    ),
    ("nlq", {"quantizer": "pvq", "groups": 2, "kmeans_init": False},
     {"name": "pvq", "groups": 2, "codebook_size": 8192, "beta": 0.25, "decay": 0.99,
      "dead_threshold": 1.0, "kmeans_init": False}),
    (
        "nlq",
        {"quantizer": "gumbel", "codebook_size": 16, "temperature_decay_steps": 10},
        {"name": "gumbel", "codebook_size": 16, "temperature": 1.0, "temperature_end": 1 / 16,
         "temperature_decay_steps": 10},
    ),
    # vqvae2's own defaults: vq of 512 codes; an rvq of 2 stages.
    ("vqvae2", {"codebook_size": 64}, {"name": "vq", "codebook_size": 64, "beta": 0.25,
                                       "decay": 0.99, "dead_threshold": 1.0,
                                       "kmeans_init": True}),
    ("vqvae2", {"quantizer": "rvq"}, {"name": "rvq", "codebook_size": 512, "num_stages": 2,
                                      "beta": 0.25, "decay": 0.99, "dead_threshold": 1.0,
                                      "kmeans_init": True, "dropout": True,
                                      "dropout_rate": 1.0, "commitment": "stages"}),
]  # fmt: skip


@pytest.mark.parametrize(("model_name", "flat", "expected"), LEGACY)
def test_flat_legacy_arguments_translate_to_the_sub_dict(model_name, flat, expected):
    kwargs = quantizers.from_legacy_kwargs(model_name, {"N": 16, **flat})
    assert kwargs.pop("quantizer") == expected
    assert kwargs == {"N": 16, **({"latent_dim": 2} if "latent_dim" in flat else {})}
    models.get_model(model_name, **kwargs, quantizer=expected)  # it builds


def test_sub_dicts_and_other_models_are_left_alone():
    new = {"N": 16, "quantizer": {"name": "fsq"}}
    assert quantizers.from_legacy_kwargs("nlq", new) == new
    assert quantizers.from_legacy_kwargs("nlq", {"N": 16}) == {"N": 16}  # the default model
    assert quantizers.from_legacy_kwargs("hyperprior", {"N": 16, "M": 8}) == {"N": 16, "M": 8}
    with pytest.raises(ValueError, match="beside a quantizer sub-dict"):
        quantizers.from_legacy_kwargs("nlq", {**new, "codebook_size": 8})
