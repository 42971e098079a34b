"""Param groups: the decoder LR / weight-decay multipliers over SGD, Adam and AdamW."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from segjax import train

# --- decoder LR / weight-decay multipliers -------------------------------------------------


def _opt_cfg(name, **fields):
    cfg = default.get_config().optimizer
    cfg.name = name
    cfg.learning_rate, cfg.end_learning_rate, cfg.schedule = 0.1, 1e-3, "cosine"
    cfg.weight_decay = 1e-2
    for key, value in fields.items():
        setattr(cfg, key, value)
    return cfg


def _params(with_backbone):
    rng = np.random.default_rng(0)
    leaf = lambda *shape: jnp.asarray(rng.standard_normal(shape), jnp.float32)
    first = "backbone" if with_backbone else "stem"
    return {first: {"conv": {"kernel": leaf(3, 3, 2, 4)}, "bn": {"scale": leaf(4)}},
            "head": {"kernel": leaf(1, 1, 4, 5), "bias": leaf(5)}}


def _updates(tx, params, steps=3):
    """Updates of `steps` steps with fixed pseudo-gradients."""
    state, out = tx.init(params), []
    for i in range(steps):
        grads = jax.tree.map(lambda p, k=i + 1: jnp.cos(p * k), params)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        out.append(updates)
    return out, state


def _single_group(cfg, num_steps):
    """The optimizer as it was before parameter groups (one LR, one weight decay)."""
    schedule = train.make_schedule(cfg, num_steps)
    if cfg.name == "adamw":
        return optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay)
    base = (optax.sgd(schedule, momentum=cfg.momentum, nesterov=cfg.nesterov)
            if cfg.name == "sgd" else optax.adam(schedule, b1=cfg.b1, b2=cfg.b2))
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay), base)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_unit_multipliers_are_the_single_group_optimizer(name):
    for with_backbone in (False, True):
        params = _params(with_backbone)
        tx, _ = train.make_optimizer(_opt_cfg(name), 10)
        got, state = _updates(tx, params)
        want, want_state = _updates(_single_group(_opt_cfg(name), 10), params)
        assert jax.tree.structure(state) == jax.tree.structure(want_state)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_without_backbone_everything_is_decoder(name):
    params = _params(with_backbone=False)
    assert set(jax.tree.leaves(train.decoder_labels(params))) == {"decoder"}
    tx, _ = train.make_optimizer(_opt_cfg(name, decoder_lr_multiplier=10.0,
                                          decoder_wd_multiplier=3.0), 10)
    scaled = _opt_cfg(name, learning_rate=1.0, end_learning_rate=1e-2, weight_decay=3e-2)
    got, _ = _updates(tx, params)
    want, _ = _updates(_single_group(scaled, 10), params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


def test_decoder_update_is_ten_times_the_backbone_one_step_sgd():
    params = {"backbone": {"w": jnp.ones(3)}, "head": {"w": jnp.ones(3)}}
    ones = jax.tree.map(jnp.ones_like, params)

    def one_step(grads, **fields):
        cfg = _opt_cfg("sgd", **{"schedule": "constant", "weight_decay": 0.0, **fields})
        tx, _ = train.make_optimizer(cfg, 10)
        updates, _ = tx.update(grads, tx.init(params), params)
        return np.asarray(updates["backbone"]["w"]), np.asarray(updates["head"]["w"])

    backbone, head = one_step(ones, decoder_lr_multiplier=10.0)
    np.testing.assert_allclose(backbone, -0.1, rtol=1e-6)
    np.testing.assert_allclose(head, 10 * backbone, rtol=1e-6)
    # Weight decay alone (zero gradient): the decoder decays 10× faster, and 100× with both.
    zeros = jax.tree.map(jnp.zeros_like, params)
    backbone, head = one_step(zeros, weight_decay=1e-2, decoder_wd_multiplier=10.0)
    np.testing.assert_allclose(backbone, -0.1 * 1e-2, rtol=1e-6)
    np.testing.assert_allclose(head, 10 * backbone, rtol=1e-6)
    backbone, head = one_step(zeros, weight_decay=1e-2, decoder_lr_multiplier=10.0,
                              decoder_wd_multiplier=10.0)
    np.testing.assert_allclose(head, 100 * backbone, rtol=1e-6)


