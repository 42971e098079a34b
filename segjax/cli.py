"""Command-line parsing for run.py and the config-driven tools: a mistyped `--config.<field>`
is one line naming the field, the fields at that level and the closest one, before
ml_collections' chained tracebacks (still shown with `--traceback`)."""

from __future__ import annotations

import ast
import difflib
import importlib.util
import pathlib
import sys
from collections.abc import Sequence

import ml_collections
from absl import app


def parse_key_values(items: Sequence[str], flag: str = "--set") -> dict[str, object]:
    """`key=value` strings → {key: value}: Python literals where they parse, else the text
    (which the model registry and config setters parse by the field's type)."""
    parsed = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: {flag} expects key=value, got {item!r}")
        try:
            parsed[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            parsed[key] = raw
    return parsed


class ConfigFieldError(ValueError):
    """A `--config.<path>` override names no field of the config."""


def _config_spec(argv: Sequence[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def load_config(spec: str) -> ml_collections.ConfigDict:
    """`configs/x.py` or `configs/x.py:variant`, as `config_flags` loads it."""
    path, _, variant = spec.partition(":")
    file = pathlib.Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--config={spec}: {path} does not exist; pass a configs/*.py file")
    root = str(file.resolve().parents[1])
    if root not in sys.path:  # recipes import `configs.default`
        sys.path.insert(0, root)
    module_spec = importlib.util.spec_from_file_location(f"_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(variant) if variant else module.get_config()


def closest(name: str, fields: Sequence[str]) -> str:
    """The field `name` most likely meant: one whose initials it is (lr → learning_rate),
    else the most similar spelling."""
    initials = [f for f in fields if "".join(w[:1] for w in f.split("_")) == name.lower()]
    if initials:
        return initials[0]
    return max(fields, key=lambda f: difflib.SequenceMatcher(None, name.lower(), f).ratio())


def _nested_name(node: ml_collections.ConfigDict, name: str) -> str | None:
    """`bcl.weight` for `bcl_weight` when `node.bcl` is a group with a `weight` field: the
    loss settings moved from flat names into one group per term."""
    for i, char in enumerate(name):
        head, tail = name[:i], name[i + 1:]
        if char == "_" and isinstance(node.get(head), ml_collections.ConfigDict) \
                and tail in node[head]:
            return f"{head}.{tail}"
    return None


def check_overrides(config: ml_collections.ConfigDict, argv: Sequence[str]) -> None:
    """Raise ConfigFieldError for the first `--config.a.b=...` whose path is not in `config`."""
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        dotted = arg[len("--config."):].split("=", 1)[0]
        node, walked = config, "config"
        for part in dotted.split("."):
            if not isinstance(node, ml_collections.ConfigDict):
                break  # a value (tuple, …): config_flags checks the rest
            if part not in node:
                fields = sorted(node.keys())
                nested = _nested_name(node, part)
                if nested:
                    raise ConfigFieldError(f"--config.{dotted}: {walked}.{part} is now "
                                           f"{walked}.{nested}")
                raise ConfigFieldError(
                    f"--config.{dotted}: {walked} has no field {part!r}; did you mean "
                    f"{walked}.{closest(part, fields)}? (fields of {walked}: "
                    f"{', '.join(fields)})")
            node, walked = node[part], f"{walked}.{part}"


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with config overrides checked first (skipped by --traceback)."""
    if "--traceback" not in argv and "--traceback=true" not in argv:
        spec = _config_spec(argv)
        if spec is not None:
            try:
                check_overrides(load_config(spec), argv)
            except (ConfigFieldError, FileNotFoundError, ValueError, TypeError) as err:
                sys.exit(f"error: {err}")
    return app.parse_flags_with_usage(argv)
