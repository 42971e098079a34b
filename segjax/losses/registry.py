"""The loss registry: each term declares the model outputs it consumes, its weight, its
settings (a `config.loss.<name>` sub-dict whose defaults live only here, with the term) and
optionally a term it replaces.

`segmentation_loss` refuses two silent failures: a model head that no enabled term trains
(an `aux_logits` with the aux weight at 0) and an enabled term whose head the model lacks
(a boundary weight on a model without a boundary head).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax

from segjax.losses.common import IGNORE_LABEL, get

Outputs = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class LossTerm:
    name: str
    compute: Callable[[Outputs, jax.Array, Any], jax.Array]
    consumes: tuple[str, ...]
    weight: Callable[[Any], float]
    replaces: str | None
    # Outputs that are by-products of the forward pass rather than heads of their own (the
    # synergy model's per-scale logits): present without this term, nothing goes untrained.
    by_product: bool
    hint: str


TERMS: dict[str, LossTerm] = {}
# Top-level `config.loss` fields, then one sub-dict per settings group.
TOP_LEVEL_DEFAULTS: dict[str, Any] = {
    "name": "ohem",  # main-head loss: ce | ohem | bootstrap
    "class_weights": (),
    "ignore_label": IGNORE_LABEL,
}
SETTINGS_DEFAULTS: dict[str, dict[str, Any]] = {}
# Model outputs that are maps for inspection rather than heads (the synergy model's learned
# attention): no loss of their own, and no error for it.
INSPECTION_OUTPUTS: set[str] = set()


class LossConfigError(ValueError):
    """The loss config and the model's outputs disagree."""


def register_settings(group: str, defaults: Mapping[str, Any]) -> None:
    """Declare `config.loss.<group>` and its defaults (configs/default.py reads them here)."""
    if group in SETTINGS_DEFAULTS or group in TOP_LEVEL_DEFAULTS:
        raise ValueError(f"loss settings {group!r} are already registered")
    SETTINGS_DEFAULTS[group] = dict(defaults)


def settings(loss_cfg: Any, group: str) -> dict[str, Any]:
    """`config.loss.<group>` over its registered defaults (so tests may pass partial dicts)."""
    given = get(loss_cfg, group) or {}
    if not isinstance(given, Mapping):
        given = dict(given.items())
    unknown = set(given) - set(SETTINGS_DEFAULTS[group])
    if unknown:
        raise LossConfigError(f"config.loss.{group} has no field {sorted(unknown)[0]!r}; "
                              f"fields: {', '.join(SETTINGS_DEFAULTS[group])}")
    return {**SETTINGS_DEFAULTS[group], **given}


def register_inspection_output(key: str) -> None:
    """Declare a model output that no loss term trains directly (see INSPECTION_OUTPUTS)."""
    INSPECTION_OUTPUTS.add(key)


def default_config() -> dict[str, Any]:
    """Every `config.loss` field with its default, for configs/default.py."""
    return {**TOP_LEVEL_DEFAULTS, **{k: dict(v) for k, v in SETTINGS_DEFAULTS.items()}}


def register_loss_term(name: str, *, consumes: tuple[str, ...], weight: Callable[[Any], float],
                       replaces: str | None = None, by_product: bool = False, hint: str = ""):
    """Add `compute(outputs, labels, loss_cfg) -> value` as `loss/<name>`, weighted by
    `weight(loss_cfg)` (0 = off). With `replaces`, the named term is dropped whenever this
    one is on: for losses that redefine an objective rather than add to it. `hint` says how
    to switch the term on or off, for the errors below."""

    def register(compute):
        if name in TERMS:
            raise ValueError(f"loss term {name!r} is already registered")
        TERMS[name] = LossTerm(name, compute, tuple(consumes), weight, replaces, by_product,
                               hint)
        return compute

    return register


def enabled_terms(outputs: Outputs, loss_cfg: Any) -> dict[str, tuple[LossTerm, float]]:
    """The terms that apply, with their weights, after checking them against `outputs`."""
    weights = {name: float(term.weight(loss_cfg)) for name, term in TERMS.items()}
    on = {name: TERMS[name] for name, w in weights.items() if w}
    taken_over = set()  # a replacing term takes over the replaced one's outputs
    for term in list(on.values()):
        if term.replaces is not None:
            replaced = on.pop(term.replaces, None)
            taken_over |= set(replaced.consumes) if replaced else set()
    present = {key for key, value in outputs.items() if value is not None}
    for term in on.values():
        missing = [key for key in term.consumes if key not in present]
        if missing:
            raise LossConfigError(
                f"loss term {term.name!r} is on but the model has no {missing[0]!r} output "
                f"(it has {', '.join(sorted(present))}); {term.hint}")
    consumed = taken_over | {key for term in on.values() for key in term.consumes}
    by_products = INSPECTION_OUTPUTS | {key for term in TERMS.values() if term.by_product
                                        for key in term.consumes}
    for key in sorted(present - consumed - by_products):
        owners = [t for t in TERMS.values() if key in t.consumes]
        fix = owners[0].hint if owners else "register a loss term that consumes it"
        raise LossConfigError(f"the model outputs {key!r} but no enabled loss term uses it, "
                              f"so that head would never train; {fix}")
    return {name: (term, weights[name]) for name, term in on.items()}


def segmentation_loss(outputs: Outputs, labels: jax.Array, loss_cfg: Any
                      ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Weighted sum of the enabled terms; also the unweighted values keyed `loss/<term>`.

    Logits at lower resolution than the labels are upsampled first (inside each term).
    """
    total, values = 0.0, {}
    for name, (term, weight) in enabled_terms(outputs, loss_cfg).items():
        value = term.compute(outputs, labels, loss_cfg)
        values[f"loss/{name}"] = value
        total = total + weight * value
    return total, values
