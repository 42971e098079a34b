"""Model registry: family modules register their models with `@register(name, ...)`.

Every module of this package is imported on first lookup, so adding a family is adding a
file; there is no central table to keep in sync. That includes the PyTorch checkpoint key
renames, which each model registers next to its own module names.
"""

from __future__ import annotations

import ast
import collections.abc
import dataclasses
import importlib
import inspect
import pkgutil
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn

__all__ = ["Renames", "accepted_kwargs", "available", "build", "default_kwargs", "key_renames",
           "register", "traits", "typed_kwargs"]

_NOT_FAMILIES = frozenset({"layers"})
# Dataclass fields every linen Module has, which are not model options.
_MODULE_INTERNALS = frozenset({"parent", "name"})

# How a model's PyTorch state-dict keys map onto its Flax paths, applied after the wrapper
# prefixes are stripped: regex (pattern, replacement) pairs applied in order, or a function
# returning the new key (None drops the key).
Renames = Sequence[tuple[str, str]] | Callable[[str], str | None]


@dataclasses.dataclass(frozen=True)
class _Entry:
    factory: Callable[..., nn.Module]
    defaults: Mapping[str, Any]
    traits: Mapping[str, Any]
    key_renames: Renames | None


_REGISTRY: dict[str, _Entry] = {}
_discovered = False


def register(name: str, *, defaults: Mapping[str, Any] | None = None,
             key_renames: Renames | None = None, **model_traits: Any):
    """Register a Module class (or a factory taking `num_classes`) under `name`.

    `defaults` are constructor kwargs baked into this name (one class can back several
    variants). `key_renames` (see `Renames`) adapt released checkpoints whose keys differ
    from our module names; `segjax.convert` applies them. `model_traits` are what callers
    outside the model need to know: `backbone=True` (a trunk, not a segmentation model),
    `input_multiple=8` (H and W must be multiples of it; evaluation pads to it) and
    `aux_heads` (how many auxiliary logit outputs it returns). Returns the decorated object
    unchanged.
    """

    def decorator(factory):
        if name in _REGISTRY and _REGISTRY[name].factory is not factory:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = _Entry(factory, dict(defaults or {}), dict(model_traits), key_renames)
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


def key_renames(name: str) -> Renames | None:
    """The PyTorch key renames registered with `name`; None when its keys need none."""
    return _entry(name).key_renames


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


def _describe(annotation: Any) -> str:
    if annotation is type(None):
        return "none"
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_describe(arm) for arm in typing.get_args(annotation))
    if typing.get_origin(annotation) in (tuple, list, collections.abc.Sequence):
        return f"a sequence of {_describe(typing.get_args(annotation)[0])}"
    return {bool: "true/false"}.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _coerce(value: Any, annotation: Any) -> Any:
    """`value` as `annotation` wants it, with text from a command line parsed (true/false/none
    in any case, numbers, tuples); ValueError if it cannot be."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    text = value.strip() if isinstance(value, str) else None
    if origin in (typing.Union, types.UnionType):
        for arm in sorted(args, key=lambda a: a is str):  # text stays text last
            try:
                return _coerce(value, arm)
            except ValueError:
                pass
        raise ValueError
    if annotation is type(None):
        if value is None or (text is not None and text.lower() == "none"):
            return None
        raise ValueError
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise ValueError
    if annotation in (int, float):
        if isinstance(value, bool):
            raise ValueError
        if text is not None:
            value = ast.literal_eval(text) if text else None
        if isinstance(value, int) or (annotation is float and isinstance(value, float)):
            return annotation(value)
        raise ValueError
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ValueError
    if origin in (tuple, list, collections.abc.Sequence):
        if text is not None:
            value = ast.literal_eval(text)
        if not isinstance(value, (tuple, list)):
            raise ValueError
        inner = [a for a in args if a is not Ellipsis]
        return tuple(_coerce(v, inner[0]) if inner else v for v in value)
    return value  # Any, callables and module types: passed through


def typed_kwargs(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """`kwargs` checked against the constructor's annotations and parsed where they are text
    (true/false/none in any case, numbers, tuples); TypeError names the argument, the model,
    the expected type and the value."""
    factory = _entry(name).factory
    try:
        hints = typing.get_type_hints(factory)
    except (NameError, TypeError):
        return dict(kwargs)
    typed = {}
    for key, value in kwargs.items():
        annotation = hints.get(key, Any)
        try:
            typed[key] = _coerce(value, annotation)
        except (ValueError, SyntaxError):
            raise TypeError(f"model {name!r}: argument {key}={value!r} ({type(value).__name__}) "
                            f"is not {_describe(annotation)}") from None
    return typed


def build(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Instantiate a registered model; kwargs override the registered defaults.

    Arguments are checked against the constructor's annotations; text (from a command line)
    is parsed: true/false/none in any case, numbers, tuples.
    """
    entry = _entry(name)
    accepted = accepted_kwargs(name)
    if accepted is not None:
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise TypeError(f"model {name!r} got unexpected argument(s) {', '.join(unknown)}; "
                            f"accepted: {', '.join(accepted)}")
    kwargs = typed_kwargs(name, kwargs)
    return entry.factory(num_classes=num_classes, **{**entry.defaults, **kwargs})
