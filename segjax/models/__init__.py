"""Model registry: family modules register their models with `@register(name, **traits)`.

Every module of this package is imported on first lookup, so adding a family is adding a
file; there is no central table to keep in sync.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn

__all__ = ["accepted_kwargs", "available", "build", "default_kwargs", "register",
           "traits"]

_NOT_FAMILIES = frozenset({"layers"})
# Dataclass fields every linen Module has, which are not model options.
_MODULE_INTERNALS = frozenset({"parent", "name"})


@dataclasses.dataclass(frozen=True)
class _Entry:
    factory: Callable[..., nn.Module]
    defaults: Mapping[str, Any]
    traits: Mapping[str, Any]


_REGISTRY: dict[str, _Entry] = {}
_discovered = False


def register(name: str, *, defaults: Mapping[str, Any] | None = None, **model_traits: Any):
    """Register a Module class (or a factory taking `num_classes`) under `name`.

    `defaults` are constructor kwargs baked into this name (one class can back several
    variants); `model_traits` record capabilities such as `aux_heads=1` for trainers.
    Returns the decorated object unchanged.
    """

    def decorator(factory):
        if name in _REGISTRY and _REGISTRY[name].factory is not factory:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = _Entry(factory, dict(defaults or {}), dict(model_traits))
        return factory

    return decorator


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name not in _NOT_FAMILIES:
            importlib.import_module(f"{__name__}.{info.name}")
    _discovered = True


def _entry(name: str) -> _Entry:
    _discover()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(available())}")
    return _REGISTRY[name]


def available() -> list[str]:
    """Registered model names, sorted."""
    _discover()
    return sorted(_REGISTRY)


def traits(name: str) -> dict[str, Any]:
    """The traits recorded at registration (a copy)."""
    return dict(_entry(name).traits)


def accepted_kwargs(name: str) -> tuple[str, ...] | None:
    """Constructor options of `name` besides `num_classes`; None if it takes **kwargs."""
    factory = _entry(name).factory
    if dataclasses.is_dataclass(factory):
        names = [f.name for f in dataclasses.fields(factory) if f.init]
    else:
        params = inspect.signature(factory).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        names = [p.name for p in params]
    return tuple(n for n in names if n not in _MODULE_INTERNALS and n != "num_classes")


def default_kwargs(name: str) -> dict[str, Any]:
    """The constructor options `build(name, C)` uses when none are given: the signature's
    defaults overridden by the registered ones (options without a default are left out)."""
    entry = _entry(name)
    factory = entry.factory
    found: dict[str, Any] = {}
    if dataclasses.is_dataclass(factory):
        for f in dataclasses.fields(factory):
            if f.init and f.default is not dataclasses.MISSING:
                found[f.name] = f.default
            elif f.init and f.default_factory is not dataclasses.MISSING:
                found[f.name] = f.default_factory()
    else:
        for p in inspect.signature(factory).parameters.values():
            if p.default is not inspect.Parameter.empty:
                found[p.name] = p.default
    found = {k: v for k, v in found.items() if k not in _MODULE_INTERNALS and k != "num_classes"}
    return {**found, **entry.defaults}


def build(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Instantiate a registered model; kwargs override the registered defaults."""
    entry = _entry(name)
    accepted = accepted_kwargs(name)
    if accepted is not None:
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise TypeError(f"model {name!r} got unexpected argument(s) {', '.join(unknown)}; "
                            f"accepted: {', '.join(accepted)}")
    return entry.factory(num_classes=num_classes, **{**entry.defaults, **kwargs})
