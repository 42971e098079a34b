"""From a config to a model and its weights, without an optimizer, the input pipeline or the
trainer: the one restore path of evaluate, predict, export, notebooks and `init_checkpoint`.

    restored = runtime.restore(config, workdir)
    labels = restored.predictor.labels(restored.variables, frames)
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import jax
import jax.numpy as jnp

from segjax import checkpoint, inference, models, sharding

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float64": jnp.float64}


def compute_dtype(config):
    if config.dtype not in DTYPES:
        raise ValueError(f"config.dtype={config.dtype!r}; choose one of {sorted(DTYPES)}")
    if config.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("config.dtype='float64' needs 64-bit JAX: set JAX_ENABLE_X64=1 or "
                         "call jax.config.update('jax_enable_x64', True) before building")
    return DTYPES[config.dtype]


def segmentation_models() -> list[str]:
    return [name for name in models.available() if not models.traits(name).get("backbone")]


def build_model(config, num_classes: int):
    if models.traits(config.model.name).get("backbone"):
        raise ValueError(f"config.model.name: {config.model.name} is a backbone (stage "
                         "features, no segmentation head); pick a segmentation model: "
                         f"{', '.join(segmentation_models())}")
    kwargs = dict(config.model.kwargs.to_dict()) if config.model.kwargs else {}
    return models.build(config.model.name, num_classes, dtype=compute_dtype(config), **kwargs)


def dataset_info(config):
    """The class table (names, palette, ignore label) of `config.dataset.name`."""
    from data_pipelines.metadata import get_info

    return get_info(config.dataset.name)


def view_config(config) -> inference.ViewConfig:
    """The configured evaluation views (whole/slide, scales, flip) for this model."""
    multiple = models.traits(config.model.name).get("input_multiple", 1)
    return inference.ViewConfig.from_config(config, multiple)


def predictor(config, model) -> inference.Predictor:
    """The model's prediction path with the config's input normalisation and views."""
    return inference.Predictor.for_model(model, inference.InputNorm.from_config(config.data),
                                         view_config(config))


def variables_template(model, input_shape, mesh) -> dict:
    """Shapes, dtypes and (replicated) shardings of `{params, batch_stats}`, without running
    an initializer."""
    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    repl = sharding.replicated(mesh)
    return {key: jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=repl),
                              shapes.get(key, {}))
            for key in ("params", "batch_stats")}


@dataclasses.dataclass(frozen=True)
class Restored:
    """A workdir's newest weights with everything needed to use them."""

    model: Any
    variables: dict
    step: int
    info: Any
    mesh: Any
    predictor: inference.Predictor


def restore(config, workdir: str | pathlib.Path) -> Restored:
    """The newest checkpoint in `workdir/checkpoints` (a training run's, or weights from
    `segjax.tools.convert`), checked against the config's model first."""
    info = dataset_info(config)
    mesh = sharding.make_mesh(config.mesh.shape, config.mesh.axes)
    model = build_model(config, info.num_classes)
    directory = pathlib.Path(workdir).absolute() / "checkpoints"
    if not directory.is_dir():
        raise FileNotFoundError(
            f"No checkpoint in {directory}: train first (--mode=train) or point --workdir at "
            "a run that has one.")
    reader = checkpoint.Checkpointer(directory, async_save=False)
    try:
        step = reader.latest_step()
        if step is None:
            raise FileNotFoundError(
                f"No checkpoint in {directory}: train first (--mode=train) or point --workdir "
                "at a run that has one.")
        diffs = checkpoint.meta_diffs(reader.read_meta(step),
                                      checkpoint.describe(config, info.num_classes))
        if diffs:
            raise checkpoint.CheckpointMismatchError(
                f"The checkpoint at {directory / str(step)} belongs to a different model "
                f"({'; '.join(diffs)}). Nothing was changed. Pass the config that wrote it, "
                "or a workdir of this config.")
        template = variables_template(model, (1, *config.data.crop_size, 3), mesh)
        variables = reader.restore_variables(step, template)
    finally:
        reader.close()
    return Restored(model, variables, int(step), info, mesh, predictor(config, model))


def load_variables(path: str, template: dict, meta: dict) -> dict:
    """`{params, batch_stats}` shaped like `template` from `config.init_checkpoint`.

    `path` is a segjax workdir, its `checkpoints` directory (latest step) or one step
    directory (also a `segjax.tools.convert` output); or an `.npz` / `.safetensors` of an
    official PyTorch state dict (key -> array), converted with the model's key renames.
    `.pth`/`.pt`/`.pkl` files are read only when torch is importable. `meta` is
    `checkpoint.describe` of the config.
    """
    source = pathlib.Path(path).expanduser().absolute()
    where = f"config.init_checkpoint={str(path)!r}"
    if not source.exists():
        raise FileNotFoundError(
            f"{where} does not exist. Point it at a segjax workdir or checkpoint step "
            "directory, or at an .npz of an official PyTorch state dict; '' starts from the "
            "model's own initialisation.")
    if not source.is_dir():
        variables = _convert_state_dict(source, template, meta, where)
        return jax.tree.map(lambda new, old: jax.device_put(new, old.sharding), variables,
                            template)
    if (source / "checkpoints").is_dir():
        directory, step = source / "checkpoints", None
    elif source.name.isdigit():
        directory, step = source.parent, int(source.name)
    else:
        directory, step = source, None
    reader = checkpoint.Checkpointer(directory, async_save=False)
    try:
        step = reader.latest_step() if step is None else step
        if step is None or step not in reader.manager.all_steps():
            raise FileNotFoundError(
                f"{where} holds no segjax checkpoint (looked in {directory}). Pass a "
                "workdir that has trained, its checkpoints/ directory or a step inside it.")
        diffs = checkpoint.meta_diffs(reader.read_meta(step), meta)
        if diffs:
            raise checkpoint.CheckpointMismatchError(
                f"{where} (step {step}) was trained for a different model "
                f"({'; '.join(diffs)}). Use a checkpoint of this model, or set "
                "config.model to the one it was trained with.")
        return reader.restore_variables(step, template)
    finally:
        reader.close()


def _convert_state_dict(source: pathlib.Path, template, meta: dict, where: str) -> dict:
    """An official PyTorch state dict file → Flax variables shaped like `template`."""
    from segjax import convert, pretrained

    state_dict = pretrained.read_state_dict(
        source, field="config.init_checkpoint",
        expected="a checkpoint directory, an .npz, .safetensors or .pth/.pt/.pkl state dict")
    try:
        return convert.torch_to_flax(state_dict, template, strict=True,
                                     renames=models.key_renames(meta["model"]))
    except convert.ConversionError as err:
        raise convert.ConversionError(
            f"{where} does not fit model {meta['model']!r} with {meta['num_classes']} classes "
            f"(config.model.name / dataset). Use weights of this model and class count.\n"
            f"{err}") from None
